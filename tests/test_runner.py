"""The runner: papermill execution into a build folder, failures, timings, the CLI, the book build."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from _project_factory import make_project
from brainattr.book import cli
from brainattr.book.params import ParamsError, load_config
from brainattr.book.runner import (
    BookBuildFailed,
    NotebookFailed,
    build_book,
    build_html,
    execute_notebook,
    render_toc,
    run_notebooks,
    sync_toc,
)

REPO = Path(__file__).resolve().parents[1]


def _outputs(path):
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_run_injects_parameters_into_build_copies(tmp_path):
    config = load_config(make_project(tmp_path))
    results = run_notebooks(config, "tiny", {"n_trs": 3}, echo=lambda m: None)
    assert [r.name for r in results] == ["01_first", "02_second"]
    out1, out2 = (tmp_path / "build" / "notebooks" / f"{n}.ipynb" for n in ("01_first", "02_second"))
    assert "first 8 tiny-random ['sub-01'] 600" in _outputs(out1)
    assert "second 8 3 [1, 2] 3" in _outputs(out2)
    # the sources are untouched, the copies carry papermill's injected cell
    src = nbformat.read(config.notebooks[0].path, as_version=4)
    assert all(not c.get("outputs") for c in src.cells if c.cell_type == "code")
    tags = [t for c in nbformat.read(out1, as_version=4).cells for t in c.metadata.get("tags", [])]
    assert "injected-parameters" in tags
    timings = json.loads((tmp_path / "build" / "timings.json").read_text())
    entry = timings["notebooks"]["02_second"]
    assert entry["status"] == "ok" and entry["seconds"] > 0 and entry["profile"] == "tiny"
    assert entry["overrides"] == {"n_trs": 3} and entry["parameters"]["alpha"] == 3
    assert not list((tmp_path / "build" / "notebooks").glob(".*"))  # no partial files left


def test_invalid_parameters_stop_before_anything_runs(tmp_path):
    config = load_config(make_project(tmp_path))
    with pytest.raises(ParamsError, match="did you mean 'context'"):
        run_notebooks(config, "quick", {"contxt": 1}, echo=lambda m: None)
    assert not (tmp_path / "build").exists()


def test_failing_notebook_raises_naming_it_and_its_executed_copy(tmp_path):
    config = load_config(make_project(tmp_path, second_body="raise RuntimeError('planted failure')"))
    with pytest.raises(NotebookFailed) as err:
        run_notebooks(config, "quick", echo=lambda m: None)
    out = tmp_path / "build" / "notebooks" / "02_second.ipynb"
    msg = str(err.value)
    assert "02_second" in msg and "RuntimeError: planted failure" in msg and str(out) in msg
    assert err.value.output == out and out.is_file()
    nb = nbformat.read(out, as_version=4)
    assert any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    timings = json.loads((tmp_path / "build" / "timings.json").read_text())["notebooks"]
    assert timings["01_first"]["status"] == "ok" and timings["02_second"]["status"] == "failed"


def test_execute_refuses_to_overwrite_its_source(tmp_path):
    config = load_config(make_project(tmp_path))
    src = config.notebooks[0].path
    with pytest.raises(ValueError, match="onto itself"):
        execute_notebook(src, src, {})


def test_cli_run_and_params(tmp_path, capsys):
    params = make_project(tmp_path)
    assert cli.main(["run", "second", "--params-file", str(params), "-p", "layers", "[7]"]) == 0
    assert "second 80 2.0 [7] 8" in _outputs(tmp_path / "build" / "notebooks" / "02_second.ipynb")
    assert cli.main(["run", "02", "--params-file", str(params), "-p", "layer", "7"]) == 1
    assert "did you mean 'layers'" in capsys.readouterr().err
    assert cli.main(["params", "--params-file", str(params), "--profile", "paper"]) == 0
    assert "context: 640" in capsys.readouterr().out
    assert cli.main(["params", "--table", "--params-file", str(params)]) == 0
    assert "| `alpha` |" in capsys.readouterr().out


def test_cli_reports_failure_with_exit_status_1(tmp_path, capsys):
    params = make_project(tmp_path, first_body="1 / 0")
    assert cli.main(["run-all", "--params-file", str(params)]) == 1
    err = capsys.readouterr().err
    assert "01_first failed" in err and "ZeroDivisionError" in err


def test_toc_is_rendered_from_params(tmp_path):
    config = load_config(make_project(tmp_path))
    toc = render_toc(config)
    assert "file: build/notebooks/01_first\n    title: First" in toc
    assert sync_toc(config) and not sync_toc(config)  # written once, then already in step


def _book_project(tmp_path):
    params = make_project(tmp_path, first_body="import matplotlib.pyplot as plt\nplt.plot([1, 2]);")
    shutil.copy(REPO / "_config.yml", tmp_path / "_config.yml")
    shutil.copytree(REPO / "book", tmp_path / "book")
    return load_config(params)


def test_book_builds_from_executed_copies_and_warnings_fail_it(tmp_path):
    config = _book_project(tmp_path)
    html = build_book(config, "tiny", echo=lambda m: None)
    assert html == tmp_path / "_build" / "html" / "index.html"
    page = (tmp_path / "_build" / "html" / "build" / "notebooks" / "01_first.html").read_text()
    assert "tiny-random" in page  # the executed copy, with its injected parameters, is what is shown
    running = (tmp_path / "_build" / "html" / "book" / "running.html").read_text()
    assert "words of preceding context" in running  # generated parameter reference is included
    # a Sphinx warning (here an unknown citation) fails the build
    out = tmp_path / "build" / "notebooks" / "02_second.ipynb"
    nb = nbformat.read(out, as_version=4)
    nb.cells[0].source += "\n\nSee {cite:p}`no_such_key_2099`."
    nbformat.write(nb, out)
    with pytest.raises(BookBuildFailed, match="no_such_key_2099"):
        build_html(config, echo=lambda m: None)


def test_plumbing_rule_hides_marked_import_and_parameters_cells_only():
    from brainattr.book.runner import plumbing_reason, tag_plumbing
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    def code(source, *tags):
        cell = new_code_cell(source)
        if tags:
            cell.metadata["tags"] = list(tags)
        return cell

    cells = [
        new_markdown_cell("# plumbing (markdown is never tagged)"),
        code("x = 1  # defaults", "parameters"),
        code("# Parameters\nx = 2\n", "injected-parameters"),
        code("import numpy as np\nfrom pathlib import Path  # comment\n%matplotlib inline\n"),
        code("\n# plumbing: styling\nimport seaborn as sns\nsns.set_theme()"),
        code("#Plumbing\nx = 3"),
        code("import numpy as np\nprint(np.pi)"),          # science: imports plus a result
        code("# the model\nfit = x * 2"),                    # science
        code("# plumbing", "hide-cell"),                     # the author decided already
        code("import os", "show-input"),                     # opt-out
        code("def f(:\n  pass"),                             # not Python: left visible
    ]
    nb = new_notebook(cells=cells)
    reasons = [plumbing_reason(c, cells[i + 1] if i + 1 < len(cells) else None) for i, c in enumerate(cells)]
    assert reasons == [None, "parameters", None, "imports", "marker", "marker", None, None, None, None, None]
    assert tag_plumbing(nb) == [1, 3, 4, 5]
    assert [c.metadata.get("tags", []) for c in nb.cells][1:6] == [
        ["parameters", "hide-input"], ["injected-parameters"], ["hide-input"], ["hide-input"], ["hide-input"]]
    assert tag_plumbing(nb) == []  # idempotent: tagged cells are left alone
    # without papermill's injected cell, the parameters cell is the only record of the values: visible
    assert plumbing_reason(cells[1], cells[3]) is None


def test_executed_copies_hide_plumbing_and_sources_stay_untouched(tmp_path):
    config = load_config(make_project(tmp_path, first_body="# plumbing\nimport math\nprint('first', math.pi)"))
    run_notebooks(config, "tiny", notebooks=["01_first"], echo=lambda m: None)
    out = nbformat.read(tmp_path / "build" / "notebooks" / "01_first.ipynb", as_version=4)
    tags = {c.source.splitlines()[0]: c.metadata.get("tags", []) for c in out.cells if c.cell_type == "code"}
    assert tags["from typing import Optional"] == ["parameters", "hide-input"]
    assert tags["# Parameters"] == ["injected-parameters"]
    assert tags["# plumbing"] == ["hide-input"]
    src = nbformat.read(config.notebooks[0].path, as_version=4)
    assert all("hide-input" not in c.metadata.get("tags", []) for c in src.cells)


def test_stage_table_sums_the_latest_runs(tmp_path):
    import json as _json

    from brainattr.book import pages

    log = tmp_path / pages.STAGE_LOG
    records = [dict(stage="attribution", method="gxi", trs=48, seconds=10.0, notebook="03_attribution", context=80),
               dict(stage="attribution", method="gxi", trs=16, seconds=2.0, notebook="04_important_words", context=80,
                    subjects=3),
               dict(stage="attribution", method="gxi", trs=2, seconds=9.0, notebook="08_controls", context=640),
               dict(stage="attribution", method="ig", trs=8, seconds=72.0, notebook="03_attribution", context=80),
               dict(stage="encoding", seconds=19.0, voxels=2100, notebook="02_brain_alignment"),
               dict(stage="feature extraction", layers=2, seconds=30.0, notebook="02_brain_alignment")]
    log.write_text("".join(_json.dumps(r) + "\n" for r in records))
    table = pages.stages_markdown(tmp_path)
    # a pass shared by 3 subjects counts 3 subject-TRs per TR: (48 + 16 * 3) subject-TRs in 12 s
    assert "| attribution (gxi, 80-word context) | 12 s (2 runs) | 0.12 s per subject-TR |" in table
    assert "| attribution (gxi, 640-word context) | 9 s (1 runs) | 4.50 s per subject-TR | 08_controls | ≈ 1,501 h" in table
    assert "| attribution (ig, 80-word context) | 72 s (1 runs) | 9.00 s per subject-TR | 03_attribution | ≈ 329 h |" in table
    assert "| encoding | 19 s (1 runs) | 19.00 s per fit |" in table
    assert "15.00 s per layer" in table and "≈ 219 h" in table
    pages.forget_stages(log, "03_attribution")      # rerunning chapter 3 replaces its records
    assert "attribution (ig" not in pages.stages_markdown(tmp_path)
    assert "(no stage" not in table
    assert "everything came from the cache" in pages.stages_markdown(tmp_path / "empty")


def test_benchmark_tables_read_the_committed_results(tmp_path):
    from brainattr.book import pages

    assert "No benchmark results" in pages.benchmarks_markdown(tmp_path)
    machine = dict(gpu=None, threads=2)
    (tmp_path / "bench_attribution_x.json").write_text(json.dumps(dict(
        machine=machine, setup=dict(model="m", layer=15, n_layers=30, precision="float32", context=80, tokens=1600,
                                    trs=16, subjects=3),
        tokens_per_second=dict(ceiling_fwd_bwd=250.0, ours_ba_gxi=500.0),
        seconds_per_subject_tr=dict(ours_subjects_shared=0.25, naive_ba_gxi=0.5, ours_ig=8.0),
        ratios=dict(ba_gxi_over_ceiling=2.0, subjects_shared_speedup=1.3, shared_vs_naive_speedup=2.0),
        extrapolation=dict(paper_gxi_hours_for_this_model=2016.0))))
    (tmp_path / "bench_ridge_y.json").write_text(json.dumps(dict(
        machine=dict(gpu="NVIDIA H100", threads=16),
        setup=dict(voxels=30000, design_columns=8192, trs=1200, outer_folds=4, inner_folds=10, alphas=16,
                   backend="torch_cuda", dtype="float32"), seconds=dict(fit=7.5))))
    table = pages.benchmarks_markdown(tmp_path)
    assert ("| m (layer 15/30) | CPU, 2 threads | float32 | 80 words (100) | 3 | 250 tok/s | 500 tok/s | "
            "not measured | 2.00× | not measured | 0.25 s | 1.30× faster | 0.5 s | 2.0× | 8 s | 2,016 h |") in table
    assert "| NVIDIA H100 | torch_cuda, float32 | 30,000 × 8,192 × 1,200 | 4 × 10, 16 | 7.5 s |" in table
    assert "GPU target" not in table                        # no gpu_check file: no targets table

    # gpu_check.py's scores: each target against its threshold, a missed one in bold, None not measured
    (tmp_path / "gpu_check_h100.json").write_text(json.dumps(dict(device="h100", date="2026-11-26 23:00", targets={
        "a": dict(value=0.81, comparison=">=", threshold=0.85, met=False, what="BA over its floor"),
        "b": dict(value=9.4, comparison="<=", threshold=10, met=True, what="ridge seconds"),
        "c": dict(value=None, comparison="<=", threshold=5, met=None, what="paper hours")})))
    table = pages.benchmarks_markdown(tmp_path)
    assert "| BA over its floor | H100, 2026-11-26 23:00 | 0.81 | >= 0.85 | **no** |" in table
    assert "| ridge seconds | H100, 2026-11-26 23:00 | 9.4 | <= 10 | yes |" in table
    assert "| paper hours | H100, 2026-11-26 23:00 | not measured | <= 5 | not measured |" in table


# --------------------------------------------------------------------------- progress

STAGE_BODY = ("import time\nfrom brainattr.cache import log_stage\n"
              "log_stage('encoding', 1.5, model='m', layer=3)\ntime.sleep(0.5)\n"
              "log_stage('attribution', 12.0, method='gxi', model='m', trs=48, subjects=3)")


def test_stage_progress_prints_stages_while_the_notebook_runs(tmp_path):
    import threading
    import time

    from brainattr.book.runner import StageProgress

    log = tmp_path / "stages.jsonl"
    log.write_text(json.dumps({"stage": "old", "seconds": 1, "notebook": "01_a"}) + "\n")  # an earlier run's
    lines, said = [], threading.Event()

    def echo(line):
        lines.append(line)
        said.set()

    with StageProgress(log, "01_a", echo, interval=0.02, heartbeat=None) as progress:
        with open(log, "a") as fh:
            fh.write(json.dumps({"stage": "encoding", "seconds": 19.0, "notebook": "01_a", "layer": 5}) + "\n")
            fh.write(json.dumps({"stage": "encoding", "seconds": 1.0, "notebook": "02_b"}) + "\n")  # not this one
            fh.write('{"stage": "feature extraction", "seconds"')  # half a line: wait for the rest
        assert said.wait(5), "nothing printed while the notebook runs"
        time.sleep(0.1)
        assert lines == ["      encoding (layer 5) in 19 s"]
        with open(log, "a") as fh:
            fh.write(': 300, "notebook": "01_a", "model": "m", "layers": 2}\n')
    assert lines[1:] == ["      feature extraction (m, 2 layer(s)) in 5.0 min"]
    assert [r["stage"] for r in progress.stages] == ["encoding", "feature extraction"]


def test_stage_progress_says_a_long_stage_is_still_running(tmp_path):
    import time

    from brainattr.book.runner import StageProgress

    lines = []
    with StageProgress(tmp_path / "stages.jsonl", "03_attribution", lines.append, interval=0.02, heartbeat=0.1):
        time.sleep(0.5)
    assert lines and all("03_attribution still running" in line for line in lines), lines
    assert 2 <= len(lines) <= 6  # one per heartbeat, not one per poll


def test_run_all_shows_progress_per_notebook_and_per_stage(tmp_path, capsys):
    params = make_project(tmp_path, first_body=STAGE_BODY)
    assert cli.main(["run-all", "--params-file", str(params)]) == 0
    out = capsys.readouterr().out.splitlines()
    starts = [i for i, line in enumerate(out) if line.startswith(("[1/2] 01_first  (", "[2/2] 02_second  ("))]
    done = [i for i, line in enumerate(out) if re.fullmatch(r"\[[12]/2\] 0[12]_\w+ done in \d+(\.\d)? s", line)]
    stages = [out.index("      encoding (m, layer 3) in 1.5 s"),
              out.index("      attribution (gxi, m, 48 TR(s), 3 subject(s)) in 12 s")]
    assert len(starts) == 2 and len(done) == 2, out
    assert starts[0] < stages[0] < stages[1] < done[0] < starts[1] < done[1]
    assert re.fullmatch(r"brainattr: 2 notebook\(s\) done in .+", out[-1])


def test_progress_bar_counts_cells_on_request(tmp_path, capsys):
    config = load_config(make_project(tmp_path))
    run_notebooks(config, "tiny", notebooks=["01"], progress=True, echo=print)
    assert "Executing: 100%" in capsys.readouterr().err  # papermill's bar (tqdm), on stderr


# --------------------------------------------------------------------------- one cache for every entry point

CACHE_BODY = "from brainattr.cache import cache_root\nprint('cache at', cache_root())"


def test_runner_and_a_notebook_run_by_hand_share_one_cache(tmp_path, monkeypatch):
    from brainattr.cache import CACHE_ENV, cache_root

    config = load_config(make_project(tmp_path, first_body=CACHE_BODY))
    out = tmp_path / "build" / "notebooks" / "01_first.ipynb"
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    by_hand = cache_root()  # what a notebook opened in Jupyter computes, with the same environment
    run_notebooks(config, "tiny", notebooks=["01"], echo=lambda m: None)
    assert f"cache at {by_hand}\n" in _outputs(out)
    assert CACHE_ENV not in os.environ  # the runner did not pick a folder of its own
    # an explicit, relative BRAINATTR_CACHE reaches the kernel (which runs in notebooks/) made absolute
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CACHE_ENV, "my-cache")
    run_notebooks(config, "tiny", notebooks=["01"], echo=lambda m: None)
    assert f"cache at {tmp_path / 'my-cache'}\n" in _outputs(out)


# --------------------------------------------------------------------------- the command line itself


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_help_and_version_run_as_a_module():
    import brainattr

    proc = _python("-m", "brainattr", "--help")
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("brainattr: ") and first.endswith(".") and first.count(". ") == 0  # one sentence
    for command in ("run", "run-all", "book", "params", "check-book", "download"):
        assert re.search(rf"^\s+{command}\b", proc.stdout, re.M), command
    proc = _python("-m", "brainattr", "--version")
    assert proc.returncode == 0 and proc.stdout == f"brainattr {brainattr.__version__}\n"


def test_the_command_line_imports_nothing_heavy():
    code = ("import json, sys\n"
            "from brainattr.book import cli\n"
            "cli._parser().format_help()\n"
            "print(json.dumps(sorted(sys.modules)))")
    proc = _python("-c", code)
    assert proc.returncode == 0, proc.stderr
    modules = set(json.loads(proc.stdout))
    heavy = {"torch", "selenium", "papermill", "nbformat", "numpy", "pandas", "matplotlib", "transformers",
             "jupyter_client", "yaml"}
    assert not {m.split(".")[0] for m in modules} & heavy
    ours = {m for m in modules if m.startswith("brainattr")}
    assert ours <= {"brainattr", "brainattr.book", "brainattr.book.cli", "brainattr.book.check",
                    "brainattr.book.static_check"}, ours  # the browser check's options and its stdlib-only parser
