"""Voxelwise encoding models: ridge from delayed LM features to fMRI, and the BA score.

The pipeline for one layer and one subject (paper, Sec. 3; Toneva & Wehbe 2019 conventions):

1. the per-TR averaged embeddings are z-scored within each run, over all TRs of the run
   (:func:`brainattr.trs.zscore_runs`);
2. TR ``t`` gets the features of TRs ``t-1 ... t-4`` of the same run, concatenated
   (:func:`brainattr.trs.make_delayed`; zero before the run's start);
3. the first 20 and last 15 TRs of each run are dropped (:func:`brainattr.trs.trim_mask`);
   the remaining rows are the *kept* TRs;
4. the responses of the kept TRs are z-scored within each run;
5. outer cross-validation leaves one run out (:func:`brainattr.trs.run_splits`), dropping ``gap`` training TRs
   on either side of the test block;
6. in each outer fold, :class:`himalaya.kernel_ridge.KernelRidgeCV` (linear kernel: the design is
   usually wider than it is tall) chooses one ridge penalty per voxel by a contiguous, unshuffled
   inner K-fold over the training TRs and refits, with an intercept;
   :meth:`~himalaya.kernel_ridge.KernelRidgeCV.get_primal_coef` gives the primal weights (for
   narrow designs, e.g. tiny test models, :class:`himalaya.ridge.RidgeCV` solves the same problem);
   on a GPU this runs on himalaya's ``torch_cuda`` backend (``backend="auto"``), on a CPU on numpy;
7. brain alignment (BA) is the Pearson r per voxel between the concatenated held-out predictions
   and the z-scored measured responses (:func:`brainattr.metrics.pearson_r`).

The fitted weights split per delay, with the run's z-scoring folded in, are the differentiable
head the attribution methods use (:meth:`EncodingResult.predict_tr`, :meth:`EncodingResult.head`).
"""
from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass, fields, replace

import numpy as np

from .cache import array_hash, cache_dir, cache_key, load_npz, save_npz, stage_timer
from .features import stimulus_tr_features
from .lm import special_prefix
from .metrics import pearson_r
from .schema import DataError
from .trs import (
    DELAYS,
    TRIM,
    make_delayed,
    run_splits,
    split_by_delay,
    trim_mask,
    zscore_runs,
)

#: Ridge penalties tried by the inner cross-validation: the Toneva & Wehbe (2019) grid,
#: 10^-6 ... 10^9. On synthetic data shaped like the HP set (about 940 training TRs, 4 x 576
#: features) voxels with signal choose 10^4 - 10^5; voxels without signal choose either about
#: 10^5 - 10^6 or the top of the grid (i.e. predict about the mean). Extending the grid to 10^12
#: changed no voxel's held-out r by more than 1e-3. The kernel is diagonalised once per inner
#: fold, so the number of alphas barely affects the run time.
ALPHAS = np.logspace(-6, 9, 16)

#: Inner-CV scores selectable with ``score=``: name -> himalaya.scoring function name.
SCORES = {"r2": "r2_score", "correlation": "correlation_score", "l2": "l2_neg_loss"}

#: Version of the on-disk format written by :meth:`EncodingResult.save`.
FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------
# Plain functions
# --------------------------------------------------------------------------------------------

