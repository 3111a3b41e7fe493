"""`brainattr sweep`: the grid of a profile as submitit jobs, their idempotence, and the errors found before submitting.

The end-to-end tests run the `tiny` profile with `layer_step 4` (stage A: layers 0 and 4; stage B:
the late layer, in chunks of TRs) and compare what the chapters then read with what a plain
sequential run of the same pipeline calls computes.
"""
from __future__ import annotations

import functools
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from brainattr import sweep
from brainattr.book import cli
from brainattr.book.params import load_config, resolve
from brainattr.cache import read_stage_log

REPO = Path(__file__).resolve().parents[1]


def _plan(trs_per_job=2, **overrides):
    """The plan of `brainattr sweep --profile tiny -p layer_step 4` (and ``overrides``)."""
    return _tiny_plan(trs_per_job, tuple(sorted(overrides.items())))


@functools.lru_cache(maxsize=None)
def _tiny_plan(trs_per_job, overrides):
    config = load_config(REPO / "params.yml")
    resolved = resolve(config, "tiny", {"layer_step": 4, **{k: list(v) if isinstance(v, tuple) else v
                                                             for k, v in overrides}})
    settings = sweep.settings_from_notebooks({r.spec.name: cli.notebook_values(r) for r in resolved})
    return sweep.plan_sweep(settings, trs_per_job, name="tiny")


def _chapter_reads(stage_log=None):
    """What chapters 3-6 load, with the sweep's settings: GxI tables, logit-lens NWP, the IG re-attribution."""
    from brainattr import pipeline

    s = _plan().settings
    if stage_log:
        os.environ["BRAINATTR_STAGE_LOG"] = str(stage_log)
    try:
        ch = pipeline.chapter_tables(s.dataset, s.models[0], list(s.subjects), context=s.context, pooling=s.pooling,
                                     inner_folds=s.inner_folds, layer_step=s.layer_step, n_trs=s.n_trs, fold=s.fold,
                                     voxel_set=s.voxel_set, max_words=s.max_words,
                                     n_language_voxels=s.n_language_voxels, n_control_voxels=s.n_control_voxels,
                                     seed=s.seed, device=s.device, precision=s.precision, progress=False)
        lens = pipeline.logit_lens_tables(ch)
        ig = pipeline.gxi_and_ig(ch, ig_trs=s.ig_trs, ig_steps=s.ig_steps, ig_baseline=s.ig_baseline)
        # chapter 3's ground-truth checks, at the layer IG re-attributes (chapter 3's middle layer)
        truth = pipeline.ground_truth_attributions(ch.lm, ch.data, ch.encodings(ch.middle), ch.middle,
                                                   np.unique(ch.gxi.tr), ch.settings)
    finally:
        os.environ.pop("BRAINATTR_STAGE_LOG", None)
    return {"tables": ch.tables, "lens": lens, **{f"{t}_{m}": df for (t, m), df in ig.tables.items()},
            **{f"truth_{kind}_{method}_{subject}": df for (kind, method, subject), df in truth.items()}}


def _assert_same(got, expected):
    assert set(got) == set(expected)
    for name in expected:
        pd.testing.assert_frame_equal(got[name].reset_index(drop=True), expected[name].reset_index(drop=True),
                                      rtol=1e-5, obj=name)


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The tables of a plain sequential run, in a cache of their own."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BRAINATTR_CACHE", str(tmp_path_factory.mktemp("sequential-cache")))
        return _chapter_reads()


