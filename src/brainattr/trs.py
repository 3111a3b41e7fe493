"""TR arithmetic, numpy only: per-TR averaging, per-run z-scoring, delays, trimming, run splits.

The encoder's input for one layer (paper, Sec. 3; Toneva & Wehbe 2019 conventions):

1. the embeddings of the words shown in one TR are averaged (:func:`tr_average`), or, for
   listening data whose words arrive continuously, Lanczos-resampled to the TRs (the Huth-lab
   convention); both are one word-to-TR weight matrix (:func:`word_tr_weights`);
2. each run is z-scored per feature (:func:`zscore_runs`);
3. the encoder input for TR t concatenates TRs t-1 ... t-4 of the same run (:func:`make_delayed`);
4. the first and last TRs of each run are dropped (:func:`trim_mask`);
5. cross-validation leaves one run out, with a gap around the test block (:func:`run_splits`).
"""
from __future__ import annotations

import numpy as np

from .schema import DataError

#: Hemodynamic delays in TRs (paper: the 4 previous TRs, 2-8 s at TR = 2 s).
DELAYS = (1, 2, 3, 4)
#: TRs dropped at the start and end of each run (Toneva & Wehbe 2019: 20 and 15).
TRIM = (20, 15)
#: How word features become TR features (:func:`word_tr_weights`): the mean of the words shown in
#: each TR (the paper's), or Lanczos resampling of the word sequence at the TRs (Huth lab, LITcoder).
TR_FEATURES = ("average", "lanczos")
#: Lobes of the Lanczos kernel on each side (Huth lab's ``lanczosinterp2D``: 3).
LANCZOS_WINDOW = 3


def lanczos_kernel(dt, tr, window=LANCZOS_WINDOW):
    """Lanczos low-pass kernel whose cutoff is the Nyquist frequency of sampling every ``tr`` seconds.

    ``L(dt) = sinc(dt / tr) * sinc(dt / (window * tr))`` for ``|dt| < window * tr``, else 0, with
    ``sinc(x) = sin(pi x) / (pi x)``: a sinc with cutoff ``1 / (2 tr)`` (its zeros fall on
    multiples of ``tr``), tapered by a ``window``-times wider sinc.

    Parameters
    ----------
    dt : array of float, any shape
        Time from the sample (a word) to the TR, in seconds.
    tr : float
        Repetition time in seconds.
    window : int

    Returns
    -------
    weights : array of float64, the shape of ``dt``
    """
    x = np.asarray(dt, dtype=np.float64) / float(tr)
    return np.where(np.abs(x) < window, np.sinc(x) * np.sinc(x / window), 0.0)


def word_tr_weights(stimulus, method="average", window=LANCZOS_WINDOW):
    """The weights that make TR features from word features: ``tr_features = weights @ word_features``.

    ``"average"`` (the paper's): row t holds ``1 / n`` on each of the n words shown during TR t
    (``Stimulus.word_trs``), so a TR's feature is the mean of its words and a TR without words is
    zero. ``"lanczos"`` (Huth lab, LITcoder): row t holds :func:`lanczos_kernel` of the time from
    each word's onset to the centre of TR t (``tr_times[t] + tr / 2``), for the words of the
    same run, unnormalised as in the Huth lab's ``lanczosinterp2D`` (the per-run z-scoring that
    follows removes the scale). The kernel reaches ``window`` TRs both ways, so a TR's feature
    also depends on words of the next ``window`` TRs.

    Parameters
    ----------
    stimulus : brainattr.schema.Stimulus
    method : {"average", "lanczos"}
    window : int
        Lanczos lobes (``"lanczos"`` only).

    Returns
    -------
    weights : array of float32, shape (n_trs, n_words)
        Zero across runs. The averaging weights of each TR sum to 1 (0 for a TR without words).
    """
    if method not in TR_FEATURES:
        raise ValueError(f"tr_features: unknown method {method!r}; use one of {TR_FEATURES} (per-TR averaging, "
                         "the paper's; or Lanczos resampling, for continuous listening data).")
    n_trs, n_words = stimulus.n_trs, stimulus.n_words
    weights = np.zeros((n_trs, n_words), dtype=np.float32)
    if method == "average":
        word_trs = np.asarray(stimulus.word_trs)
        ok = np.flatnonzero(word_trs >= 0)
        counts = np.bincount(word_trs[ok], minlength=n_trs)
        weights[word_trs[ok], ok] = 1.0 / counts[word_trs[ok]]
        return weights
    centres = stimulus.tr_times + stimulus.tr / 2.0
    for run in np.unique(stimulus.tr_runs):      # words never reach across a run border
        trs = np.flatnonzero(stimulus.tr_runs == run)
        words = np.flatnonzero(stimulus.word_runs == run)
        dt = centres[trs][:, None] - stimulus.word_onsets[words][None, :]
        weights[np.ix_(trs, words)] = lanczos_kernel(dt, stimulus.tr, window)
    return weights


def tr_average(word_embeddings, word_trs, n_trs):
    """Average the embeddings of the words shown in each TR.

    Parameters
    ----------
    word_embeddings : array of shape (..., n_words, n_features)
    word_trs : array of int, shape (n_words,)
        TR of each word (``Stimulus.word_trs``); words with -1 are ignored.
    n_trs : int

    Returns
    -------
    tr_features : array of shape (..., n_trs, n_features)
        Zero for TRs in which no word was shown.
    """
    word_embeddings = np.asarray(word_embeddings)
    word_trs = np.asarray(word_trs)
    ok = word_trs >= 0
    onehot = np.zeros((n_trs, len(word_trs)), dtype=word_embeddings.dtype)
    onehot[word_trs[ok], np.flatnonzero(ok)] = 1.0
    counts = onehot.sum(axis=1, keepdims=True)
    onehot /= np.maximum(counts, 1.0)
    return onehot @ word_embeddings