def _check_inputs(tr_features, responses, tr_runs):
    X = np.asarray(tr_features)
    Y = np.asarray(responses)
    runs = np.asarray(tr_runs)
    if X.ndim != 2:
        raise DataError(f"tr_features must be 2-D (n_trs, n_features) for one layer, got shape {X.shape}; "
                        "pick one layer, e.g. features[layer].")
    if Y.ndim != 2:
        raise DataError(f"responses must be 2-D (n_trs, n_voxels), got shape {Y.shape}.")
    if runs.ndim != 1:
        raise DataError(f"tr_runs must be 1-D (one run id per TR), got shape {runs.shape}.")
    if not (X.shape[0] == Y.shape[0] == runs.shape[0]):
        raise DataError(f"length mismatch: tr_features has {X.shape[0]} TRs, responses {Y.shape[0]}, tr_runs "
                        f"{runs.shape[0]}; compute features with tr_average(..., n_trs=stimulus.n_trs) and pass "
                        "stimulus.tr_runs of the same stimulus as the responses.")
    if not np.isfinite(X).all():
        bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
        raise DataError(f"tr_features contain NaN/inf in {bad.size} TR(s), first TR {bad[0]}; recompute the "
                        "embeddings (fp16 overflow? load the model in float32).")
    if not np.isfinite(Y).all():
        nbad = int((~np.isfinite(Y).all(axis=0)).sum())
        raise DataError(f"responses contain NaN/inf in {nbad} voxel(s); call "
                        "brainattr.schema.drop_bad_voxels(dataset) first.")
    if np.unique(runs).size < 2:
        raise DataError(f"leave-one-run-out needs at least 2 runs, got {np.unique(runs).size}; split the "
                        "recording into pseudo-runs (e.g. contiguous quarters) in the Stimulus' tr_runs.")
    return X, Y, runs


def _zscore_responses(Y, runs, chunk=4096):
    """Per-run z-scoring in voxel chunks (bounds the float64 temporaries of zscore_runs)."""
    out = np.empty(Y.shape, dtype=np.float32)
    run_ids = np.unique(runs)
    means = np.empty((run_ids.size, Y.shape[1]))
    stds = np.empty((run_ids.size, Y.shape[1]))
    for start in range(0, Y.shape[1], chunk):
        sl = slice(start, start + chunk)
        out[:, sl], means[:, sl], stds[:, sl] = zscore_runs(Y[:, sl], runs)
    return out, means, stds


def resolve_backend(name="auto"):
    """The himalaya backend ``name`` stands for: ``"auto"`` is ``torch_cuda`` when torch sees a GPU,
    else ``numpy``; other names are returned as given."""
    if name != "auto":
        return name
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return "torch_cuda"
    return "numpy"


@contextlib.contextmanager
def _himalaya_backend(name):
    """Set the himalaya backend for the block and restore the previous one afterwards."""
    from himalaya.backend import get_backend, set_backend

    previous = get_backend().name
    backend = set_backend(resolve_backend(name), on_error="warn")
    try:
        yield backend
    finally:
        set_backend(previous)