# ---------------------------------------------------------------- the grid
def test_settings_come_from_the_attribution_chapter_and_the_compared_models():
    params = {"02_brain_alignment": {"model": "m1", "models": ["m2", "m1"], "context": 80},
              "04_important_words": {"model": "m1", "layers": None, "voxel_set": "language", "n_trs": 7,
                                     "subjects": ["sub-02"], "context": 640, "thresholds": [1, 2]},
              "08_controls": {"n_trs": 12, "subjects": ["sub-01"]}}
    settings = sweep.settings_from_notebooks(params)
    assert settings.models == ("m2", "m1")          # no repeat, chapter 2's order first
    assert (settings.n_trs, settings.context, settings.subjects) == (7, 640, ("sub-02",))
    assert settings.checks == ()                    # no notebook declares a check's parameters
    in_book_order = {k: params[k] for k in ("02_brain_alignment", "04_important_words")}
    checks = sweep.settings_from_notebooks({**in_book_order, "07_masking": {"mask_ks": [1]}, "08_controls": {
        **params["08_controls"], "control_model": None}}).checks
    assert [name for name, _ in checks] == ["07_masking", "08_controls"]
    other = sweep.settings_from_notebooks({**params, "07_masking": {"mask_ks": [2]}}).checks
    assert other[0][1] != checks[0][1]               # another parameter value: another sweep
    with pytest.raises(sweep.SweepError, match="layers"):
        sweep.settings_from_notebooks({"08_controls": params["08_controls"]})


def test_the_jobs_read_the_data_and_features_the_chapters_read():
    """The book's data parameters and ``tr_features`` reach the jobs (a sweep on a user's text or with
    Lanczos features would otherwise attribute the built-in text with averaged features)."""
    chapter = {"model": "m1", "layers": None, "voxel_set": "language", "n_trs": 7, "context": 80,
               "tr_features": "lanczos", "text": "story.txt", "data_options": {"task": "reading"}}
    settings = sweep.settings_from_notebooks({"04_important_words": chapter})
    assert settings.tr_features == "lanczos"
    kwargs = settings.data_kwargs()
    assert (kwargs["text"], kwargs["options"], kwargs["context"]) == ("story.txt", {"task": "reading"}, 80)
    assert sweep.settings_from_notebooks({"04_important_words": {**chapter, "data_options": {}}}).data_kwargs()["options"] is None


def test_planned_trs_are_the_encoding_models_held_out_trs():
    from brainattr.attribution import held_out_trs
    from brainattr.encoding import fit_encoding

    rng = np.random.default_rng(0)
    runs = np.repeat([0, 1, 2], 60)
    enc = fit_encoding(rng.normal(size=(180, 3)), rng.normal(size=(180, 2)), runs, inner_folds=2, progress=False)
    for fold, n in ((None, None), (None, 7), (1, 5)):
        np.testing.assert_array_equal(sweep.planned_trs(runs, fold, n), held_out_trs(enc, fold, n))
    with pytest.raises(sweep.SweepError, match="fold 3 does not exist"):
        sweep.planned_trs(runs, 3)


@pytest.mark.medium
def test_the_tiny_grid_and_its_dependencies():
    plan = _plan(trs_per_job=2)
    assert plan.counts() == {"A": 2, "B": 2, "C": 2, "final": 1}
    assert [j.layer for j in plan.stage("A")] == [0, 4]
    assert [(j.group, j.trs) for j in plan.stage("B")] == [("late", (0, 2)), ("late", (2, 3))]
    # the best layers are chosen among all scored layers: every stage-B job waits for all of its model's stage A
    assert plan.dependencies(plan.stage("B")[0]) == plan.stage("A")
    # the check notebooks read stages A and B, one after the other (chapter 7 masks chapter 8's 640-word tables)
    masking, controls = plan.stage("C")
    assert (masking.key, controls.key) == ("C-07_masking", "C-08_controls")
    assert plan.dependencies(masking) == plan.stage("A") + plan.stage("B")
    assert plan.dependencies(controls) == plan.stage("A") + plan.stage("B") + [masking]
    assert len(plan.dependencies(plan.job("final"))) == 6
    listing = sweep.format_plan(plan)
    assert "A 2, B 2, C 2, final 1; 7 in all" in listing and "B-tiny-random-late-trs00002-00003" in listing
    by_hand = _plan(trs_per_job=64, layers=(2,))       # a layer given by hand: scored too, its own dependency
    assert [j.layer for j in by_hand.stage("A")] == [0, 2, 4]
    assert by_hand.dependencies(by_hand.stage("B")[0]) == [by_hand.job("A-tiny-random-layer002")]


