"""Ridge encoding-fit time at the paper's size, on random data, in one run.

Not a test: run it, read the seconds, keep the JSON. The defaults are the issue's target size::

    python benchmarks/bench_ridge.py --out build/bench_ridge.json

times :func:`brainattr.encoding.fit_encoding` (leave-one-run-out, per-voxel penalty by inner
K-fold, kernel ridge since the design is wider than it is tall) on 30,000 voxels x 2,048 features
per TR (``fit_encoding`` adds the 4 delays itself: 8,192 design columns) x 1,200 TRs in 4 runs
(4 outer folds), 16 penalties (``np.logspace`` over the range of :data:`brainattr.encoding.ALPHAS`)
and 10 inner folds. It prints the wall time, the time per outer fold and, on outer fold 0, how that
splits between the steps of a fold:

- ``kernel_cv``: :class:`himalaya.kernel_ridge.KernelRidgeCV` ``fit``: the linear kernel, one
  eigendecomposition per inner fold (independent of the voxels), then the per-voxel, per-penalty
  validation predictions and the refit (linear in the voxels);
- ``primal_coef``: ``get_primal_coef``, design^T x dual coefficients (linear in the voxels);
- ``predict``: the held-out predictions (linear in the voxels).

The breakdown runs the kernel solver, which ``fit_encoding`` picks whenever the design has more
columns than a fold has training TRs (always at the defaults).

Timings do not depend on the data's values. On a GPU ``--backend auto`` (the default) runs on
himalaya's ``torch_cuda`` backend; on a CPU on numpy.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def _timed(fn, repeats):
    """Best wall time of ``repeats`` calls (no warm-up: one call is minutes), and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def random_problem(voxels, features, trs, runs, seed=0):
    """Random features, responses and run labels of the benchmark's size.

    Returns
    -------
    X : array of float32, shape (trs, features)
    Y : array of float32, shape (trs, voxels)
    tr_runs : array of int, shape (trs,)
        ``runs`` contiguous runs of (nearly) equal length.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((trs, features), dtype=np.float32)
    Y = rng.standard_normal((trs, voxels), dtype=np.float32)
    tr_runs = np.arange(trs) * runs // trs
    return X, Y, tr_runs


def fold_breakdown(X, Y, tr_runs, alphas, inner_folds, backend, dtype, n_targets_batch):
    """Seconds of the steps of outer fold 0, done as :func:`brainattr.encoding.fit_encoding` does them.

    Returns
    -------
    dict of str -> float
        ``prepare`` (z-scoring and delays, once per fit), ``kernel_cv``, ``primal_coef``, ``predict``.
    """
    from himalaya import scoring
    from himalaya.kernel_ridge import KernelRidgeCV
    from sklearn.model_selection import KFold

    from brainattr.encoding import _himalaya_backend, _zscore_responses
    from brainattr.trs import DELAYS, TRIM, make_delayed, run_splits, trim_mask, zscore_runs

    seconds = {}
    start = time.perf_counter()
    keep = trim_mask(tr_runs, TRIM)
    Xk = make_delayed(zscore_runs(X, tr_runs)[0], tr_runs, DELAYS)[keep]
    Yk = _zscore_responses(Y[keep], tr_runs[keep])[0]
    train, test = run_splits(tr_runs, keep, gap=5)[0]
    seconds["prepare"] = time.perf_counter() - start
    with _himalaya_backend(backend) as be:
        dtype = dtype or ("float64" if be.name == "numpy" else "float32")
        model = KernelRidgeCV(alphas=alphas, kernel="linear", cv=KFold(inner_folds, shuffle=False),
                              fit_intercept=True, warn=False,
                              solver_params=dict(score_func=scoring.r2_score, n_targets_batch=n_targets_batch))
        Xtr, Ytr = Xk[train].astype(dtype, copy=False), Yk[train].astype(dtype, copy=False)
        start = time.perf_counter()
        model.fit(Xtr, Ytr)
        be.to_numpy(model.dual_coef_)                    # waits for a GPU
        seconds["kernel_cv"] = time.perf_counter() - start
        start = time.perf_counter()
        W_backend = model.get_primal_coef()
        W = np.asarray(be.to_numpy(W_backend), dtype=np.float32)
        seconds["primal_coef"] = time.perf_counter() - start
        start = time.perf_counter()
        if be.name == "numpy":
            Xk[test].astype(np.float64) @ W.astype(np.float64)
        else:
            be.to_numpy(be.asarray(Xk[test], dtype=W_backend.dtype) @ be.asarray(W_backend))
        seconds["predict"] = time.perf_counter() - start
    return seconds


def _thread_pools():
    """Threads of each native pool (BLAS, OpenMP) numpy and torch use, by library."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    return {f"{i['internal_api']} ({Path(i['filepath']).name})": i["num_threads"] for i in threadpool_info()}