# --------------------------------------------------------------------------------------------
# Fitted result
# --------------------------------------------------------------------------------------------
@dataclass
class EncodingResult:
    """A fitted leave-one-run-out encoding model of one layer for one subject.

    Attributes
    ----------
    delays : tuple of int
        Delays in TRs; block ``d`` of the weights multiplies the features of TR ``t - delays[d]``.
    trim : (int, int)
        TRs dropped at the start and end of each run.
    gap : int
        Training TRs dropped on either side of each test block.
    tr_runs : array of int, shape (n_trs,)
        Run of each stimulus TR.
    keep : array of bool, shape (n_trs,)
        Kept (not trimmed) stimulus TRs.
    tr_index : array of int, shape (n_kept,)
        Stimulus TR of each kept row (``np.flatnonzero(keep)``).
    runs : array of int, shape (n_runs,)
        Run ids; fold ``k`` tests run ``runs[k]``.
    feature_means, feature_stds : arrays of float64, shape (n_runs, n_features)
        Per-run z-scoring of the features (over all TRs of the run).
    response_means, response_stds : arrays of float64, shape (n_runs, n_voxels)
        Per-run z-scoring of the responses (over the kept TRs of the run).
    weights : array of float32, shape (n_folds, n_delays * n_features, n_voxels)
        Primal ridge weights on z-scored delayed features, delay blocks in the order of ``delays``.
    intercepts : array of float32, shape (n_folds, n_voxels)
    alphas : array of float32, shape (n_folds, n_voxels)
        Ridge penalty chosen per voxel in each fold.
    alpha_grid : array of float64, shape (n_alphas,)
        The penalties that were tried.
    cv_scores : array of float32, shape (n_folds, n_voxels)
        Inner-CV score (``score``) of the chosen penalty.
    test_trs : list of arrays of int, one per fold
        Stimulus TRs (not kept-row indices) tested in each fold.
    predictions : array of float32, shape (n_kept, n_voxels)
        Held-out predictions of every kept TR (z-scored response units), by the fold that tests it.
    scores : array of float64, shape (n_voxels,)
        Brain alignment: Pearson r between ``predictions`` and the z-scored responses, over all
        kept TRs.
    fold_scores : array of float64, shape (n_folds, n_voxels)
        Pearson r within each test run.
    score : str
        Inner-CV criterion used to choose the penalties.
    """

    delays: tuple
    trim: tuple
    gap: int
    tr_runs: np.ndarray
    keep: np.ndarray
    tr_index: np.ndarray
    runs: np.ndarray
    feature_means: np.ndarray
    feature_stds: np.ndarray
    response_means: np.ndarray
    response_stds: np.ndarray
    weights: np.ndarray
    intercepts: np.ndarray
    alphas: np.ndarray
    alpha_grid: np.ndarray
    cv_scores: np.ndarray
    test_trs: list
    predictions: np.ndarray
    scores: np.ndarray
    fold_scores: np.ndarray
    score: str = "r2"

    # ---------------------------------------------------------------- sizes
    @property
    def n_folds(self) -> int:
        return self.weights.shape[0]

    @property
    def n_delays(self) -> int:
        return len(self.delays)

    @property
    def n_features(self) -> int:
        """Features per TR (H), before delays."""
        return self.feature_means.shape[1]

    @property
    def n_voxels(self) -> int:
        return self.weights.shape[2]

    # ---------------------------------------------------------------- lookups
    def _run_pos(self, tr):
        return int(np.searchsorted(self.runs, self.tr_runs[tr]))

    def _check_tr(self, tr):
        tr = int(tr)
        if not 0 <= tr < len(self.tr_runs):
            raise IndexError(f"TR {tr} is outside the stimulus (0 ... {len(self.tr_runs) - 1}).")
        return tr

    def fold_of(self, tr) -> int:
        """The fold whose test set holds stimulus TR ``tr`` (the model that never saw it).

        Raises ValueError for a trimmed TR, which no fold tests.
        """
        tr = self._check_tr(tr)
        if not self.keep[tr]:
            raise ValueError(f"TR {tr} was trimmed (trim={tuple(self.trim)} per run), so no fold tests it; "
                             "choose a kept TR from result.tr_index.")
        return int(np.searchsorted(self.runs, self.tr_runs[tr]))

    def delay_weights(self, fold) -> np.ndarray:
        """Weights of one fold split by delay.

        Returns
        -------
        W : array of float32, shape (n_delays, n_features, n_voxels)
            ``W[d]`` multiplies the z-scored features of TR ``t - delays[d]``.
        """
        return split_by_delay(self.weights[int(fold)], self.n_delays)

    def source_trs(self, tr) -> np.ndarray:
        """Stimulus TRs feeding the prediction of TR ``tr``, array of int of shape (n_delays,).

        ``-1`` where ``tr - delays[d]`` falls before the start of the run (that block is zero).
        """
        tr = self._check_tr(tr)
        out = np.full(self.n_delays, -1, dtype=int)
        for d, delay in enumerate(self.delays):
            src = tr - int(delay)
            if 0 <= src < len(self.tr_runs) and self.tr_runs[src] == self.tr_runs[tr]:
                out[d] = src
        return out

    def head(self, tr, fold=None) -> dict:
        """Everything the attribution head needs to predict TR ``tr``, as numpy arrays.

        The prediction is ``sum_d ((x[src[d]] - mean) / std) @ weights[d] + intercept`` over the
        delays with ``src[d] >= 0``, where ``x`` are the un-normalised per-TR features.

        Returns
        -------
        head : dict with
            ``weights`` (n_delays, n_features, n_voxels) float32, ``intercept`` (n_voxels,),
            ``mean`` and ``std`` (n_features,) of the TR's run, ``source_trs`` (n_delays,) int,
            ``fold`` int.
        """
        tr = self._check_tr(tr)
        fold = self.fold_of(tr) if fold is None else int(fold)
        rp = self._run_pos(tr)
        return dict(weights=self.delay_weights(fold), intercept=self.intercepts[fold],
                    mean=self.feature_means[rp], std=self.feature_stds[rp],
                    source_trs=self.source_trs(tr), fold=fold)

    def predict_tr(self, tr, tr_features, fold=None) -> np.ndarray:
        """Predicted response at stimulus TR ``tr`` from un-normalised per-TR features.

        Computes ``z_{t-d} = (tr_features[t-d] - feature_means[run]) / feature_stds[run]`` and
        ``y = sum_d z_{t-d} @ W_d + b`` with the weights of ``fold`` (default: the fold that
        tests ``tr``, so the model never saw it). This is the computation of the attribution head.

        Parameters
        ----------
        tr : int
            Stimulus TR.
        tr_features : array of shape (n_trs, n_features)
            Per-TR averaged features of the whole stimulus (as passed to :func:`fit_encoding`);
            only rows ``tr - delays`` are read.
        fold : int, optional

        Returns
        -------
        y : array of float64, shape (n_voxels,)
            In z-scored response units; for a kept TR and the default fold it equals the TR's
            row of ``predictions``.
        """
        h = self.head(tr, fold)
        x = np.asarray(tr_features)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise DataError(f"tr_features must have shape (n_trs, {self.n_features}), got {x.shape}.")
        y = np.asarray(h["intercept"], dtype=np.float64).copy()
        for d, src in enumerate(h["source_trs"]):
            if src >= 0:
                z = (x[src].astype(np.float64) - h["mean"]) / h["std"]
                y += z @ h["weights"][d].astype(np.float64)
        return y

    def measured_tr(self, tr, responses) -> np.ndarray:
        """Measured response at stimulus TR ``tr``, z-scored with its run's statistics.

        Parameters
        ----------
        tr : int
        responses : array of shape (n_trs, n_voxels)

        Returns
        -------
        y : array of float64, shape (n_voxels,)
        """
        tr = self._check_tr(tr)
        rp = self._run_pos(tr)
        return (np.asarray(responses[tr], dtype=np.float64) - self.response_means[rp]) / self.response_stds[rp]

    def select_voxels(self, voxels) -> "EncodingResult":
        """The same fit restricted to some voxels (int indices or bool mask of shape (n_voxels,))."""
        v = np.asarray(voxels)
        return replace(self, response_means=self.response_means[:, v], response_stds=self.response_stds[:, v],
                       weights=self.weights[:, :, v], intercepts=self.intercepts[:, v], alphas=self.alphas[:, v],
                       cv_scores=self.cv_scores[:, v], predictions=self.predictions[:, v], scores=self.scores[v],
                       fold_scores=self.fold_scores[:, v])

    # ---------------------------------------------------------------- persistence
    def save(self, path) -> None:
        """Write to ``path`` (.npz), atomically."""
        arrays = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "test_trs":
                arrays["test_trs"] = np.concatenate([np.asarray(t, dtype=np.int64) for t in value])
                arrays["test_lengths"] = np.array([len(t) for t in value], dtype=np.int64)
            else:
                arrays[f.name] = np.asarray(value)
        arrays["format_version"] = np.array(FORMAT_VERSION)
        save_npz(path, **arrays)

    @classmethod
    def load(cls, path) -> "EncodingResult":
        """Read a result written by :meth:`save`."""
        data = load_npz(path)
        version = int(data.pop("format_version", -1))
        if version != FORMAT_VERSION:
            raise DataError(f"{path} has encoding format {version}, expected {FORMAT_VERSION}; delete it and refit.")
        lengths = data.pop("test_lengths")
        data["test_trs"] = np.split(data["test_trs"], np.cumsum(lengths)[:-1])
        data["delays"] = tuple(int(d) for d in data["delays"])
        data["trim"] = tuple(int(t) for t in data["trim"])
        data["gap"] = int(data["gap"])
        data["score"] = str(data["score"])
        return cls(**data)


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------
def fit_encoding(tr_features, responses, tr_runs, delays=DELAYS, trim=TRIM, gap=5, alphas=ALPHAS,
                 inner_folds=10, score="r2", backend="auto", dtype=None, solver="auto",
                 n_targets_batch=10_000, cache=None, progress=True):
    """Fit leave-one-run-out ridge encoding models and score them (brain alignment).

    Parameters
    ----------
    tr_features : array of shape (n_trs, n_features)
        Per-TR averaged embeddings of one layer (:func:`brainattr.trs.tr_average`).
    responses : array of shape (n_trs, n_voxels)
        fMRI responses on the same TRs, without NaN (:func:`brainattr.schema.drop_bad_voxels`).
    tr_runs : array of int, shape (n_trs,)
        Run of each TR (``Stimulus.tr_runs``); at least 2 runs, each contiguous.
    delays : sequence of int
        Delays in TRs (paper: 1, 2, 3, 4).
    trim : (int, int)
        TRs dropped at the start and end of each run (Toneva & Wehbe 2019: 20, 15).
    gap : int
        Training TRs dropped on either side of each test run (see :func:`run_splits`).
    alphas : array of shape (n_alphas,)
        Ridge penalties tried by the inner CV (default :data:`ALPHAS`, 10^-6 ... 10^9).
    inner_folds : int
        Contiguous, unshuffled inner K-fold splits over the training TRs.
    score : {"r2", "correlation", "l2"}
        Inner-CV criterion for choosing one penalty per voxel ("r2": Toneva & Wehbe's 1 - R^2).
    backend : {"auto", "numpy", "torch", "torch_cuda", "cupy"}
        himalaya backend (:func:`resolve_backend`). "auto" (the default) runs on ``torch_cuda``
        when torch sees a GPU and on numpy otherwise, so CPU results are those of "numpy". Results
        are numpy arrays either way; the previous backend is restored afterwards.
    dtype : {None, "float64", "float32"}
        Precision of the ridge solve. None: float64 on the numpy backend (no slower on CPU, and
        robust for tiny penalties), float32 on the torch / GPU backends (their weights, scores and
        chosen penalties agree with numpy's to float32 round-off on well-posed problems). Stored
        weights are float32 anyway.
    solver : {"auto", "kernel", "primal"}
        ``kernel``: :class:`himalaya.kernel_ridge.KernelRidgeCV` (linear kernel, then
        ``get_primal_coef``), fast when there are more features than training TRs (the usual
        case: 4 x hidden size); ``primal``: :class:`himalaya.ridge.RidgeCV` (SVD of the features),
        fast when there are fewer. ``auto`` picks by shape. Both solve the same problem.
    n_targets_batch : int or None
        Voxels per batch inside himalaya (memory knob).
    cache : None, True or dict
        None: no cache. True or a dict of caller fields (model, layer, context, subject, ...):
        the result is loaded from / saved to ``brainattr.cache.cache_dir("encoding")`` under a key
        made of those fields, the fit settings and a hash of the input arrays. A fit on any backend
        but numpy (e.g. "auto" on a GPU) adds that backend to the key, so float32 GPU fits and
        float64 CPU fits are cached apart; CPU keys are those of the numpy backend.
    progress : bool
        Show a tqdm bar over the outer folds.

    Returns
    -------
    EncodingResult
    """
    X, Y, runs = _check_inputs(tr_features, responses, tr_runs)
    delays = tuple(int(d) for d in delays)
    trim = tuple(int(t) for t in trim)
    alphas = np.sort(np.asarray(alphas, dtype=np.float64).ravel())
    if alphas.size == 0 or not (alphas > 0).all():
        raise ValueError(f"alphas must be positive numbers, got {alphas}.")
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; use one of {sorted(SCORES)}.")
    if inner_folds < 2:
        raise ValueError(f"inner_folds must be >= 2, got {inner_folds}.")
    if solver not in ("auto", "kernel", "primal"):
        raise ValueError(f"unknown solver {solver!r}; use 'auto', 'kernel' or 'primal'.")
    if dtype not in (None, "float32", "float64", np.float32, np.float64):
        raise ValueError(f"dtype must be None, 'float32' or 'float64', got {dtype!r}.")

    path = None
    if cache is not None and cache is not False:
        fields_ = {} if cache is True else dict(cache)
        not_numpy = {} if resolve_backend(backend) == "numpy" else {"backend": resolve_backend(backend)}
        key = cache_key(**fields_, delays=delays, trim=trim, gap=int(gap), alphas=alphas.tolist(),
                        inner_folds=int(inner_folds), score=score, dtype=str(np.dtype(dtype)) if dtype else None,
                        data=array_hash(X, Y, runs), **not_numpy,
                        format=FORMAT_VERSION)
        path = cache_dir("encoding") / f"{key}.npz"
        if path.exists():
            return EncodingResult.load(path)

    result = _fit(X, Y, runs, delays, trim, int(gap), alphas, int(inner_folds), score, backend, dtype,
                  solver, n_targets_batch, progress)
    if path is not None:
        result.save(path)
    return result


