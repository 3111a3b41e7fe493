"""The package's layout: rooms whose dependencies point down, no import cycle, no private seams.

The rooms and their order are declared once, in ``.importlinter`` at the repository root, and
checked with import-linter (which sees function-local imports too). The tests here add what it
does not check: that every module is in some room, that each module imports on its own, and that
no module reaches into another's private (``_x``) names.
"""
import ast
import configparser
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "brainattr"
CONFIG = REPO / ".importlinter"


def _modules():
    """Dotted names of every module of the package, subpackages' ``__init__`` as the package name."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _rooms():
    config = configparser.ConfigParser()
    config.read(CONFIG)
    layers = config["importlinter:contract:rooms"]["layers"].split("\n")
    return [room.strip() for line in layers for room in line.split("|") if room.strip()]


def _lint_imports():
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("import-linter is not installed (the `test` extra)")
    return subprocess.run([str(exe), "--no-cache", str(CONFIG)], cwd=REPO, capture_output=True, text=True)


def test_the_rooms_contracts_hold():
    result = _lint_imports()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_the_rooms_contract_fails_on_an_upward_import(tmp_path):
    """The check can fail: a copy of the contract that puts the schema above the data room breaks."""
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("import-linter is not installed (the `test` extra)")
    text = ("[importlinter]\nroot_package = brainattr\n\n[importlinter:contract:upside-down]\n"
            "name = upside down\ntype = layers\nlayers =\n    brainattr.schema\n    brainattr.data\n")
    bad = tmp_path / "upside-down.ini"
    bad.write_text(text)
    result = subprocess.run([str(exe), "--no-cache", str(bad)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "BROKEN" in result.stdout


def test_every_module_belongs_to_a_room():
    rooms = _rooms()
    homeless = [m for m in _modules() if m != "brainattr" and m != "brainattr.__main__"
                and not any(m == r or m.startswith(r + ".") for r in rooms)]
    assert not homeless, f"modules in no room of .importlinter: {homeless}"


def test_each_module_imports_on_its_own():
    """Import every module first, in one fresh interpreter, forgetting brainattr's modules in between:
    an import cycle hidden behind import order would fail here."""
    code = (
        "import importlib, sys\n"
        f"for name in {_modules()!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'brainattr' or m.startswith('brainattr.')]:\n"
        "        del sys.modules[loaded]\n"
        "    if name != 'brainattr.__main__':\n"
        "        importlib.import_module(name)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def _private_uses(path, module):
    """``from brainattr.x import _y`` or ``x._y`` on an imported brainattr module, outside ``module``."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    aliases, found = {}, []

    def absolute(node):
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        return base

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = absolute(node)
            if not base.startswith("brainattr"):
                continue
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in _MODULES:
                    aliases[alias.asname or alias.name] = target
                elif alias.name.startswith("_") and not alias.name.startswith("__") and base != module:
                    found.append(f"{module} imports {base}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("brainattr") and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")
                and aliases[node.value.id] != module):
            found.append(f"{module} uses {aliases[node.value.id]}.{node.attr}")
    return found


_MODULES = set(_modules())


def test_no_module_uses_another_modules_private_names():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found += _private_uses(path, module)
    assert not found, "\n".join(found)


def test_the_private_name_check_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from brainattr.attribution import store\nfrom brainattr.cache import _umask\nstore._write\n")
    found = _private_uses(bad, "brainattr.bad")
    assert found == ["brainattr.bad imports brainattr.cache._umask", "brainattr.bad uses brainattr.attribution.store._write"]


def test_loading_data_and_the_command_line_do_not_import_torch():
    code = ("import sys\nimport brainattr.schema, brainattr.trs, brainattr.metrics, brainattr.data, brainattr.book.cli\n"
            "print(sorted(m for m in ('torch', 'transformers', 'papermill') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
