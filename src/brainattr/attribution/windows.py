"""Which TRs, which words, which voxels: held-out TRs, each TR's window of words, the voxel set."""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np


def held_out_trs(encoding, fold=0, n=None):
    """Stimulus TRs held out by one fold, optionally an evenly spaced subset.

    Parameters
    ----------
    encoding : brainattr.encoding.EncodingResult
    fold : int or None
        Fold whose test TRs are returned; None for the held-out TRs of every fold.
    n : int or None
        Keep ``n`` TRs evenly spaced over the fold's test TRs (deterministic); None keeps all.

    Returns
    -------
    trs : array of int, shape (n_selected,)
    """
    if fold is None:
        trs = np.sort(np.concatenate([np.asarray(t) for t in encoding.test_trs]))
    else:
        if not 0 <= int(fold) < len(encoding.test_trs):
            raise ValueError(f"fold {fold} does not exist; the encoding model has {len(encoding.test_trs)} folds.")
        trs = np.asarray(encoding.test_trs[int(fold)])
    return evenly_spaced(trs, n)


def evenly_spaced(trs, n=None):
    """``n`` evenly spaced elements of ``trs`` (deterministic, first and last kept), array of int.

    Parameters
    ----------
    trs : array of int, shape (n_trs,)
    n : int or None
        None (or ``n >= n_trs``) keeps all.
    """
    trs = np.asarray(trs)
    if n is not None and n < trs.size:
        trs = trs[np.unique(np.linspace(0, trs.size - 1, max(int(n), 1)).round().astype(int))]
    return trs.astype(int)


@dataclass(frozen=True)
class Window:
    """The words an attribution instance reads.

    Attributes
    ----------
    tr : int
        Target TR (stimulus index).
    fold : int
        Encoding fold that held ``tr`` out.
    start, end : int
        Window ``[start, end)`` in stimulus word indices; ``end - 1`` is the most recent word
        (position 0).
    next_word : int
        Index of the word that follows (the NWP target), -1 at the end of the text.
    source_trs : tuple of int
        Stimulus TR of each delay (``t - delays[d]``), -1 before the run's start.
    """

    tr: int
    fold: int
    start: int
    end: int
    next_word: int
    source_trs: tuple


def tr_window(stimulus, encoding, tr, context):
    """The attribution window of one target TR.

    Parameters
    ----------
    stimulus : brainattr.schema.Stimulus
    encoding : brainattr.encoding.EncodingResult
    tr : int
        Target TR; must be held out by some fold (not trimmed).
    context : int
        Words read before the first word of the delay TRs.

    Returns
    -------
    Window or None
        None when none of the delay TRs showed a word (nothing to attribute).
    """
    fold = encoding.fold_of(int(tr))  # raises for trimmed TRs: no fold held them out
    src = tuple(int(s) for s in encoding.source_trs(int(tr)))
    word_trs = stimulus.word_trs
    words = np.flatnonzero(np.isin(word_trs, [s for s in src if s >= 0]))
    if words.size == 0:
        return None
    start = max(0, int(words[0]) - int(context))
    end = int(words[-1]) + 1
    next_word = end if end < stimulus.n_words else -1
    return Window(tr=int(tr), fold=fold, start=start, end=end, next_word=next_word, source_trs=src)


def voxel_mask(voxel_set, dataset, encoding=None):
    """Voxels whose squared error the BA target sums.

    Parameters
    ----------
    voxel_set : str or array of bool
        ``"language"`` (the language-ROI voxels, default elsewhere), ``"all"``, ``"r>X"`` (voxels
        whose held-out encoding r, ``encoding.scores``, exceeds X, e.g. ``"r>0.1"``), or a boolean
        mask of shape (n_voxels,).
    dataset : brainattr.schema.Dataset
    encoding : brainattr.encoding.EncodingResult, optional
        Needed for ``"r>X"``.

    Returns
    -------
    mask : array of bool, shape (n_voxels,)
    """
    n = dataset.responses.shape[1]
    if isinstance(voxel_set, str):
        match = re.fullmatch(r"\s*r\s*>\s*([-+0-9.eE]+)\s*", voxel_set)
        if voxel_set == "language":
            mask = np.asarray(dataset.voxel_is_language, dtype=bool)
        elif voxel_set == "all":
            mask = np.ones(n, dtype=bool)
        elif match:
            if encoding is None:
                raise ValueError(f"voxel_set {voxel_set!r} needs the encoding result (its held-out scores).")
            mask = np.asarray(encoding.scores) > float(match.group(1))
        else:
            raise ValueError(f"unknown voxel_set {voxel_set!r}; use 'language', 'all', 'r>X' (e.g. 'r>0.1') "
                             "or a boolean mask over voxels.")
    else:
        mask = np.asarray(voxel_set)
        if mask.dtype != bool or mask.shape != (n,):
            raise ValueError(f"a voxel mask must be boolean of shape ({n},), got {mask.dtype} {mask.shape}.")
    if not mask.any():
        raise ValueError(f"voxel_set {voxel_set if isinstance(voxel_set, str) else 'mask'} selects no voxel; "
                         "lower the r threshold or use 'all'.")
    return mask


def select_windows(stimulus, encoding, trs, context, fold=None):
    windows, skipped = [], []
    for tr in np.atleast_1d(np.asarray(trs, dtype=int)):
        if fold is not None and encoding.fold_of(int(tr)) != int(fold):
            raise ValueError(f"TR {tr} is not held out by fold {fold}; attribute it with fold "
                             f"{encoding.fold_of(int(tr))}, the one that never saw it.")
        w = tr_window(stimulus, encoding, tr, context)
        (skipped if w is None else windows).append(tr if w is None else w)
    if skipped:
        warnings.warn(f"{len(skipped)} TR(s) have no word in their delay TRs and are skipped (first: {skipped[0]}).",
                      stacklevel=3)
    return windows