def test_other_models_are_planned_as_chapter_4_attributes_them():
    """`other_model_trs` and `other_model_groups` (chapter 4) shrink the second model's jobs, and its TRs
    are exactly those chapter 4 attributes for it (evenly spaced over the held-out TRs, not a subset of the
    primary model's)."""
    from brainattr.attribution import held_out_trs
    from brainattr.encoding import fit_encoding

    chapter = {"model": "m1", "models": ["m1", "m2"], "layers": [3], "voxel_set": "language", "n_trs": 7,
               "other_model_trs": 3, "other_model_groups": ["middle"], "other_model_lens": False}
    settings = sweep.settings_from_notebooks({"04_important_words": chapter})
    assert (settings.model, settings.other_model_trs, settings.other_model_groups) == ("m1", 3, ("middle",))
    assert settings.is_primary("m1") and not settings.is_primary("m2")
    assert (settings.n_trs_of("m1"), settings.n_trs_of("m2")) == (7, 3)
    assert settings.groups_of("m2", ["early", "middle", "late"]) == ["middle"]
    assert settings.groups_of("m1", ["layer 3"]) == ["layer 3"]
    rng = np.random.default_rng(0)
    runs = np.repeat([0, 1, 2], 60)
    enc = fit_encoding(rng.normal(size=(180, 3)), rng.normal(size=(180, 2)), runs, inner_folds=2, progress=False)
    np.testing.assert_array_equal(sweep.planned_trs(runs, None, settings.n_trs_of("m2")), held_out_trs(enc, None, 3))


@pytest.mark.medium
def test_a_second_model_gets_its_own_trs_and_groups_in_the_plan():
    plan = _plan(trs_per_job=2, models=("tiny-random", "shape-smollm2-135m-L4-tok-tiny-random"),
                 other_model_trs=2, other_model_groups=("late",))
    other = "shape-smollm2-135m-L4-tok-tiny-random"
    assert plan.other_trs is not None and plan.other_trs.size == 2 and plan.trs.size == 3
    b = [j for j in plan.stage("B") if j.model == other]
    assert [(j.group, j.trs) for j in b] == [("late", (0, 2))]
    np.testing.assert_array_equal(plan.trs_of(other), plan.other_trs)
    np.testing.assert_array_equal(plan.trs_of("tiny-random"), plan.trs)
    assert "2 for the models but the primary" in sweep.format_plan(plan)


# ---------------------------------------------------------------- errors before anything is submitted
def _nothing_submitted():
    return not (Path(os.environ["BRAINATTR_CACHE"]) / "sweeps").exists()


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINATTR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_an_unknown_executor_is_refused(fresh_cache, capsys):
    assert cli.main(["sweep", "--profile", "tiny", "--executor", "pbs"]) == 1
    err = capsys.readouterr().err
    assert "unknown executor 'pbs'" in err and "--executor slurm" in err
    assert _nothing_submitted()


