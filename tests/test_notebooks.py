"""Every notebook of params.yml runs end to end under papermill with the `tiny` profile.

These are the notebook smoke tests (slow: each starts a kernel and runs the whole pipeline on a
tiny random-init model). Notebooks listed in params.yml but not written yet are skipped.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from brainattr.book.params import load_config
from brainattr.book.runner import run_notebooks

REPO = Path(__file__).resolve().parents[1]
CONFIG = load_config(REPO / "params.yml")


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIG.names)
def test_notebook_runs_with_tiny_parameters(name, tmp_path):
    spec = CONFIG.notebook(name)
    if not spec.exists:
        pytest.skip(f"{spec.path.relative_to(REPO)} not written yet")
    (result,) = run_notebooks(CONFIG, "tiny", notebooks=[name], build_dir=tmp_path, echo=lambda m: None)
    assert result.status == "ok" and result.output.is_file()
    nb = nbformat.read(result.output, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert nbformat.read(spec.path, as_version=4).cells  # the source is untouched and still readable
