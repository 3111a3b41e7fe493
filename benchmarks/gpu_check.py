"""`make gpu-check`: the GPU-marked tests and the benchmarks at the GPU targets' sizes, scored against the targets.

Two steps, on two machines::

    make gpu-wheels   # here, with PyPI:     python benchmarks/gpu_check.py kit
    make gpu-check    # on the GPU machine:  python3 benchmarks/gpu_check.py run

``kit`` fills ``.gpu/`` (git-ignored, about 15 MB): the wheels of the packages a bare GPU machine
with torch, transformers, pandas, scipy, pyarrow and pytest lacks or holds at another version
(:data:`KIT_PACKAGES`, at the versions installed here, for CPython 3.12 on x86-64), and the
built-in SmolLM2 tokenizer's files (the shape-true models read its ids: their windows have
SmolLM2's token counts), so the GPU machine needs no network.

``run`` installs the carried wheels whose package is missing or at another version into a private
folder (``--site``; nothing outside it changes), points ``BRAINATTR_CACHE`` at a fresh folder
holding the tokenizer, then runs, each step in its own process:

1. ``pytest -m gpu tests/test_gpu.py``: bf16 vs fp32, himalaya ``torch_cuda`` vs numpy,
   ``batch_size="auto"``, batches split under a real memory cap, the subjects' batched backward;
2. ``bench_attribution.py`` on ``shape-llama-3.2-1b`` at 640 words, 8 subjects, bf16, automatic
   batch size, with a profile of one BA GxI call and of its ceiling (``profile_<device>_<model>.txt``); then, for the paper's whole GxI, on its other transformer models
   (:data:`PAPER_TRANSFORMERS`) without the naive loop and IG;
3. ``bench_ridge.py`` at 30,000 voxels x 2,048 features (x 4 delays) x 1,200 TRs;
4. the targets (:data:`TARGETS`): each measured number against its threshold, written to
   ``gpu_check_<device>.json`` beside the benchmarks' JSON files in ``--results``.

``--device cpu`` runs the same steps at tiny sizes (the GPU tests are then skipped, and the
targets' numbers mean nothing): the test suite's dry run, so this script cannot rot. It exits non-zero when a step fails, not when a target
is missed (a missed target is a result: it is written down and printed).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / ".gpu"
#: Packages the GPU path needs that the GPU machine's image lacks (himalaya, captum) or holds at
#: another version than the one tested here (transformers, and regex, which it requires).
KIT_PACKAGES = ("himalaya", "captum", "transformers", "regex")
#: The wheels' platform: the GPU machine's CPython 3.12 on x86-64.
WHEEL_PLATFORM = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:",
                  "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                  "--platform", "manylinux2014_x86_64"]
#: The paper's transformer models (its Table 1): the whole-GxI target sums their extrapolations.
PAPER_TRANSFORMERS = ("shape-llama-3.2-1b", "shape-gemma-2b", "shape-falcon3-1b-base")
#: Target name -> (how it is read, comparison, threshold, what it is).
TARGETS = {
    "ba_gxi_over_first_L_ceiling": (
        ("attribution", "ratios", "ba_gxi_over_first_L_ceiling"), ">=", 0.85,
        "BA GxI throughput / the bare forward+backward of the model's first L blocks, same batch and length "
        "(bf16, 640 words, one subject)"),
    "shared_vs_naive_speedup": (
        ("attribution", "ratios", "shared_vs_naive_speedup"), ">=", 50.0,
        "naive captum loop (fp32, one TR at a time, whole model) / ours with 8 subjects in one pass, per subject-TR"),
    "paper_transformer_gxi_hours": (
        None, "<=", 5.0,
        "the paper's whole GxI for its transformer models (3 layers x 8 subjects x the Harry Potter held-out TRs "
        "each), extrapolated from the measured cost per subject-TR, in GPU-hours"),
    "ridge_fit_seconds": (
        ("ridge", "seconds", "fit"), "<=", 10.0,
        "leave-one-run-out ridge fit with per-voxel penalties, 30,000 voxels x 8,192 columns x 1,200 TRs"),
}
#: Reported beside the targets, with no threshold.
ALSO_REPORTED = {"ba_gxi_over_whole_model_ceiling": ("attribution", "ratios", "ba_gxi_over_ceiling"),
                 "ba_subjects_shared_over_ceiling": ("attribution", "ratios", "ba_subjects_shared_over_ceiling"),
                 "naive_speedup_bound": ("attribution", "ratios", "naive_speedup_bound"),
                 "subjects_shared_speedup": ("attribution", "ratios", "subjects_shared_speedup"),
                 "ig_seconds_per_tr": ("attribution", "seconds_per_subject_tr", "ours_ig")}

#: The steps' sizes: the targets' (a GPU) and a dry run's (``--device cpu``).
SIZES = {
    "cuda": dict(
        model="shape-llama-3.2-1b", others=PAPER_TRANSFORMERS[1:],
        attribution=["--context", "640", "--subjects", "8", "--trs", "16", "--precision", "bf16",
                     "--batch-size", "auto", "--naive-trs", "4", "--ig-trs", "4", "--repeats", "2"],
        others_attribution=["--context", "640", "--subjects", "8", "--trs", "16", "--precision", "bf16",
                            "--batch-size", "auto", "--naive-trs", "0", "--ig-trs", "0", "--repeats", "1"],
        ridge=["--voxels", "30000", "--features", "2048", "--trs", "1200"]),
    "cpu": dict(
        model="tiny-random", others=(),
        attribution=["--context", "16", "--subjects", "2", "--trs", "2", "--precision", "fp32", "--batch-size", "2",
                     "--naive-trs", "1", "--ig-trs", "1", "--ig-steps", "2", "--repeats", "1", "--data", "noise"],
        others_attribution=[],
        ridge=["--voxels", "200", "--features", "16", "--trs", "160", "--runs", "2", "--alphas", "3",
               "--inner-folds", "2", "--no-breakdown"]),
}


def kit(out: Path = KIT) -> Path:
    """Download the wheels and save the tokenizer files into ``out`` (run here, with PyPI).

    Each folder is written aside and moved into place only when complete: a failed download leaves
    the previous kit (or none), never half of one.
    """
    from brainattr.cache import atomic_dir
    from brainattr.lm import load_model

    out.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in KIT_PACKAGES]
    with atomic_dir(out / "wheels") as wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels),
                        *WHEEL_PLATFORM, *pins], check=True)
    smollm2 = load_model("smollm2-135m")
    with atomic_dir(out / "tokenizer") as tokenizer:
        smollm2.tokenizer.save_pretrained(tokenizer)
        smollm2.model.config.save_pretrained(tokenizer)  # marks the folder as a converted built-in (tokenizer only)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"gpu kit in {out}: {', '.join(pins)} and the SmolLM2 tokenizer, {size / 2**20:.1f} MiB")
    return out


def wheel_version(path: Path) -> tuple[str, str]:
    """(distribution, version) from a wheel's file name (``name-version-...whl``)."""
    name, version = path.name.split("-")[:2]
    return name.lower().replace("_", "-"), version