def test_slurm_without_sbatch_is_refused(fresh_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert cli.main(["sweep", "--profile", "tiny", "--executor", "slurm"]) == 1
    err = capsys.readouterr().err
    assert "needs SLURM's `sbatch`" in err and "login node" in err
    assert _nothing_submitted()


def test_a_gpu_request_on_a_cpu_only_machine_is_refused(fresh_cache, monkeypatch):
    monkeypatch.setattr("brainattr.sweep._submit.cuda_available", lambda: False)
    with pytest.raises(sweep.SweepError, match=r"--gpus-per-job 1 asks for GPUs.*torch.cuda.is_available\(\) is False"):
        sweep.check_options(sweep.SubmitOptions(executor="local", gpus_per_job=1))
    sweep.check_options(sweep.SubmitOptions(executor="local", gpus_per_job=0, jobs=2))  # CPU jobs are fine
    assert _nothing_submitted()


def test_a_grid_without_jobs_is_refused(fresh_cache, capsys):
    assert cli.main(["sweep", "--profile", "tiny", "-p", "subjects", "[]"]) == 1
    assert "has no jobs: it names no subject" in capsys.readouterr().err
    with pytest.raises(sweep.SweepError, match="no jobs: it names no model"):
        sweep.plan_sweep(sweep.SweepSettings(models=()))
    assert _nothing_submitted()


def test_a_cache_the_jobs_do_not_share_is_detected(fresh_cache, tmp_path):
    import submitit

    executor = submitit.LocalExecutor(tmp_path / "probe-logs")
    executor.update_parameters(timeout_min=5)
    assert sweep.check_shared_cache(executor, timeout=120, poll=0.2)   # same folder: passes
    # a job that sees another cache folder, as a compute node with a node-local cache would
    executor.update_parameters(setup=[f"export BRAINATTR_CACHE={tmp_path / 'node-local'}"])
    with pytest.raises(sweep.SweepError, match="is not shared with the compute nodes.*export BRAINATTR_CACHE="):
        sweep.check_shared_cache(executor, timeout=120, poll=0.2)
    assert list((tmp_path / "node-local" / "sweeps" / "hosts").glob("*.json"))   # the job wrote where it saw


def test_slurm_extra_must_be_key_value():
    assert sweep.parse_slurm_extra(["account=lab", "--mem=64G"]) == {"account": "lab", "mem": "64G"}
    with pytest.raises(sweep.SweepError, match="not KEY=VALUE"):
        sweep.parse_slurm_extra(["account"])


# ---------------------------------------------------------------- running
@pytest.mark.medium
def test_parallel_local_jobs_give_the_sequential_tables(fresh_cache, tmp_path, sequential):
    plan = _plan(trs_per_job=2)
    lines = []
    report = sweep.run_sweep(plan, sweep.SubmitOptions(executor="local", jobs=2), echo=lines.append)
    assert report.ok, lines
    assert report.submitted == {"A": 2, "B": 2, "final": 1}
    # the two stage-B jobs wrote into the same tables at the same time
    records = sweep.read_records(report.folder)
    spans = [(pd.Timestamp(r["state"]["time"]).timestamp() - r["state"]["seconds"],
              pd.Timestamp(r["state"]["time"]).timestamp()) for k, r in records.items() if k.startswith("B-")]
    assert max(s for s, _ in spans) < min(e for _, e in spans), spans
    assert not list(fresh_cache.glob("attributions/**/parts/part-*"))   # the final step merged every part
    got = _chapter_reads(stage_log=tmp_path / "reads.jsonl")
    assert read_stage_log(tmp_path / "reads.jsonl") == []                # the chapters only read the cache
    _assert_same(got, sequential)
    status = sweep.format_status(plan)
    assert "| A | 2 | 2 | 0 | 0 | 0 | 0 | 0 |" in status and "| B | 2 | 2 |" in status
    timings = json.loads((report.folder / "timings.json").read_text())
    assert {"encoding", "attribution"} <= set(timings["stage_seconds"])
    again = sweep.run_sweep(plan, sweep.SubmitOptions(executor="local", jobs=2), echo=lines.append)
    assert (again.skipped, again.submitted) == (4, {"final": 1})         # nothing recomputed


@pytest.mark.slow
def test_stage_c_runs_the_check_notebooks_and_the_final_step_only_reads_them(fresh_cache, tmp_path):
    """Chapters 7 and 8 compute their maskings and controls in stage C; run again by the final step, they
    compute nothing (every stage they log is a cache hit)."""
    from brainattr.book import runner

    class ChecksAtTheEnd(runner.SweepNotebooks):       # the final step runs only the check notebooks (time)
        def __call__(self, stage_records):
            return [r.name for r in runner.run_notebooks(self.config, self.profile, self.overrides,
                                                         notebooks=["07_masking", "08_controls"],
                                                         build_dir=Path(self.build_dir), progress=False)]

    plan = _plan(trs_per_job=64, layer_step=1)       # the tiny profile's every layer: chapter 7 needs a middle one
    notebooks = ChecksAtTheEnd(load_config(REPO / "params.yml"), "tiny", {"layer_step": 1}, str(tmp_path / "build"))
    lines = []
    report = sweep.run_sweep(plan, sweep.SubmitOptions(executor="debug"), notebooks=notebooks, echo=lines.append)
    assert report.ok, lines
    assert report.submitted["C"] == 2 and report.submitted["final"] == 1
    computed = {key: {r["stage"] for r in read_stage_log(report.folder / "stages" / f"{key}.jsonl")}
                for key in ("C-07_masking", "C-08_controls")}
    assert "masking" in computed["C-07_masking"] and "attribution" in computed["C-08_controls"]
    assert (report.folder / "notebooks" / "07_masking.ipynb").exists()
    work = {"feature extraction", "encoding", "attribution", "masking"}
    final = [r for r in read_stage_log(tmp_path / "build" / "stages.jsonl") if r["stage"] in work]
    assert final == []                                   # the final step's chapters 7 and 8 only read the cache
    status = sweep.format_status(plan)
    assert "| C | 2 | 2 | 0 |" in status


_KILLABLE = """
import pickle, sys, time
from brainattr.attribution import store
from brainattr.sweep import SweepJob

real, calls = store.compute_attributions, []

def stalls_after_the_first_pass(*args, **kwargs):
    calls.append(1)
    if len(calls) > 1:
        time.sleep(600)  # the test kills the job here: its first parts are on disk, the rest is not
    return real(*args, **kwargs)

store.compute_attributions = stalls_after_the_first_pass
plan, key, folder = pickle.load(open(sys.argv[1], "rb"))
SweepJob(plan, key, folder)()
"""


@pytest.mark.medium
def test_a_killed_job_resumes_from_its_parts(fresh_cache, tmp_path, sequential, monkeypatch):
    plan = _plan(trs_per_job=3)
    folder = sweep.state_folder(plan.name)
    for job in plan.stage("A"):
        assert sweep.SweepJob(plan, job.key, folder)()["state"] == "done"
    (b_job,) = plan.stage("B")
    (tmp_path / "job.pkl").write_bytes(pickle.dumps((plan, b_job.key, folder)))
    (tmp_path / "killable.py").write_text(_KILLABLE)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "killable.py"), str(tmp_path / "job.pkl")])
    deadline = time.monotonic() + 300
    while len(list(fresh_cache.glob("attributions/**/parts/part-*"))) < 2:   # BA and NWP of the first pass
        assert proc.poll() is None and time.monotonic() < deadline, "the job ended before it was killed"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = list(fresh_cache.glob("attributions/**/parts/part-*"))
    assert "| B | 1 | 0 | 0 | 0 | 1 |" in sweep.format_status(plan)       # reported failed: its process is gone

    from brainattr.attribution import store

    real, computed = store.compute_attributions, []
    monkeypatch.setattr(store, "compute_attributions",
                        lambda *a, **k: (computed.append((a[5].tasks, a[5].methods, a[5].nwp_readout)),
                                         real(*a, **k))[1])
    report = sweep.run_sweep(plan, sweep.SubmitOptions(executor="debug"), echo=lambda m: None)
    assert report.ok and report.submitted == {"B": 1, "final": 1} and report.skipped == 2
    assert (("ba", "nwp"), ("gxi",), "final") not in computed and computed   # the written parts were not redone
    assert all(not p.exists() for p in written)                              # merged into the tables
    _assert_same(_chapter_reads(), sequential)


