"""Ground truth of the simulated subjects: each word's exact contribution to each voxel.

The simulation (:mod:`brainattr.data.simulate`) is linear, so the clean signal of voxel ``v`` at
TR ``t`` is a sum of per-word contributions ``c[t, j, v]``. :func:`true_contributions` computes
``c`` on demand for chosen TRs, :func:`true_word_importance` takes its L2 norm over voxels (what
attribution methods are scored against), and :func:`true_contributions_table` lays it out one
row per (TR, word). Each accepts the :class:`~brainattr.data.simulate.SimulatedSubject` or its
Dataset (:func:`as_simulated` re-simulates the latter from ``meta["simulation"]``).

Parcel Datasets of simulated subjects (:func:`brainattr.data.parcellate`) have an exact truth too:
a parcel's clean signal is the mean of its member voxels' clean signals, and the contributions are
linear, so a parcel's contribution of word ``j`` at TR ``t`` is the mean of its members'. Their
:func:`as_simulated` is a :class:`ParcelSimulatedSubject`, re-simulated from
``meta["parcel_source_simulation"]``, whose columns are the parcels; every function here takes it.
:func:`has_ground_truth` tells which Datasets have a truth.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse

from ..metrics import pearson_r
from ..schema import DataError, Dataset
from .simulate import SimulatedSubject, ordered_selection, simulate, voxel_index

_SIM_CACHE: OrderedDict = OrderedDict()
_SIM_CACHE_SIZE = 8


#: Keys of ``Dataset.meta`` holding a simulation's parameters: a simulated subject's voxels, or its parcels.
SIMULATION_KEYS = ("simulation", "parcel_source_simulation")


def has_ground_truth(obj) -> bool:
    """Whether ``obj`` has a planted truth: a simulated subject, its Dataset, or a parcel Dataset of one.

    Parameters
    ----------
    obj : SimulatedSubject, Dataset or anything

    Returns
    -------
    bool
        True for a :class:`SimulatedSubject` and for a Dataset whose ``meta`` holds
        ``"simulation"`` (voxels) or ``"parcel_source_simulation"`` (parcels,
        :func:`brainattr.data.parcellate`); False for real data.
    """
    if isinstance(obj, SimulatedSubject):
        return True
    return isinstance(obj, Dataset) and any(k in obj.meta for k in SIMULATION_KEYS)


@dataclass(frozen=True)
class ParcelSimulatedSubject(SimulatedSubject):
    """The truth of a parcel Dataset: the simulated voxels it averages, and how it averages them.

    Its columns are the Dataset's parcels; the voxel-level state it needs is kept for the member
    voxels only.

    Attributes
    ----------
    dataset : Dataset
        The parcel Dataset.
    clean : array of float64, shape (n_trs, n_parcels)
        Each parcel's noise-free signal: the mean of its member voxels' (``voxel_clean @ average``).
    drivers, driver_names, driver_groups, hrf_matrix, params
        As for :class:`SimulatedSubject` (the voxel-level simulation's).
    weights : array of float64, shape (n_drivers, n_members)
        The member voxels' driver weights.
    kernels : array of float64, shape (max_window, n_members)
        The member voxels' integration kernels.
    average : scipy.sparse.csr_matrix, shape (n_members, n_parcels)
        ``1 / n_p`` where member voxel v is in parcel p (:func:`brainattr.data.parcels.parcel_members`).
    """

    average: scipy.sparse.csr_matrix

    def select_voxels(self, voxels) -> "ParcelSimulatedSubject":
        """A copy restricted to ``parcels`` (int indices or bool mask of shape (n_parcels,))."""
        idx, mask = ordered_selection(voxels, self.n_voxels)
        return replace(self, dataset=self.dataset.select_voxels(mask), clean=self.clean[:, mask],
                       average=self.average[:, idx])


def _simulation(stimulus, params) -> SimulatedSubject:
    """``simulate(stimulus, **params)``, the last :data:`_SIM_CACHE_SIZE` kept."""
    key = (stimulus.fingerprint, json.dumps(params, sort_keys=True))
    if key in _SIM_CACHE:
        _SIM_CACHE.move_to_end(key)
        return _SIM_CACHE[key]
    sim = simulate(stimulus, **params)
    _SIM_CACHE[key] = sim
    if len(_SIM_CACHE) > _SIM_CACHE_SIZE:
        _SIM_CACHE.popitem(last=False)
    return sim


def as_simulated(obj: "SimulatedSubject | Dataset") -> SimulatedSubject:
    """The :class:`SimulatedSubject` behind a simulated subject, its :class:`Dataset` or a parcel Dataset of it.

    A Dataset is re-simulated from ``meta["simulation"]``. This is deterministic and the last 8
    are cached. The result is then restricted to the Dataset's voxels, matched by MNI
    coordinates, so a Dataset whose voxels were subset (``Dataset.select_voxels``,
    ``drop_bad_voxels``) still lines up column for column. A parcel Dataset
    (:func:`brainattr.data.parcellate`) is re-simulated from ``meta["parcel_source_simulation"]``
    and its parcels rebuilt from their member voxels (``meta["parcel_voxels"]``).

    Parameters
    ----------
    obj : SimulatedSubject or Dataset

    Returns
    -------
    SimulatedSubject
        Its voxels are the columns of ``obj``'s responses, in order; for a parcel Dataset a
        :class:`ParcelSimulatedSubject`, whose columns are the parcels.
    """
    if isinstance(obj, SimulatedSubject):
        return obj
    if not has_ground_truth(obj):
        raise DataError("Ground truth exists only for simulated subjects: pass the SimulatedSubject from "
                        "brainattr.data.simulate.simulate, or a Dataset from load_dataset('builtin', ...) or "
                        "simulated_dataset (its meta['simulation'] holds the parameters), or a parcel Dataset "
                        "of one (load_dataset('builtin@harvard-oxford', ...)); real data have no planted truth.")
    if "simulation" not in obj.meta:
        return _parcel_simulated(obj)
    sim = _simulation(obj.stimulus, obj.meta["simulation"])
    if sim.dataset.voxel_coords.shape == obj.voxel_coords.shape and np.array_equal(sim.dataset.voxel_coords,
                                                                                    obj.voxel_coords):
        return sim
    lookup = {tuple(c): i for i, c in enumerate(np.round(sim.dataset.voxel_coords, 3))}
    idx = [lookup.get(tuple(c), -1) for c in np.round(obj.voxel_coords, 3)]
    if min(idx, default=0) < 0 or np.any(np.diff(idx) <= 0):
        raise DataError(f"Dataset subject {obj.subject}: its voxels do not match the simulation recorded in "
                        "meta['simulation'] (coordinates changed or reordered); keep the SimulatedSubject "
                        "from simulate() instead.")
    return sim.select_voxels(np.asarray(idx, dtype=int))


def _parcel_simulated(dataset: Dataset) -> ParcelSimulatedSubject:
    """The :class:`ParcelSimulatedSubject` of a parcel Dataset of a simulated subject."""
    from .parcels import parcel_members  # deferred: parcels imports the atlas tables

    sim = _simulation(dataset.stimulus, dataset.meta["parcel_source_simulation"])
    columns, average = parcel_members(dataset, sim.dataset.voxel_coords)
    members = sim.select_voxels(columns)
    clean = np.asarray(average.T @ members.clean.T).T
    return ParcelSimulatedSubject(dataset=dataset, clean=clean, drivers=sim.drivers, driver_names=sim.driver_names,
                                  driver_groups=sim.driver_groups, weights=members.weights, kernels=members.kernels,
                                  hrf_matrix=sim.hrf_matrix, params=sim.params, average=average.tocsr())


class Contributions(NamedTuple):
    """Per-word ground truth for a set of TRs (padded to a common word window).

    Attributes
    ----------
    values : array of float64, shape (n_trs_sel, n_words_window, n_voxels_sel) or (n_trs_sel, n_words_window)
        Contributions (:func:`true_contributions`) or importances (:func:`true_word_importance`);
        0 at padding.
    word_index : array of int, shape (n_trs_sel, n_words_window)
        Stimulus word index of each entry, in reading order, -1 at padding.
    position : array of int, shape (n_trs_sel, n_words_window)
        Words back from the most recent word shown at or before the TR (0 = that word), -1 at padding.
    trs : array of int, shape (n_trs_sel,)
    voxels : array of int, shape (n_voxels_sel,)
    """

    values: np.ndarray
    word_index: np.ndarray
    position: np.ndarray
    trs: np.ndarray
    voxels: np.ndarray


def _windows(sim: SimulatedSubject, trs):
    """Per TR, the word range [start, stop) that can contribute, and the last word shown by then."""
    H, P = sim.hrf_matrix, sim.plant_matrix
    runs = sim.stimulus.word_runs
    w_max = sim.kernels.shape[0]
    run_start = np.searchsorted(runs, runs, side="left")
    last_shown = np.searchsorted(sim.stimulus.word_trs, trs, side="right") - 1
    out = []
    for t in trs:
        cols = np.concatenate([M.indices[M.indptr[t]:M.indptr[t + 1]] for M in (H, P)])
        if cols.size == 0:
            out.append((0, 0))
            continue
        lo, hi = cols.min(), cols.max() + 1
        out.append((max(run_start[lo], lo - (w_max - 1)), hi))
    return out, last_shown


def true_contributions(sim: "SimulatedSubject | Dataset", trs=None, voxels=None) -> Contributions:
    """Exact contribution of each word to each voxel's clean signal at the given TRs.

    ``values.sum(axis=1)`` equals ``sim.clean[trs][:, voxels]`` up to float rounding. A word
    contributes nothing to TRs sampled at or before its onset, nor after
    ``onset + (window - 1) * word_spacing + hrf_length``. Control voxels get zero.

    Parameters
    ----------
    sim : SimulatedSubject or Dataset
        A simulated subject (a Dataset is re-simulated, see :func:`as_simulated`).
    trs : array of int, shape (n_trs_sel,), or None
        TR indices (default: all). The dense result has n_trs_sel x ~90 x n_voxels_sel
        entries, so select TRs or voxels for big runs.
    voxels : array of int or bool mask, or None
        Voxel columns (default: all).

    Returns
    -------
    Contributions
        ``values`` of shape (n_trs_sel, n_words_window, n_voxels_sel), where ``n_words_window``
        is the widest window among the selected TRs (about 64 words of HRF support plus the
        longest integration window).
    """
    sim = as_simulated(sim)
    trs = np.arange(sim.stimulus.n_trs) if trs is None else np.atleast_1d(np.asarray(trs, dtype=int))
    vox = voxel_index(voxels, sim.n_voxels)
    return _collect(sim, trs, vox, lambda c: c)


def true_word_importance(sim: "SimulatedSubject | Dataset", trs=None, voxels=None) -> Contributions:
    """Ground-truth importance of each word: L2 norm of its contributions over the selected voxels.

    This is what BA attribution scores are compared against, e.g. by a Spearman correlation per TR
    over the entries with ``word_index >= 0``.

    Parameters
    ----------
    sim, trs, voxels
        As for :func:`true_contributions` (control voxels add nothing to the norm).

    Returns
    -------
    Contributions
        ``values`` of shape (n_trs_sel, n_words_window), computed a chunk of TRs at a time, so
        the full contribution tensor is never held in memory.
    """
    sim = as_simulated(sim)
    trs = np.arange(sim.stimulus.n_trs) if trs is None else np.atleast_1d(np.asarray(trs, dtype=int))
    vox = voxel_index(voxels, sim.n_voxels)
    return _collect(sim, trs, vox, lambda c: np.sqrt((c**2).sum(axis=-1)))


def _sources(sim, vox):
    """The voxel columns of ``sim.kernels`` / ``sim.weights`` that make up columns ``vox``, and how.

    Returns
    -------
    columns : array of int, shape (n_sources,)
        For a :class:`SimulatedSubject`, ``vox`` itself; for a :class:`ParcelSimulatedSubject`,
        the member voxels of the parcels ``vox``.
    average : array of float64, shape (n_sources, n_voxels_sel), or None
        Maps the sources' contributions to the columns' (None: one to one).
    """
    if not isinstance(sim, ParcelSimulatedSubject):
        return vox, None
    A = sim.average[:, vox]
    columns = np.flatnonzero(A.getnnz(axis=1))
    return columns, A[columns].toarray()


def _collect(sim, trs, vox, reduce, scale=None, chunk_bytes: float = 64e6) -> Contributions:
    """Contributions for ``trs`` x window x ``vox``, reduced over voxels by ``reduce``, TRs in chunks.

    ``reduce`` maps an array of shape (chunk, n_words_window, n_voxels_sel) to one whose first two
    axes are kept. Chunks make the work a few large matrix products (fast, and robust to BLAS
    threading) without ever holding the full tensor when it is reduced. The contributions of a
    parcel are the mean of its member voxels' (:func:`_sources`); ``scale`` (array of shape
    (n_voxels_sel,), optional) multiplies each column's contributions before ``reduce``.
    """
    if trs.size and (trs.min() < 0 or trs.max() >= sim.stimulus.n_trs):
        raise IndexError(f"TR indices must lie in [0, {sim.stimulus.n_trs}), got {trs.min()}..{trs.max()}.")
    spans, last_shown = _windows(sim, trs)
    starts = np.array([a for a, _ in spans], dtype=int).reshape(-1)
    lens = np.array([b - a for a, b in spans], dtype=int).reshape(-1)
    width = int(lens.max(initial=0))
    valid = np.arange(width)[None, :] < lens[:, None]
    word_index = np.where(valid, starts[:, None] + np.arange(width)[None, :], -1)
    position = np.where(valid, last_shown[:, None] - word_index, -1)

    H, runs, n_words = sim.hrf_matrix, sim.stimulus.word_runs, sim.stimulus.n_words
    src, average = _sources(sim, vox)
    K = sim.kernels[:, src]
    plant = sim.planted_columns[src]                       # read through the plant's matrix, not the HRF
    w_max = K.shape[0]
    first = int(word_index[valid].min(initial=0))
    last = int(word_index[valid].max(initial=-1)) + 1
    drive = sim.drivers[first:last] @ sim.weights[:, src]  # (n_words_in_reach, n_sources)
    chunk = max(1, int(chunk_bytes // max(1, width * max(1, src.size, vox.size) * 8)))
    values = None
    for c0 in range(0, trs.size, chunk):
        rows = slice(c0, c0 + chunk)
        j = word_index[rows]                               # (chunk, width)
        jj = np.clip(j, 0, n_words - 1)
        ahead = jj[..., None] + np.arange(w_max)            # (chunk, width, w_max): word j + m
        ok = valid[rows][..., None] & (ahead < n_words)
        ahead = np.minimum(ahead, n_words - 1)
        ok &= runs[ahead] == runs[jj][..., None]           # integration never crosses a run boundary
        Hc = H[trs[rows]].toarray()                         # (chunk, n_words)
        A = np.where(ok, np.take_along_axis(Hc, ahead.reshape(len(j), -1), axis=1).reshape(ahead.shape), 0.0)
        G = (A.reshape(-1, w_max) @ K).reshape(len(j), width, src.size)
        if plant.any():                                     # window 1: word j's own entry of its TR's row
            Pc = sim.plant_matrix[trs[rows]].toarray()
            G[..., plant] = np.where(valid[rows], np.take_along_axis(Pc, jj, axis=1), 0.0)[..., None]
        if last > first:  # padding rows have A = 0, so any drive row will do for them
            G *= drive[np.clip(jj - first, 0, last - first - 1)]
        if average is not None:                             # parcels: the mean of their member voxels
            G = G @ average
        if scale is not None:
            G *= scale
        red = reduce(G)
        if values is None:
            values = np.zeros((trs.size,) + red.shape[1:])
        values[rows] = red
    if values is None:
        values = np.zeros((0, width, vox.size))
    return Contributions(values, word_index, position, trs, vox)


def true_contributions_table(sim: "SimulatedSubject | Dataset", trs=None, voxels=None,
                             how: str = "l2", units: str = "raw") -> pd.DataFrame:
    """Tidy ground truth: one row per (TR, word), contributions aggregated over a voxel set.

    Parameters
    ----------
    sim : SimulatedSubject or Dataset
    trs : array of int or None
        TR indices (default: all).
    voxels : array of int or bool mask, or None
        Default: the language-ROI voxels.
    how : {"l2", "sum", "mean"}
        Aggregation over voxels: L2 norm (:func:`true_word_importance`), signed sum or signed mean.
    units : {"raw", "response_sd"}
        ``"raw"``: contributions to the clean signal as simulated. ``"response_sd"``: each voxel's
        contributions divided by the standard deviation of its measured response, the units of
        the z-scored responses the encoding model predicts and the BA target's squared error is
        taken in; then a voxel weighs in the truth as much as in the target.

    Returns
    -------
    pandas.DataFrame with columns
        ``tr``, ``word_index``, ``word``, ``position`` (words back from the most recent word shown
        at or before the TR), ``contribution``.
    """
    sim = as_simulated(sim)
    if voxels is None:
        voxels = sim.dataset.voxel_is_language
    reducers = {"l2": lambda c: np.sqrt((c**2).sum(axis=-1)), "sum": lambda c: c.sum(axis=-1),
                "mean": lambda c: c.mean(axis=-1) if c.shape[-1] else c.sum(axis=-1)}
    if how not in reducers:
        raise ValueError(f"how must be one of {sorted(reducers)}, got {how!r}.")
    if units not in ("raw", "response_sd"):
        raise ValueError(f"units must be 'raw' or 'response_sd', got {units!r}.")
    trs = np.arange(sim.stimulus.n_trs) if trs is None else np.atleast_1d(np.asarray(trs, dtype=int))
    vox = voxel_index(voxels, sim.n_voxels)
    scale = None
    if units == "response_sd":  # contributions are linear: each column's divided by its response's sd
        sd = sim.dataset.responses[:, vox].astype(np.float64).std(axis=0)
        scale = 1.0 / np.where(sd > 0, sd, np.inf)
    res = _collect(sim, trs, vox, reducers[how], scale)
    keep = res.word_index >= 0
    rows = np.nonzero(keep)[0]
    return pd.DataFrame({"tr": res.trs[rows], "word_index": res.word_index[keep],
                         "word": sim.stimulus.words[res.word_index[keep]], "position": res.position[keep],
                         "contribution": res.values[keep]})


def true_signal_correlation(sim: "SimulatedSubject | Dataset") -> np.ndarray:
    """corr(clean, response) per voxel, array of shape (n_voxels,), NaN for control voxels."""
    sim = as_simulated(sim)
    r = pearson_r(sim.clean, sim.dataset.responses.astype(np.float64))
    return np.where(sim.dataset.voxel_is_language, r, np.nan)
