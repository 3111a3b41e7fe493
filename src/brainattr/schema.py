"""One data schema for every dataset: the built-in simulated subjects and real fMRI.

A :class:`Stimulus` holds what was shown (words and their timing, TR times, runs) and is
shared by all subjects who read it; a :class:`Dataset` is one subject's recording of one
stimulus (responses and voxel metadata). Real-data loaders return the same two objects,
so every notebook runs unchanged on any dataset.

Time convention: one clock for the whole session, runs laid end to end. TR ``t`` covers
the interval ``[tr_times[t], tr_times[t] + tr)``; a word belongs to the TR whose interval
contains its onset.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd


class DataError(ValueError):
    """Raised when input data are malformed; the message names the problem and the fix."""


@dataclass(frozen=True)
class Stimulus:
    """Words shown to the subjects, with their timing.

    Attributes
    ----------
    name : str
        Short name of the stimulus (used in cache keys and captions).
    words : array of str, shape (n_words,)
        The words in reading order, punctuation attached as shown on screen.
    word_onsets : array of float, shape (n_words,)
        Onset of each word in seconds, on the session clock.
    word_runs : array of int, shape (n_words,)
        Run (0-based) in which each word was shown.
    tr_times : array of float, shape (n_trs,)
        Start time of each TR in seconds, on the session clock.
    tr_runs : array of int, shape (n_trs,)
        Run (0-based) of each TR.
    tr : float
        Repetition time in seconds.
    annotations : pandas.DataFrame or None
        Optional word-level annotations, one row per word (e.g. POS, lemma, feature classes).
    source : str
        Provenance of the text.
    """

    name: str
    words: np.ndarray
    word_onsets: np.ndarray
    word_runs: np.ndarray
    tr_times: np.ndarray
    tr_runs: np.ndarray
    tr: float
    annotations: pd.DataFrame | None = None
    source: str = ""

    def __post_init__(self):
        object.__setattr__(self, "words", np.asarray(self.words, dtype=str))
        object.__setattr__(self, "word_onsets", np.asarray(self.word_onsets, dtype=float))
        object.__setattr__(self, "word_runs", np.asarray(self.word_runs, dtype=int))
        object.__setattr__(self, "tr_times", np.asarray(self.tr_times, dtype=float))
        object.__setattr__(self, "tr_runs", np.asarray(self.tr_runs, dtype=int))
        validate_stimulus(self)

    @property
    def n_words(self) -> int:
        return len(self.words)

    @property
    def n_trs(self) -> int:
        return len(self.tr_times)

    @property
    def word_trs(self) -> np.ndarray:
        """Index of the TR in which each word was shown, array of int of shape (n_words,)."""
        return assign_words_to_trs(self.word_onsets, self.word_runs, self.tr_times, self.tr_runs, self.tr)

    @property
    def fingerprint(self) -> str:
        """Short hash of words and timing, used to key on-disk caches."""
        h = hashlib.sha256()
        for arr in (self.words, self.word_onsets, self.word_runs, self.tr_times, self.tr_runs):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(repr(float(self.tr)).encode())
        return h.hexdigest()[:16]

    def tr_words(self, t: int) -> np.ndarray:
        """Indices of the words shown during TR ``t``, array of int of shape (n,)."""
        return np.flatnonzero(self.word_trs == t)


@dataclass(frozen=True)
class Dataset:
    """One subject's responses to one stimulus.

    Attributes
    ----------
    stimulus : Stimulus
        What the subject read.
    subject : str
        Subject identifier.
    responses : array of float32, shape (n_trs, n_voxels)
        BOLD response of each voxel at each TR of ``stimulus``.
    voxel_coords : array of float, shape (n_voxels, 3)
        Voxel centres in MNI space (mm).
    voxel_labels : array of str, shape (n_voxels,)
        Anatomical label of each voxel (language-ROI name, or e.g. ``"control"``).
    voxel_is_language : array of bool, shape (n_voxels,)
        True for voxels inside the language ROIs.
    name : str
        Dataset name (``"builtin"``, ``"hp"``, ``"moth"``, ...).
    meta : dict
        Anything else (simulation parameters, provenance, excluded-voxel counts).
    """

    stimulus: Stimulus
    subject: str
    responses: np.ndarray
    voxel_coords: np.ndarray
    voxel_labels: np.ndarray
    voxel_is_language: np.ndarray
    name: str = "builtin"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "responses", np.asarray(self.responses, dtype=np.float32))
        object.__setattr__(self, "voxel_coords", np.asarray(self.voxel_coords, dtype=float))
        object.__setattr__(self, "voxel_labels", np.asarray(self.voxel_labels, dtype=str))
        object.__setattr__(self, "voxel_is_language", np.asarray(self.voxel_is_language, dtype=bool))
        validate_dataset_shapes(self)

    @property
    def n_voxels(self) -> int:
        return self.responses.shape[1]

    def select_voxels(self, mask) -> "Dataset":
        """A copy restricted to the voxels where ``mask`` (bool, shape (n_voxels,)) is True."""
        mask = np.asarray(mask, dtype=bool)
        n = self.n_voxels
        # per-voxel arrays in meta (e.g. simulation parameters) follow their voxels
        meta = {k: (v[mask] if isinstance(v, np.ndarray) and v.shape[:1] == (n,) else v) for k, v in self.meta.items()}
        return replace(
            self,
            responses=self.responses[:, mask],
            voxel_coords=self.voxel_coords[mask],
            voxel_labels=self.voxel_labels[mask],
            voxel_is_language=self.voxel_is_language[mask],
            meta=meta,
        )


def assign_words_to_trs(word_onsets, word_runs, tr_times, tr_runs, tr):
    """TR index of each word: the TR of the same run whose interval contains the onset.

    Parameters
    ----------
    word_onsets : array of float, shape (n_words,)
    word_runs : array of int, shape (n_words,)
    tr_times : array of float, shape (n_trs,)
    tr_runs : array of int, shape (n_trs,)
    tr : float

    Returns
    -------
    word_trs : array of int, shape (n_words,)
        -1 for a word that falls in no TR of its run.
    """
    word_trs = np.searchsorted(tr_times, word_onsets, side="right") - 1
    ok = (word_trs >= 0) & (word_onsets < tr_times[np.clip(word_trs, 0, None)] + tr)
    ok &= tr_runs[np.clip(word_trs, 0, None)] == word_runs
    return np.where(ok, word_trs, -1)


def validate_stimulus(stim: Stimulus) -> None:
    """Check that words and TRs line up; raise :class:`DataError` naming the fix."""
    n_words, n_trs = len(stim.words), len(stim.tr_times)
    for name, arr, n in (("word_onsets", stim.word_onsets, n_words), ("word_runs", stim.word_runs, n_words),
                         ("tr_runs", stim.tr_runs, n_trs)):
        if arr.shape != (n,):
            raise DataError(f"Stimulus '{stim.name}': {name} has shape {arr.shape} but there are {n} "
                            f"{'words' if n == n_words else 'TRs'}; give one value per "
                            f"{'word' if n == n_words else 'TR'}.")
    if n_words == 0 or n_trs == 0:
        raise DataError(f"Stimulus '{stim.name}' has {n_words} words and {n_trs} TRs; both must be non-empty.")
    if not np.isfinite(stim.word_onsets).all() or not np.isfinite(stim.tr_times).all():
        raise DataError(f"Stimulus '{stim.name}': word onsets or TR times contain NaN/inf; "
                        "drop those entries or fill in their times.")
    if not stim.tr > 0:
        raise DataError(f"Stimulus '{stim.name}': TR must be positive seconds, got {stim.tr!r}.")
    if np.any(np.diff(stim.tr_times) <= 0):
        raise DataError(f"Stimulus '{stim.name}': tr_times must be strictly increasing (one session clock, "
                        "runs laid end to end); add each run's start time to its TR times.")
    if np.any(np.diff(stim.word_onsets) < 0):
        raise DataError(f"Stimulus '{stim.name}': word_onsets must be non-decreasing (one session clock, "
                        "runs laid end to end); add each run's start time to its word onsets.")
    word_trs = assign_words_to_trs(stim.word_onsets, stim.word_runs, stim.tr_times, stim.tr_runs, stim.tr)
    bad = np.flatnonzero(word_trs < 0)
    if bad.size:
        i = bad[0]
        raise DataError(
            f"Stimulus '{stim.name}': {bad.size} word(s) fall outside every TR of their run, first word "
            f"#{i} {stim.words[i]!r} at {stim.word_onsets[i]:.2f} s in run {stim.word_runs[i]} "
            f"(run's TRs span {_run_span(stim, stim.word_runs[i])}). Word onsets and TR times must use the "
            "same clock and units (seconds); check for a per-run offset or milliseconds.")


def _run_span(stim, run):
    t = stim.tr_times[stim.tr_runs == run]
    return "no TRs" if t.size == 0 else f"{t[0]:.2f}-{t[-1] + stim.tr:.2f} s"


def validate_dataset_shapes(ds: Dataset) -> None:
    """Check array shapes of a :class:`Dataset`; raise :class:`DataError` naming the fix."""
    n_trs = ds.stimulus.n_trs
    if ds.responses.ndim != 2 or ds.responses.shape[0] != n_trs:
        raise DataError(f"Dataset '{ds.name}' subject {ds.subject}: responses have shape {ds.responses.shape} "
                        f"but the stimulus has {n_trs} TRs; responses must be (n_trs, n_voxels) with one row "
                        "per TR of the stimulus (transpose, or trim the stimulus TRs to match).")
    n_vox = ds.responses.shape[1]
    if ds.voxel_coords.shape != (n_vox, 3):
        raise DataError(f"Dataset '{ds.name}': voxel_coords has shape {ds.voxel_coords.shape}, expected "
                        f"({n_vox}, 3) MNI coordinates in mm, one row per voxel column of responses.")
    for name in ("voxel_labels", "voxel_is_language"):
        if getattr(ds, name).shape != (n_vox,):
            raise DataError(f"Dataset '{ds.name}': {name} has shape {getattr(ds, name).shape}, "
                            f"expected ({n_vox},), one entry per voxel.")


def drop_bad_voxels(ds: Dataset) -> Dataset:
    """Exclude voxels with any NaN/inf or zero variance, with a warning that counts them.

    Parameters
    ----------
    ds : Dataset

    Returns
    -------
    Dataset
        ``ds`` itself when all voxels are usable, else a copy without the bad voxels, with
        ``meta["excluded_voxels"] = {"nonfinite": int, "zero_variance": int}``.
    """
    Y = ds.responses
    nonfinite = ~np.isfinite(Y).all(axis=0)
    with np.errstate(invalid="ignore"):
        zero_var = ~nonfinite & (np.nanstd(np.where(np.isfinite(Y), Y, np.nan), axis=0) == 0)
    bad = nonfinite | zero_var
    if not bad.any():
        return ds
    if bad.all():
        raise DataError(f"Dataset '{ds.name}' subject {ds.subject}: all {bad.size} voxels have NaN/inf values "
                        "or zero variance; check that the responses were loaded from the right file.")
    warnings.warn(f"Dataset '{ds.name}' subject {ds.subject}: excluded {int(bad.sum())} of {bad.size} voxels "
                  f"({int(nonfinite.sum())} with NaN/inf, {int(zero_var.sum())} with zero variance).",
                  stacklevel=2)
    meta = dict(ds.meta, excluded_voxels={"nonfinite": int(nonfinite.sum()), "zero_variance": int(zero_var.sum())})
    return replace(ds.select_voxels(~bad), meta=meta)