def _fit(X, Y, runs, delays, trim, gap, alphas, inner_folds, score, backend, dtype, solver, n_targets_batch,
         progress):
    from himalaya import scoring
    from himalaya.kernel_ridge import KernelRidgeCV
    from himalaya.ridge import RidgeCV
    from sklearn.model_selection import KFold
    from tqdm.auto import tqdm

    try:
        keep = trim_mask(runs, trim)
    except ValueError as err:
        raise DataError(str(err)) from None
    Xz, f_means, f_stds = zscore_runs(X, runs)
    Xk = make_delayed(Xz, runs, delays)[keep]
    del Xz
    Yk, r_means, r_stds = _zscore_responses(Y[keep], runs[keep])
    splits = run_splits(runs, keep, gap)
    n_inner_min = min(len(train) for train, _ in splits)
    if n_inner_min < 2 * inner_folds:
        raise DataError(f"a training set has only {n_inner_min} TRs, too few for {inner_folds} inner folds; "
                        "lower inner_folds, trim or gap.")

    n_kept, n_vox = Yk.shape
    n_folds = len(splits)
    tr_index = np.flatnonzero(keep)
    weights = np.zeros((n_folds, Xk.shape[1], n_vox), dtype=np.float32)
    intercepts = np.zeros((n_folds, n_vox), dtype=np.float32)
    best = np.zeros((n_folds, n_vox), dtype=np.float32)
    cv_scores = np.zeros((n_folds, n_vox), dtype=np.float32)
    predictions = np.zeros((n_kept, n_vox), dtype=np.float32)
    fold_scores = np.zeros((n_folds, n_vox))
    solver_params = dict(score_func=getattr(scoring, SCORES[score]), n_targets_batch=n_targets_batch)

    with _himalaya_backend(backend) as be:
        if dtype is None:
            dtype = "float64" if be.name == "numpy" else "float32"
        for k, (train, test) in enumerate(tqdm(splits, desc="encoding folds", disable=not progress, leave=False)):
            inner = KFold(inner_folds, shuffle=False)
            kernel = solver == "kernel" or (solver == "auto" and len(train) < Xk.shape[1])
            if kernel:
                model = KernelRidgeCV(alphas=alphas, kernel="linear", cv=inner, fit_intercept=True,
                                      solver_params=solver_params, warn=False)
            else:
                model = RidgeCV(alphas=alphas, cv=inner, fit_intercept=True,
                                solver_params=dict(solver_params, warn=False))
            model.fit(Xk[train].astype(dtype, copy=False), Yk[train].astype(dtype, copy=False))
            W_backend = model.get_primal_coef() if kernel else model.coef_
            W = np.asarray(be.to_numpy(W_backend), dtype=np.float32)
            b = np.asarray(be.to_numpy(model.intercept_), dtype=np.float32)
            weights[k], intercepts[k] = W, b
            best[k] = be.to_numpy(model.best_alphas_)
            cv_scores[k] = be.to_numpy(model.cv_scores_)
            if be.name == "numpy":
                predictions[test] = Xk[test].astype(np.float64) @ W.astype(np.float64) + b
            else:  # on the backend's device, from the float32 weights kept: no float64 copy of them on the host
                X_test = be.asarray(Xk[test], dtype=W_backend.dtype)
                predictions[test] = be.to_numpy(X_test @ be.asarray(W_backend)) + b
            fold_scores[k] = pearson_r(Yk[test], predictions[test])
            del model

    return EncodingResult(
        delays=delays, trim=trim, gap=gap, tr_runs=runs.astype(np.int64), keep=keep, tr_index=tr_index,
        runs=np.unique(runs), feature_means=f_means, feature_stds=f_stds, response_means=r_means,
        response_stds=r_stds, weights=weights, intercepts=intercepts, alphas=best, alpha_grid=alphas,
        cv_scores=cv_scores, test_trs=[tr_index[test] for _, test in splits], predictions=predictions,
        scores=pearson_r(Yk, predictions), fold_scores=fold_scores, score=score)