@pytest.mark.medium
def test_a_failed_job_is_reported_with_its_log_and_stops_only_its_dependents(fresh_cache):
    good = _plan(trs_per_job=64)
    settings = sweep.SweepSettings(**{**good.settings.__dict__, "models": ("tiny-random", "no-such-model")})
    jobs = [good.job("A-tiny-random-layer004"), sweep.Job("A", "no-such-model", layer=0),
            sweep.Job("B", "no-such-model", group="late", trs=(0, 3)), sweep.Job("final")]
    plan = sweep.Plan(name="broken", settings=settings, jobs=jobs, trs=good.trs,
                      depths={"tiny-random": 4, "no-such-model": 4})
    lines = []
    report = sweep.run_sweep(plan, sweep.SubmitOptions(executor="debug"), echo=lines.append)
    assert not report.ok and "final" not in report.submitted
    ((key, error, log),) = report.failed
    assert key == "A-no-such-model-layer000" and "no-such-model" in error and log.endswith("_log.err")
    assert report.blocked == ["B-no-such-model-late-trs00000-00003"]
    status = sweep.format_status(plan)
    assert "| A | 2 | 1 | 0 | 0 | 1 | 0 | 0 |" in status and "| B | 1 | 0 | 0 | 0 | 0 | 1 | 0 |" in status
    assert f"log: {log}" in status


