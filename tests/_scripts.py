"""Load a script that is not part of the package (``scripts/``, ``benchmarks/``, build backends) as a module."""
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_script(path, name=None):
    """The module of the Python file ``path`` (relative to the repository, or absolute), executed once."""
    path = REPO / path
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