# --------------------------------------------------------------------------------------------
# Subjects and layers
# --------------------------------------------------------------------------------------------
def encode_subjects(lm, datasets, layer, context=80, pooling="last", stride=16, cache=True, progress=True,
                    tr_features="average", **fit_kwargs):
    """Features of one layer plus leave-one-run-out encoding models for several subjects, cached.

    Subjects who read the same stimulus share the design matrix, so their voxels are fitted
    together in one :func:`fit_encoding` call (the kernel eigendecompositions, which dominate
    the cost, are then done once instead of once per subject). Each subject's result is cached
    on its own, keyed by model, layer, context, pooling, stimulus, subject, the fit settings and
    a hash of that subject's responses; as in :func:`fit_encoding`, the ridge backend enters the
    key only when it is not numpy (``backend="auto"``, the default, is numpy on a CPU), and the
    TR features' method only when it is not ``"average"`` (fits cached before it existed stay valid).

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
    datasets : list of brainattr.schema.Dataset
        All with the same stimulus.
    layer : int
    context, pooling, stride
        See :func:`brainattr.features.stimulus_tr_features`.
    cache : bool
    progress : bool
    tr_features : {"average", "lanczos"}
        How word embeddings become TR features (:func:`brainattr.trs.word_tr_weights`): per-TR
        averaging (the paper's) or Lanczos resampling.
    **fit_kwargs
        Passed to :func:`fit_encoding` (``alphas``, ``inner_folds``, ``delays``, ``backend``, ...).

    Returns
    -------
    list of EncodingResult, one per dataset
    """
    stimulus = datasets[0].stimulus
    if any(ds.stimulus.fingerprint != stimulus.fingerprint for ds in datasets):
        raise ValueError("encode_subjects needs subjects who read the same stimulus; call it once per stimulus.")
    settings = {k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v) for k, v in fit_kwargs.items()
                if k != "backend"}
    backend = resolve_backend(fit_kwargs.get("backend", "auto"))
    if backend != "numpy":
        settings["backend"] = backend
    prefix = special_prefix(lm.tokenizer)  # the features depend on the window's start token
    method = {} if tr_features == "average" else {"tr_features": tr_features}
    paths = [cache_dir("encoding") / (cache_key(model=lm.name, prefix=prefix, layer=int(layer), context=int(context),
                                                 pooling=pooling, stride=int(stride), stimulus=stimulus.fingerprint,
                                                 dataset=ds.name, subject=ds.subject, settings=settings,
                                                 data=array_hash(ds.responses), format=FORMAT_VERSION, **method)
                                      + ".npz")
             for ds in datasets]
    results = [EncodingResult.load(p) if cache and p.exists() else None for p in paths]
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
        feats = stimulus_tr_features(lm, stimulus, [layer], context=context, pooling=pooling, stride=stride,
                                     progress=progress, tr_features=tr_features)[layer]
        Y = np.concatenate([datasets[i].responses for i in todo], axis=1)
        with stage_timer("encoding", model=lm.name, layer=int(layer), voxels=int(Y.shape[1]), trs=int(Y.shape[0]),
                         features=int(feats.shape[1])):
            fit = fit_encoding(feats, Y, stimulus.tr_runs, progress=progress, **fit_kwargs)
        bounds = np.cumsum([0] + [datasets[i].n_voxels for i in todo])
        for k, i in enumerate(todo):
            results[i] = fit.select_voxels(np.arange(bounds[k], bounds[k + 1]))
            if cache:
                results[i].save(paths[i])
    return results