# ---------------------------------------------------------------- SLURM, with stand-ins for its commands
_SBATCH = """#!/bin/sh
# stand-in for sbatch: keep the script, answer as sbatch does
n=$(( $(cat "$FAKE_SLURM/count" 2>/dev/null || echo 0) + 1 ))
echo $n > "$FAKE_SLURM/count"
cp "$1" "$FAKE_SLURM/job$n.sh"
echo "Submitted batch job $n"
"""
_SACCT = """#!/bin/sh
# stand-in for sacct: the first array's second task failed, everything else is still pending
echo "JobID|State|NodeList"
echo "1_0|COMPLETED|n1"
echo "1_1|FAILED|n2"
for id in 2_0 2_1 3; do echo "$id|PENDING|None"; done
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name, text in (("sbatch", _SBATCH), ("srun", "#!/bin/sh\nexit 0\n"), ("sacct", _SACCT)):
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(tmp_path))
    return tmp_path


def test_slurm_arrays_depend_on_the_jobs_they_need(fresh_cache, fake_slurm):
    plan = _plan(trs_per_job=2)
    options = sweep.SubmitOptions(executor="slurm", partition="gpu", gpus_per_job=1, time=90, array_parallelism=8,
                                  slurm_extra={"account": "lab"}, check_shared_cache=False)
    report = sweep.run_sweep(plan, options, echo=lambda m: None)
    assert report.submitted == {"A": 2, "B": 2, "final": 1} and report.final is None   # submitted, not run here
    stage_a, stage_b, final = ((fake_slurm / f"job{n}.sh").read_text() for n in (1, 2, 3))
    for script in (stage_a, stage_b, final):
        assert "#SBATCH --partition=gpu" in script and "#SBATCH --gpus-per-node=1" in script
        assert "#SBATCH --time=90" in script and "#SBATCH --account=lab" in script
        assert f"export BRAINATTR_CACHE={fresh_cache}" in script and "export HF_HUB_OFFLINE=1" in script
    assert "#SBATCH --array=0-1%2" in stage_a and "dependency" not in stage_a
    assert "#SBATCH --dependency=afterok:1_0:1_1" in stage_b and "#SBATCH --array=0-1%2" in stage_b
    assert "#SBATCH --dependency=afterok:1_0:1_1:2_0:2_1" in final
    status = sweep.format_status(plan)
    assert "| A | 2 | 0 | 0 | 1 | 1 | 0 | 0 |" in status                     # sacct: one failed, one pending
    assert "A-tiny-random-layer004" in status and "1_1_0_log.err" in status   # the failed one's log
