"""The runner: papermill execution into a build folder, failures, timings, the CLI, the book build."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from _project_factory import make_project
from brainattr import cli
from brainattr.params import ParamsError, load_config
from brainattr.runner import (BookBuildFailed, NotebookFailed, build_book, build_html, execute_notebook, render_toc,
                              run_notebooks, sync_toc)

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
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    from brainattr.runner import plumbing_reason, tag_plumbing

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

    from brainattr import runner

    log = tmp_path / runner.STAGE_LOG
    records = [dict(stage="attribution", method="gxi", trs=48, seconds=10.0, notebook="03_attribution", context=80),
               dict(stage="attribution", method="gxi", trs=16, seconds=2.0, notebook="04_important_words", context=80,
                    subjects=3),
               dict(stage="attribution", method="gxi", trs=2, seconds=9.0, notebook="08_controls", context=640),
               dict(stage="attribution", method="ig", trs=8, seconds=72.0, notebook="03_attribution", context=80),
               dict(stage="encoding", seconds=19.0, voxels=2100, notebook="02_brain_alignment"),
               dict(stage="feature extraction", layers=2, seconds=30.0, notebook="02_brain_alignment")]
    log.write_text("".join(_json.dumps(r) + "\n" for r in records))
    table = runner.stages_markdown(tmp_path)
    # a pass shared by 3 subjects counts 3 subject-TRs per TR: (48 + 16 * 3) subject-TRs in 12 s
    assert "| attribution (gxi, 80-word context) | 12 s (2 runs) | 0.12 s per subject-TR |" in table
    assert "| attribution (gxi, 640-word context) | 9 s (1 runs) | 4.50 s per subject-TR | 08_controls | ≈ 1,501 h" in table
    assert "| attribution (ig, 80-word context) | 72 s (1 runs) | 9.00 s per subject-TR | 03_attribution | ≈ 329 h |" in table
    assert "| encoding | 19 s (1 runs) | 19.00 s per fit |" in table
    assert "15.00 s per layer" in table and "≈ 219 h" in table
    runner._forget_stages(log, "03_attribution")      # rerunning chapter 3 replaces its records
    assert "attribution (ig" not in runner.stages_markdown(tmp_path)
    assert "(no stage" not in table
    assert "everything came from the cache" in runner.stages_markdown(tmp_path / "empty")


def test_benchmark_tables_read_the_committed_results(tmp_path):
    from brainattr import runner

    assert "No benchmark results" in runner.benchmarks_markdown(tmp_path)
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
    table = runner.benchmarks_markdown(tmp_path)
    assert ("| m (layer 15/30) | CPU, 2 threads | float32 | 80 words (100) | 3 | 250 tok/s | 500 tok/s | 2.00× | "
            "not measured | 0.25 s | 1.30× faster | 0.5 s | 2.0× | 8 s | 2,016 h |") in table
    assert "| NVIDIA H100 | torch_cuda, float32 | 30,000 × 8,192 × 1,200 | 4 × 10, 16 | 7.5 s |" in table