def encode_subject(lm, dataset, layer, **kwargs):
    """:func:`encode_subjects` for one subject; returns its EncodingResult."""
    return encode_subjects(lm, [dataset], layer, **kwargs)[0]


def best_layers_by_group(layer_scores, n_layers, groups=("early", "middle", "late"), embedding_layer=False):
    """The best-scoring transformer block in each contiguous third of the model (paper, Appendix B).

    The groups range over the model's blocks, layers ``1..n_layers``, cut into ``len(groups)``
    contiguous ranges of (nearly) equal length (edges ``numpy.linspace(1, n_layers + 1,
    len(groups) + 1)``; a layer ``l`` is in group ``g`` when ``edges[g] <= l < edges[g + 1]``).
    Layer 0, the input embeddings, is never in a group: there the BA head reads only the delay
    words' own embeddings, so BA's GxI is exactly zero on every context word, and an "early"
    layer 0 would make BA's spread trivially small. Ask for it by name with
    ``embedding_layer=True``.

    Parameters
    ----------
    layer_scores : dict of int -> float
        Mean BA of each scored layer (layer 0 is ignored unless ``embedding_layer``).
    n_layers : int
        Number of decoder blocks of the model (its layers are ``0..n_layers``).
    groups : sequence of str
        Group names, in depth order; blocks ``1..n_layers`` are cut into ``len(groups)`` ranges.
    embedding_layer : bool
        Add ``"embeddings": 0`` as its own group, first, when layer 0 was scored.

    Returns
    -------
    dict of str -> int
        In depth order: ``"embeddings"`` (only with ``embedding_layer``), then the best layer of
        each group that holds at least one scored layer (a group with no scored layer is left
        out, e.g. the middle third of a 4-block model scored at layers 0, 2, 4).
    """
    edges = np.linspace(1, n_layers + 1, len(groups) + 1)
    scores = {int(layer): score for layer, score in layer_scores.items()}
    best = {"embeddings": 0} if embedding_layer and 0 in scores else {}
    for g, name in enumerate(groups):
        inside = {layer: score for layer, score in scores.items() if layer >= 1 and edges[g] <= layer < edges[g + 1]}
        if inside:
            best[name] = max(inside, key=inside.get)
    return best