def packages_to_install(wheels) -> list[Path]:
    """The carried wheels whose package is not installed at that version."""
    missing = []
    for path in wheels:
        name, version = wheel_version(path)
        try:
            if importlib.metadata.version(name) == version:
                continue
        except importlib.metadata.PackageNotFoundError:
            pass
        missing.append(path)
    return missing


def install_kit(site: Path) -> dict:
    """Install the carried wheels that are missing into ``site``; the environment the steps need."""
    env = dict(os.environ)
    paths = [str(ROOT / "src")]
    wheels = sorted((KIT / "wheels").glob("*.whl"))
    absent = [name for name in KIT_PACKAGES if importlib.util.find_spec(name) is None]
    if absent and not wheels:
        raise SystemExit(f"gpu_check run: {', '.join(absent)} not installed here and no wheels in {KIT / 'wheels'}; "
                         "run `make gpu-wheels` on a machine with PyPI first and bring .gpu/ along (the device tool: "
                         "carry '.gpu').")
    missing = packages_to_install(wheels)
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, missing)], check=True)
        paths.insert(0, str(site))
    print(f"installed from {KIT / 'wheels'}: {', '.join(p.name.split('-')[0] for p in missing) or 'nothing'}")
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    cache = Path(tempfile.mkdtemp(prefix="brainattr-gpu-cache-"))
    if (KIT / "tokenizer").is_dir():  # as if the built-in had been converted here (tokenizer only)
        shutil.copytree(KIT / "tokenizer", cache / "models" / "smollm2-135m")
    env.update(BRAINATTR_CACHE=str(cache), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def device_tag(device: str) -> str:
    """``h100``-like short name of the GPU (``cpu`` on a CPU), for the result files' names."""
    if device == "cpu":
        return "cpu"
    import torch

    name = torch.cuda.get_device_name().lower()
    found = re.search(r"\b([a-z]\d{2,4}[a-z]?)\b", name)
    return found.group(1) if found else re.sub(r"[^a-z0-9]+", "-", name).strip("-")


def _step(name, command, env, log):
    """Run one step in its own process; its seconds and exit status."""
    print(f"\n== {name}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    print(done.stdout[-6000:], flush=True)
    log.append(dict(step=name, seconds=round(seconds, 1), returncode=done.returncode, tail=done.stdout[-1500:]))
    return done


def _read(results: dict, where):
    value = results
    for key in where:
        value = None if value is None else value.get(key)
    return value


def score_targets(attribution: dict, ridge: dict, extrapolations: dict) -> dict:
    """Each target's measured value, threshold and verdict, from the benchmarks' reports.

    Parameters
    ----------
    attribution, ridge : dict
        The reports of ``bench_attribution.py`` (the main model) and ``bench_ridge.py``.
    extrapolations : dict of str -> float
        GPU-hours of the paper's GxI per transformer model (``paper_gxi_hours_for_this_model``).

    Returns
    -------
    dict of str -> dict(value, comparison, threshold, met, what)
        ``met`` is None where the value was not measured.
    """
    results = dict(attribution=attribution, ridge=ridge)
    scored = {}
    for name, (where, comparison, threshold, what) in TARGETS.items():
        if where is None:   # the paper's whole GxI: every transformer model measured
            complete = set(extrapolations) == set(PAPER_TRANSFORMERS)
            value = sum(extrapolations.values()) if complete else None
        else:
            value = _read(results, where)
        met = None if value is None else (value >= threshold if comparison == ">=" else value <= threshold)
        scored[name] = dict(value=value, comparison=comparison, threshold=threshold, met=met, what=what)
    return scored


def run(device: str, results_dir: Path, site: Path) -> int:
    """All steps; 0 when every step ran (whether or not the targets are met)."""
    started = time.perf_counter()
    env = install_kit(site)
    sizes, tag = SIZES[device], device_tag(device)
    results_dir.mkdir(parents=True, exist_ok=True)
    log, py = [], sys.executable
    tests = _step("gpu tests", [py, "-m", "pytest", "-m", "gpu", "tests/test_gpu.py", "-q", "-p", "no:cacheprovider",
                                "-W", "ignore::DeprecationWarning"], env, log)
    reports, extrapolations = {}, {}
    for model in [sizes["model"], *sizes["others"]]:
        out = results_dir / f"bench_attribution_{tag}_{model}.json"
        extra = sizes["attribution"] if model == sizes["model"] else sizes["others_attribution"]
        if model == sizes["model"]:   # where the time goes: torch.profiler and cProfile tables
            extra = [*extra, "--profile", str(results_dir / f"profile_{tag}_{model}.txt")]
        done = _step(f"attribution {model}", [py, "benchmarks/bench_attribution.py", "--model", model,
                                              "--device", device, *extra, "--out", str(out)], env, log)
        if done.returncode == 0:
            reports[model] = json.loads(out.read_text())
            extrapolations[model] = reports[model]["extrapolation"]["paper_gxi_hours_for_this_model"]
    ridge_out = results_dir / f"bench_ridge_{tag}_{sizes['ridge'][1]}_float32.json"
    done = _step("ridge", [py, "benchmarks/bench_ridge.py", *sizes["ridge"], "--dtype", "float32",
                           "--out", str(ridge_out)], env, log)
    ridge = json.loads(ridge_out.read_text()) if done.returncode == 0 else None
    main = reports.get(sizes["model"])
    summary = dict(
        device=tag, date=time.strftime("%Y-%m-%d %H:%M"), seconds=round(time.perf_counter() - started, 1),
        targets=score_targets(main, ridge, extrapolations),
        also_reported={k: _read(dict(attribution=main, ridge=ridge), w) for k, w in ALSO_REPORTED.items()},
        paper_gxi_hours_per_model=extrapolations, steps=log)
    out = results_dir / f"gpu_check_{tag}.json"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out)
    print(f"\n== targets ({tag}, {summary['seconds']:.0f} s in all)")
    for name, t in summary["targets"].items():
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        value = "-" if t["value"] is None else f"{t['value']:.3g}"
        print(f"{name}: {value} ({t['comparison']} {t['threshold']}): {verdict}")
    print(f"wrote {out}")
    failed = [s["step"] for s in log if s["returncode"] != 0]
    if failed:
        print(f"failed steps: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed or tests.returncode != 0 else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("kit", help="download the wheels and copy the tokenizer into .gpu/ (here, with PyPI)")
    go = sub.add_parser("run", help="the tests, the benchmarks and the targets (on the GPU machine)")
    go.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: the dry run, at tiny sizes")
    go.add_argument("--results", default=str(ROOT / "benchmarks" / "results"), help="where the JSON files go")
    go.add_argument("--site", default=os.path.join(tempfile.gettempdir(), "brainattr-gpu-site"),
                    help="where missing packages are installed")
    args = ap.parse_args(argv)
    if args.command == "kit":
        kit()
        return 0
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("gpu_check run: torch sees no CUDA GPU here; run it on a GPU machine, or pass "
                             "`--device cpu` for the dry run.")
    return run(args.device, Path(args.results), Path(args.site))


if __name__ == "__main__":
    sys.exit(main())