def main(argv=None):
    from brainattr.encoding import ALPHAS, fit_encoding, resolve_backend

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxels", type=int, default=30_000)
    ap.add_argument("--features", type=int, default=2048, help="features per TR, before the 4 delays")
    ap.add_argument("--trs", type=int, default=1200)
    ap.add_argument("--runs", type=int, default=4, help="runs = outer leave-one-run-out folds")
    ap.add_argument("--alphas", type=int, default=len(ALPHAS), help="penalties, log-spaced over ALPHAS' range")
    ap.add_argument("--inner-folds", type=int, default=10)
    ap.add_argument("--backend", default="auto", help="himalaya backend: auto, numpy, torch, torch_cuda, cupy")
    ap.add_argument("--dtype", default=None, choices=("float32", "float64"),
                    help="precision of the solve (default: fit_encoding's, float64 on numpy, float32 otherwise)")
    ap.add_argument("--n-targets-batch", type=int, default=10_000, help="voxels per himalaya batch")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-breakdown", action="store_true", help="skip the per-step timing of outer fold 0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="build/bench_ridge.json")
    args = ap.parse_args(argv)

    backend = resolve_backend(args.backend)
    dtype = args.dtype or ("float64" if backend == "numpy" else "float32")
    alphas = np.logspace(np.log10(ALPHAS[0]), np.log10(ALPHAS[-1]), args.alphas)
    X, Y, tr_runs = random_problem(args.voxels, args.features, args.trs, args.runs, args.seed)
    n_cols = 4 * args.features
    print(f"ridge benchmark: {args.voxels:,} voxels x {args.features:,} features (x 4 delays = {n_cols:,} "
          f"columns) x {args.trs:,} TRs in {args.runs} runs; {args.alphas} penalties, {args.inner_folds} inner "
          f"folds; backend {backend}, {dtype}; the result's weights take "
          f"{args.runs * n_cols * args.voxels * 4 / 2**30:.1f} GiB")

    fit_kw = dict(alphas=alphas, inner_folds=args.inner_folds, backend=backend, dtype=args.dtype,
                  n_targets_batch=args.n_targets_batch, progress=False)
    seconds = {}
    # load the backend (and a GPU's context) outside the timed call
    fit_encoding(X[:, :8], Y[:, :4], tr_runs, **dict(fit_kw, inner_folds=2))
    seconds["fit"], result = _timed(lambda: fit_encoding(X, Y, tr_runs, **fit_kw), args.repeats)
    n_folds = result.n_folds
    del result
    seconds["per_outer_fold"] = seconds["fit"] / n_folds
    if not args.no_breakdown:
        steps = fold_breakdown(X, Y, tr_runs, alphas, args.inner_folds, backend, args.dtype, args.n_targets_batch)
        seconds["fold0_steps"] = steps
        fold_steps = {k: v for k, v in steps.items() if k != "prepare"}
        top = max(fold_steps, key=fold_steps.get)
        note = (f"{top} dominates an outer fold ({fold_steps[top]:.1f} s of {sum(fold_steps.values()):.1f} s "
                f"timed in fold 0: " + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()) + ")")
    else:
        note = "breakdown skipped"

    try:
        import torch
        torch_version = torch.__version__
        gpu = torch.cuda.get_device_name() if backend.endswith("cuda") and torch.cuda.is_available() else None
    except ImportError:
        torch_version, gpu = None, None
    import himalaya

    pools = _thread_pools()
    report = {
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "numpy": np.__version__,
                    "himalaya": himalaya.__version__, "torch": torch_version, "cpus": os.cpu_count(),
                    "threads": max(pools.values(), default=None), "thread_pools": pools, "gpu": gpu},
        "setup": {"voxels": args.voxels, "features": args.features, "design_columns": n_cols, "trs": args.trs,
                  "runs": args.runs, "outer_folds": n_folds, "alphas": args.alphas,
                  "alpha_range": [float(alphas[0]), float(alphas[-1])], "inner_folds": args.inner_folds,
                  "backend": backend, "dtype": dtype, "n_targets_batch": args.n_targets_batch,
                  "repeats": args.repeats, "data": "random normal (timings do not depend on the values)"},
        "seconds": seconds,
        "note": note,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out)
    print(json.dumps({k: report[k] for k in ("seconds", "note")}, indent=2))
    print(f"fit: {seconds['fit']:.1f} s, {seconds['per_outer_fold']:.1f} s per outer fold")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