def layer_grid(n_layers, layer_step):
    """Every ``layer_step``-th layer from 0, plus the last one, list of int."""
    return sorted(set(range(0, int(n_layers) + 1, int(layer_step))) | {int(n_layers)})


def best_layers(lm, datasets, layer_step=5, progress=True, **kwargs):
    """The best early, middle and late layer by mean language-ROI BA over subjects (Appendix B).

    Scores the layers of :func:`layer_grid` with :func:`encode_subjects` (cached: after chapter 2
    this only reads its fits).

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
    datasets : list of brainattr.schema.Dataset
    layer_step : int
    progress : bool
    **kwargs
        Passed to :func:`encode_subjects` (``context``, ``pooling``, ``tr_features``, ``inner_folds``, ...).

    Returns
    -------
    best : dict of str -> int
        ``{"early": l1, "middle": l2, "late": l3}`` (see :func:`best_layers_by_group`).
    scores : dict of int -> float
        Mean language-ROI held-out r of each scored layer, averaged over subjects.
    """
    from tqdm.auto import tqdm

    scores = {}
    for layer in tqdm(layer_grid(lm.n_layers, layer_step), desc="layers", disable=not progress, leave=False):
        encs = encode_subjects(lm, datasets, layer, progress=False, **kwargs)
        scores[layer] = float(np.mean([enc.scores[ds.voxel_is_language].mean() for ds, enc in zip(datasets, encs)]))
    return best_layers_by_group(scores, lm.n_layers), scores