def zscore_runs(X, runs, eps=1e-8):
    """Z-score each column within each run.

    Parameters
    ----------
    X : array of shape (n_trs, n_features)
    runs : array of int, shape (n_trs,)

    Returns
    -------
    Xz : array of shape (n_trs, n_features), float32
    means : array of shape (n_runs, n_features)
    stds : array of shape (n_runs, n_features)
        Standard deviations; columns constant within a run get 1 (they z-score to 0).
    """
    X = np.asarray(X, dtype=np.float64)
    runs = np.asarray(runs)
    run_ids = np.unique(runs)
    means = np.stack([X[runs == r].mean(axis=0) for r in run_ids])
    stds = np.stack([X[runs == r].std(axis=0) for r in run_ids])
    stds = np.where(stds > eps, stds, 1.0)
    run_pos = np.searchsorted(run_ids, runs)
    Xz = (X - means[run_pos]) / stds[run_pos]
    return Xz.astype(np.float32), means, stds


def make_delayed(X, runs, delays=DELAYS):
    """Concatenate delayed copies of ``X`` without crossing run borders.

    Parameters
    ----------
    X : array of shape (n_trs, n_features)
    runs : array of int, shape (n_trs,)
    delays : sequence of int
        Row t of block d holds ``X[t - delays[d]]`` (zero before the run's start).

    Returns
    -------
    X_delayed : array of shape (n_trs, len(delays) * n_features)
        Blocks in the order of ``delays``: columns ``[d*n_features:(d+1)*n_features]`` hold delay
        ``delays[d]`` (the layout :func:`split_by_delay` undoes).
    """
    X = np.asarray(X)
    runs = np.asarray(runs)
    out = np.zeros((X.shape[0], len(delays) * X.shape[1]), dtype=X.dtype)
    for d, delay in enumerate(delays):
        shifted = np.zeros_like(X)
        if delay > 0:
            shifted[delay:] = X[:-delay]
            same_run = np.zeros(len(runs), dtype=bool)
            same_run[delay:] = runs[delay:] == runs[:-delay]
            shifted[~same_run] = 0
        else:
            shifted = X.copy()
        out[:, d * X.shape[1]:(d + 1) * X.shape[1]] = shifted
    return out


def split_by_delay(W, n_delays):
    """Split stacked weights into one block per delay.

    Parameters
    ----------
    W : array of shape (n_delays * n_features, n_targets)

    Returns
    -------
    W_by_delay : array of shape (n_delays, n_features, n_targets)
    """
    W = np.asarray(W)
    return W.reshape(n_delays, W.shape[0] // n_delays, *W.shape[1:])


def trim_mask(runs, trim=TRIM):
    """Boolean mask of the TRs kept after dropping the first and last TRs of each run.

    Parameters
    ----------
    runs : array of int, shape (n_trs,)
    trim : (int, int)
        TRs dropped at the start and at the end of each run.

    Returns
    -------
    keep : array of bool, shape (n_trs,)
    """
    runs = np.asarray(runs)
    keep = np.zeros(len(runs), dtype=bool)
    start, end = trim
    for r in np.unique(runs):
        idx = np.flatnonzero(runs == r)
        if idx.size <= start + end:
            raise ValueError(f"run {r} has {idx.size} TRs, too few to trim {start} + {end}; lower `trim`.")
        keep[idx[start: idx.size - end]] = True
    return keep


def run_splits(tr_runs, keep=None, gap=5):
    """Leave-one-run-out splits over the kept TRs, with a gap around the test block.

    Parameters
    ----------
    tr_runs : array of int, shape (n_trs,)
        Run of each stimulus TR; every run must be one contiguous block of TRs.
    keep : array of bool, shape (n_trs,), optional
        Kept TRs (e.g. :func:`brainattr.features.trim_mask`); all TRs when None.
    gap : int
        Training rows within ``gap`` rows of the test block's borders, on the time axis of the
        kept TRs laid end to end, are dropped (Toneva & Wehbe 2019, ``skip=5``).

    Returns
    -------
    splits : list of (train_idx, test_idx), one per run in increasing run id
        Arrays of int indexing the **rows of the kept-TR arrays** (``X[keep]``), not stimulus
        TRs; ``np.flatnonzero(keep)[test_idx]`` gives the stimulus TRs.
    """
    tr_runs = np.asarray(tr_runs)
    if tr_runs.ndim != 1:
        raise DataError(f"tr_runs must be 1-D (one run id per TR), got shape {tr_runs.shape}.")
    keep = np.ones(len(tr_runs), dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    if keep.shape != tr_runs.shape:
        raise DataError(f"keep has shape {keep.shape} but tr_runs has shape {tr_runs.shape}; pass one flag per TR.")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}.")
    runs = tr_runs[keep]
    run_ids = np.unique(runs)
    if run_ids.size < 2:
        raise DataError(f"leave-one-run-out needs at least 2 runs, got {run_ids.size}; split the recording "
                        "into pseudo-runs (e.g. contiguous quarters) in the Stimulus' tr_runs.")
    n_blocks = 1 + np.count_nonzero(runs[1:] != runs[:-1])
    if n_blocks != run_ids.size:
        raise DataError("each run must be one contiguous block of TRs, but tr_runs switches back to an earlier "
                        "run; lay the runs end to end (sort TRs by time).")
    rows = np.arange(runs.size)
    splits = []
    for run in run_ids:
        test = np.flatnonzero(runs == run)
        lo, hi = test[0] - gap, test[-1] + gap
        train = rows[(rows < lo) | (rows > hi)]
        splits.append((train, test))
    return splits
