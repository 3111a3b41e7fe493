"""`make gpu-check` (benchmarks/gpu_check.py): its dry run on this CPU, its target scores, its wheel choice."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from _scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check():
    return load_script("benchmarks/gpu_check.py")


def test_targets_are_scored_against_their_thresholds_and_missing_numbers_are_not_measured():
    gc = _gpu_check()
    attribution = dict(ratios=dict(ba_gxi_over_first_L_ceiling=0.9, shared_vs_naive_speedup=12.0))
    ridge = dict(seconds=dict(fit=10.5))
    hours = dict.fromkeys(gc.PAPER_TRANSFORMERS, 0.5)
    scored = gc.score_targets(attribution, ridge, hours)
    assert scored["ba_gxi_over_first_L_ceiling"]["met"] is True
    assert scored["shared_vs_naive_speedup"]["met"] is False
    assert scored["ridge_fit_seconds"]["met"] is False                        # 10.5 s > 10 s
    assert scored["paper_transformer_gxi_hours"]["value"] == pytest.approx(1.5)
    assert scored["paper_transformer_gxi_hours"]["met"] is True
    # a model whose benchmark failed: the whole GxI is not measured (a partial sum would flatter it)
    partial = gc.score_targets(None, None, {gc.PAPER_TRANSFORMERS[0]: 0.1})
    assert all(t["met"] is None and t["value"] is None for t in partial.values())


def test_only_wheels_missing_or_at_another_version_are_installed(tmp_path):
    gc = _gpu_check()
    import numpy

    same = tmp_path / f"numpy-{numpy.__version__}-cp312-cp312-manylinux2014_x86_64.whl"
    other = tmp_path / "numpy-0.0.1-cp312-cp312-manylinux2014_x86_64.whl"
    absent = tmp_path / "no_such_package_here-1.0-py3-none-any.whl"
    assert gc.wheel_version(absent) == ("no-such-package-here", "1.0")
    assert gc.packages_to_install([same, other, absent]) == [other, absent]


def test_a_machine_without_the_packages_or_the_kit_is_told_to_make_the_wheels(tmp_path, monkeypatch):
    gc = _gpu_check()
    monkeypatch.setattr(gc, "KIT", tmp_path / "no-kit")
    real = gc.importlib.util.find_spec
    monkeypatch.setattr(gc.importlib.util, "find_spec", lambda name: None if name == "himalaya" else real(name))
    with pytest.raises(SystemExit, match=r"himalaya not installed here and no wheels.*make gpu-wheels"):
        gc.install_kit(tmp_path / "site")


@pytest.mark.slow
def test_the_gpu_check_dry_run_runs_every_step_on_a_cpu(tmp_path):
    """`gpu_check.py run --device cpu`: the same steps at tiny sizes (the GPU tests skip), ~40 s."""
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "run", "--device", "cpu", "--results",
                           str(tmp_path), "--site", str(tmp_path / "site")], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "gpu_check_cpu.json").read_text())
    assert [s["step"] for s in summary["steps"]] == ["gpu tests", "attribution tiny-random", "ridge"]
    assert all(s["returncode"] == 0 for s in summary["steps"])
    assert "skipped" in summary["steps"][0]["tail"]                  # no GPU here: collected, then skipped
    assert set(summary["targets"]) == set(_gpu_check().TARGETS)
    report = json.loads((tmp_path / "bench_attribution_cpu_tiny-random.json").read_text())
    assert report["ratios"]["ba_gxi_over_first_L_ceiling"] > 0 and report["setup"]["data"] == "noise"
    assert (tmp_path / "profile_cpu_tiny-random.txt").read_text().count("Self CPU time total") >= 2
    assert (tmp_path / "bench_ridge_cpu_200_float32.json").exists()
