"""Simulated subjects with planted ground truth: which words drive each voxel, exactly.

No real fMRI is available offline, so the built-in subjects are simulated. Their responses do
not come from any language model. They come from word-level *drivers* computed from the text
and its spaCy annotations (:func:`word_drivers`):

- **semantic**: a fixed random vector per lemma, zero for function words;
- **syntactic**: one-hot universal POS and a few dependency-role groups;
- **discourse**: character mention, dialogue, sentence end.

Each language voxel mixes the three groups with its own weights, integrates the drive over the
last ``w`` words (an exponential kernel truncated to ``w`` words, ``w`` drawn per voxel), and
passes the result through the Glover HRF, sampled at the middle of each TR. Gaussian AR(1)
noise is added. Control voxels get noise only. The simulation is linear, so the clean signal
of voxel ``v`` at TR ``t`` is exactly a sum of per-word contributions::

    clean[t, v] = sum_j c[t, j, v]
    c[t, j, v] = drive[j, v] * sum_m H[t, j + m] * k_v(m)

Here ``H`` is the word-to-TR HRF-sampling matrix (:func:`hrf_sampling_matrix`) and ``k_v`` the
integration kernel. The few **sparse-plant** voxels (``plant_share``) read character mentions
through :func:`plant_sampling_matrix` instead of ``H``: the HRF cut to the encoder's 4 delays,
on per-TR word averages, the encoding model's own form, so an encoder with the right features
can hold them exactly. :mod:`brainattr.data.ground_truth` computes ``c`` on demand for chosen TRs
and scores attribution methods against its L2 norm over voxels.

Voxels are real MNI positions labelled with the Harvard-Oxford atlas (:mod:`brainattr.data.atlas`):
language voxels in :data:`~brainattr.data.atlas.LANGUAGE_ROIS`, each ROI with its own profile
(:data:`ROI_PROFILES`), control voxels far from them.

Noise calibration. ``noise`` is the standard deviation of the noise. Each language voxel's
clean signal has standard deviation ``a_v = exp(snr_spread * z_v)``, with ``z_v ~ N(0, 1)``,
so the median per-voxel SNR (signal sd / noise sd) is ``1 / noise``. The true-signal
correlation ``corr(clean_v, response_v)`` is about ``a_v / sqrt(a_v**2 + noise**2)``. With the
defaults (``noise=5``, ``snr_spread=0.8``) the language voxels average 0.24. The median is
0.20, the 10th percentile 0.07, the 90th 0.50 and the maximum about 0.96 (measured as
``meta["voxel_true_r"]`` on the full stimulus, 4 subjects x 1,000 language voxels). Control
voxels have no signal; their chance correlations with any signal are about ±0.03. These
defaults are meant to give encoding correlations near the paper's (mean r of about 0.06) once
LM features, which recover the drivers only in part, predict them. ``noise`` is the single knob
to recalibrate.
"""
from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse

from ..metrics import pearson_r
from ..schema import DataError, Dataset, Stimulus, drop_bad_voxels
from ..trs import DELAYS
from .atlas import sample_atlas_rows, voxel_table
from .builtin import load_builtin_stimulus
from .wordnet import wordnet_vectors

#: Driver groups, in the column order of the driver matrix.
DRIVER_GROUPS = ("semantic", "syntactic", "discourse")

#: Per-ROI simulation profile. ``dominant`` gives the probabilities that a voxel is dominated by the
#: semantic, syntactic or discourse drivers. ``window`` gives the range (inclusive) of its
#: integration window in words. The planted pattern: IFG is syntax-heavy with medium windows, STG
#: is local (short windows), anterior temporal cortex and MTG are semantic, and AG and the temporal
#: pole integrate long stretches and carry more discourse.
ROI_PROFILES = {
    "IFGtri": dict(dominant=(0.30, 0.50, 0.20), window=(2, 12)),
    "IFGoper": dict(dominant=(0.20, 0.60, 0.20), window=(2, 10)),
    "TP": dict(dominant=(0.50, 0.15, 0.35), window=(6, 20)),
    "aSTG": dict(dominant=(0.40, 0.40, 0.20), window=(1, 6)),
    "pSTG": dict(dominant=(0.30, 0.50, 0.20), window=(1, 6)),
    "aMTG": dict(dominant=(0.60, 0.20, 0.20), window=(3, 14)),
    "pMTG": dict(dominant=(0.55, 0.25, 0.20), window=(3, 14)),
    "MTGto": dict(dominant=(0.60, 0.25, 0.15), window=(2, 10)),
    "AG": dict(dominant=(0.40, 0.10, 0.50), window=(8, 20)),
}

#: Universal POS tags (spaCy), one syntactic driver column each.
UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
        "PUNCT", "SCONJ", "SYM", "VERB", "X")

#: Dependency-role groups (spaCy English labels), one syntactic driver column each.
DEP_GROUPS = {
    "subject": ("nsubj", "nsubjpass", "csubj", "csubjpass", "expl"),
    "object": ("dobj", "iobj", "pobj", "dative", "attr", "oprd"),
    "modifier": ("amod", "advmod", "nummod", "npadvmod", "compound", "poss", "nmod", "quantmod"),
    "clausal": ("ccomp", "xcomp", "advcl", "relcl", "acl", "pcomp", "csubj"),
    "root": ("ROOT",),
    "coordination": ("conj", "cc", "preconj"),
}

#: Annotation columns :func:`word_drivers` needs.
REQUIRED_ANNOTATIONS = ("lemma", "pos", "dep", "is_content", "is_character", "in_dialogue", "sentence_end")


# --------------------------------------------------------------------------------------------
# Word-level drivers
# --------------------------------------------------------------------------------------------

def stable_seed(*parts) -> int:
    """A 64-bit seed from a stable hash of ``parts`` (identical across runs and machines).

    Python's ``hash`` is salted per process, so sha256 is used instead.
    """
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _check_annotations(stimulus: Stimulus) -> pd.DataFrame:
    ann = stimulus.annotations
    if ann is None:
        raise DataError(f"Stimulus '{stimulus.name}' has no word annotations, which the simulation needs for its "
                        "word drivers; pass annotate=True to load_builtin_stimulus, or set "
                        "Stimulus.annotations (e.g. brainattr.data.annotate_words(stimulus.words)).")
    missing = [c for c in REQUIRED_ANNOTATIONS if c not in ann.columns]
    if missing:
        raise DataError(f"Stimulus '{stimulus.name}': annotations lack column(s) {missing}; build them with "
                        "brainattr.data.annotate_words(stimulus.words).")
    if len(ann) != stimulus.n_words:
        raise DataError(f"Stimulus '{stimulus.name}': annotations have {len(ann)} rows but there are "
                        f"{stimulus.n_words} words; give one annotation row per word.")
    return ann


def _label_vector(label: str, seed: int, dim: int) -> np.ndarray:
    """The fixed N(0, 1) vector of a semantic label (a lemma or a WordNet category), shape (dim,)."""
    return np.random.default_rng([seed, stable_seed("lemma", label)]).standard_normal(dim)


def word_drivers(stimulus: Stimulus, seed: int = 0, semantic_dim: int = 16,
                 semantics: str = "wordnet") -> dict[str, pd.DataFrame]:
    """Word-level drivers of the simulated voxels. They come from the text and its annotations, with no LM.

    Parameters
    ----------
    stimulus : Stimulus
        Must carry annotations (:func:`brainattr.data.annotate_words`).
    seed : int
        Seed of the semantic vectors. It is shared by all subjects, so the same lemma means the
        same thing to everyone.
    semantic_dim : int
        Dimension of the semantic vectors.
    semantics : {"wordnet", "random"}
        ``"wordnet"``: each content word's vector sums one fixed random vector per WordNet label of
        the word (its synset and every hypernym, :func:`brainattr.data.wordnet.wordnet_categories`),
        so words close in meaning drive voxels alike and an encoder can learn the drive from
        features that know meaning. ``"random"``: an independent vector per lemma (no encoder can
        generalise it to lemmas it has not seen; the simulation before WordNet).

    Returns
    -------
    dict mapping each name in :data:`DRIVER_GROUPS` to a DataFrame with n_words rows
        ``semantic``: (n_words, semantic_dim), norm about 1 per content word, zero for function words
        (``is_content`` False) and, with ``"wordnet"``, for words WordNet does not know (names).
        ``syntactic``: (n_words, 17 + 6), one-hot universal POS (:data:`UPOS`) and dependency
        groups (:data:`DEP_GROUPS`), centred.
        ``discourse``: (n_words, 3), ``is_character``, ``in_dialogue`` and ``sentence_end``,
        centred.
        The binary drivers are centred over words. Otherwise every word would add the same
        positive drive, and the simulation would reward "a word was shown" rather than which
        word it was.
    """
    ann = _check_annotations(stimulus)
    n = len(ann)
    lemmas = ann["lemma"].astype(str).str.lower().to_numpy()
    content = ann["is_content"].to_numpy(dtype=bool)
    sem = np.zeros((n, semantic_dim))
    if semantics == "wordnet":
        idx = np.flatnonzero(content)
        sem[idx] = wordnet_vectors(lemmas[idx], ann["pos"].astype(str).to_numpy()[idx], seed, semantic_dim,
                                   _label_vector)
    elif semantics == "random":
        vectors = {lem: _label_vector(lem, seed, semantic_dim) for lem in np.unique(lemmas[content])}
        for i in np.flatnonzero(content):
            sem[i] = vectors[lemmas[i]]
        sem /= np.sqrt(semantic_dim)
    else:
        raise ValueError(f"semantics must be 'wordnet' or 'random', got {semantics!r}.")
    pos = ann["pos"].astype(str).to_numpy()
    dep = ann["dep"].astype(str).to_numpy()
    syn = np.column_stack([pos == p for p in UPOS] + [np.isin(dep, v) for v in DEP_GROUPS.values()]).astype(float)
    disc = np.array(ann[["is_character", "in_dialogue", "sentence_end"]].to_numpy(dtype=float))
    syn -= syn.mean(axis=0)
    disc -= disc.mean(axis=0)
    return {
        "semantic": pd.DataFrame(sem, columns=[f"sem{k}" for k in range(semantic_dim)]),
        "syntactic": pd.DataFrame(syn, columns=[f"pos={p}" for p in UPOS] + [f"dep={d}" for d in DEP_GROUPS]),
        "discourse": pd.DataFrame(disc, columns=["character", "dialogue", "sentence_end"]),
    }


# --------------------------------------------------------------------------------------------
# Hemodynamics
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _glover(dt: float, hrf_length: float) -> np.ndarray:
    from nilearn.glm.first_level import glover_hrf  # deferred: slow import (scikit-learn), only when needed

    # glover_hrf samples at t_r / oversampling; t_r=1 with oversampling=1/dt gives step dt
    return glover_hrf(1.0, oversampling=int(round(1.0 / dt)), time_length=hrf_length)


_HRF_CACHE: OrderedDict = OrderedDict()


def hrf_sampling_matrix(stimulus: Stimulus, sample_offset: float = 0.5, hrf_length: float = 32.0,
                        dt: float = 0.1) -> scipy.sparse.csr_matrix:
    """Word-to-TR matrix: a unit impulse at each word onset, convolved with the HRF and sampled per TR.

    ``H[t, j] = hrf(tau_t - onset_j)`` where ``tau_t = tr_times[t] + sample_offset * tr`` and ``hrf``
    is nilearn's Glover HRF on a ``dt`` grid, linearly interpolated, zero outside
    ``(0, hrf_length)``. Words and TRs of different runs never interact, since the runs are
    separate scans. Then ``H @ s`` (``s`` of shape (n_words, V)) is the BOLD signal of word-level
    amplitudes ``s``, the same as placing impulses on a fine grid and convolving.

    Parameters
    ----------
    stimulus : Stimulus
    sample_offset : float
        Where in the TR the volume is sampled, as a fraction of the TR (0.5: the middle, as
        after slice-timing correction to the middle slice).
    hrf_length : float
        HRF support in seconds.
    dt : float
        Step of the fine time grid in seconds.

    Returns
    -------
    scipy.sparse.csr_matrix of float64, shape (n_trs, n_words)
        Cached per stimulus and settings (treat as read-only).
    """
    key = (stimulus.fingerprint, float(sample_offset), float(hrf_length), float(dt))
    if key in _HRF_CACHE:
        _HRF_CACHE.move_to_end(key)
        return _HRF_CACHE[key]
    hrf = _glover(dt, hrf_length)
    grid = dt * np.arange(hrf.size)
    tau = stimulus.tr_times + sample_offset * stimulus.tr
    onsets = stimulus.word_onsets
    lo = np.searchsorted(onsets, tau - hrf_length, side="right")
    hi = np.searchsorted(onsets, tau, side="left")  # onset == tau: lag 0, hrf(0) = 0
    counts = hi - lo
    rows = np.repeat(np.arange(stimulus.n_trs), counts)
    cols = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) if counts.sum() else np.zeros(0, int)
    same_run = stimulus.tr_runs[rows] == stimulus.word_runs[cols]
    rows, cols = rows[same_run], cols[same_run]
    vals = np.interp(tau[rows] - onsets[cols], grid, hrf, left=0.0, right=0.0)
    H = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(stimulus.n_trs, stimulus.n_words))
    H.eliminate_zeros()
    _HRF_CACHE[key] = H
    if len(_HRF_CACHE) > 4:
        _HRF_CACHE.popitem(last=False)
    return H


_PLANT_CACHE: OrderedDict = OrderedDict()


def plant_sampling_matrix(stimulus: Stimulus, delays=DELAYS, hrf_length: float = 32.0,
                          dt: float = 0.1) -> scipy.sparse.csr_matrix:
    """Word-to-TR matrix of the sparse plant: the HRF cut to the encoder's delays, on per-TR word averages.

    ``P[t, j] = g_d / n`` for each of the ``n`` words shown during TR ``t - d`` of the same run
    (``Stimulus.word_trs``), for each delay ``d`` in ``delays``, with ``g_d`` the Glover HRF at
    ``d * tr`` seconds (scaled to a largest gain of 1). It is the encoding model's own form: the
    per-TR averaging of its features (:func:`brainattr.trs.word_tr_weights`, ``"average"``) at its
    delays with fixed weights. A voxel read through it lies in the encoder's model class, so which
    words drive it is knowable from the right features; one read through the full HRF
    (:func:`hrf_sampling_matrix`) is also driven by words past the last delay and by the HRF's
    undershoot, which no encoder of 4 delays sees.

    Parameters
    ----------
    stimulus : Stimulus
    delays : sequence of int
        In TRs (default :data:`brainattr.trs.DELAYS`).
    hrf_length, dt : float
        See :func:`hrf_sampling_matrix`.

    Returns
    -------
    scipy.sparse.csr_matrix of float64, shape (n_trs, n_words)
        Cached per stimulus and settings (treat as read-only).
    """
    delays = tuple(int(d) for d in delays)
    key = (stimulus.fingerprint, delays, float(hrf_length), float(dt))
    if key in _PLANT_CACHE:
        _PLANT_CACHE.move_to_end(key)
        return _PLANT_CACHE[key]
    hrf = _glover(dt, hrf_length)
    gains = np.interp(np.asarray(delays, dtype=float) * stimulus.tr, dt * np.arange(hrf.size), hrf, left=0.0,
                      right=0.0)
    if not len(delays) or not gains.max() > 0:
        raise ValueError(f"plant_delays {list(delays)} reach no part of the HRF at a TR of {stimulus.tr} s; use "
                         f"the encoder's delays {list(DELAYS)}.")
    word_trs = np.asarray(stimulus.word_trs)
    shown = np.flatnonzero(word_trs >= 0)
    counts = np.bincount(word_trs[shown], minlength=stimulus.n_trs)
    rows, cols, vals = [], [], []
    for d, gain in zip(delays, gains / gains.max()):
        r = word_trs[shown] + d
        ok = r < stimulus.n_trs
        c, r = shown[ok], r[ok]
        ok = stimulus.tr_runs[r] == stimulus.word_runs[c]          # a run is a separate scan
        rows.append(r[ok]), cols.append(c[ok]), vals.append(gain / counts[word_trs[c[ok]]])
    P = scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                shape=(stimulus.n_trs, stimulus.n_words))   # duplicates (two delays) add up
    P.eliminate_zeros()
    _PLANT_CACHE[key] = P
    if len(_PLANT_CACHE) > 4:
        _PLANT_CACHE.popitem(last=False)
    return P


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------

def voxel_index(voxels, n_voxels) -> np.ndarray:
    """Voxel columns as int indices: ``voxels`` (int indices, bool mask of shape (n_voxels,), or None for all).

    Returns
    -------
    array of int, shape (n_selected,)
        Negative indices wrapped to ``0 .. n_voxels - 1``.
    """
    if voxels is None:
        return np.arange(n_voxels)
    v = np.asarray(voxels)
    if v.dtype == bool:
        if v.shape != (n_voxels,):
            raise ValueError(f"A boolean voxel mask must have shape ({n_voxels},), got {v.shape}.")
        return np.flatnonzero(v)
    v = np.atleast_1d(v).astype(int)
    if v.size and (v.min() < -n_voxels or v.max() >= n_voxels):
        raise IndexError(f"Voxel indices must lie in [0, {n_voxels}), got {v.min()}..{v.max()}.")
    return v % n_voxels


def ordered_selection(voxels, n_voxels) -> tuple:
    """``voxels`` as int indices and as a boolean mask, checked increasing and unique (a selection keeps column order).

    Returns
    -------
    idx : array of int, shape (n_selected,)
    mask : array of bool, shape (n_voxels,)
    """
    idx = voxel_index(voxels, n_voxels)
    mask = np.zeros(n_voxels, bool)
    mask[idx] = True
    if not np.array_equal(np.flatnonzero(mask), idx):
        raise ValueError("select_voxels needs increasing, unique column indices (or a boolean mask).")
    return idx, mask


@dataclass(frozen=True)
class SimulatedSubject:
    """A simulated subject: its :class:`Dataset` and everything needed to recompute the ground truth.

    Attributes
    ----------
    dataset : Dataset
        What a real-data loader would return. ``responses = clean + noise``.
    clean : array of float64, shape (n_trs, n_voxels)
        Noise-free signal. It is zero for control voxels.
    drivers : array of float64, shape (n_words, n_drivers)
        Word drivers (:func:`word_drivers`, the groups side by side).
    driver_names : array of str, shape (n_drivers,)
    driver_groups : array of str, shape (n_drivers,)
        Group (:data:`DRIVER_GROUPS`) of each driver column.
    weights : array of float64, shape (n_drivers, n_voxels)
        ``drivers @ weights`` is the word-level drive of each voxel, with the voxel's signal
        scale included. Zero for control voxels.
    kernels : array of float64, shape (max_window, n_voxels)
        ``kernels[m, v]``: weight of the word ``m`` positions back in voxel ``v``'s integration.
    hrf_matrix : scipy.sparse.csr_matrix, shape (n_trs, n_words)
        :func:`hrf_sampling_matrix` of the stimulus.
    params : dict
        Keyword arguments of :func:`simulate` (JSON-serialisable), enough to rebuild the subject.
    """

    dataset: Dataset
    clean: np.ndarray
    drivers: np.ndarray
    driver_names: np.ndarray
    driver_groups: np.ndarray
    weights: np.ndarray
    kernels: np.ndarray
    hrf_matrix: scipy.sparse.csr_matrix
    params: dict

    @property
    def stimulus(self) -> Stimulus:
        return self.dataset.stimulus

    @property
    def n_voxels(self) -> int:
        return self.clean.shape[1]

    @property
    def plant_matrix(self) -> scipy.sparse.csr_matrix:
        """:func:`plant_sampling_matrix` of the stimulus with the simulation's settings, (n_trs, n_words)."""
        p = self.params
        return plant_sampling_matrix(self.stimulus, p.get("plant_delays", DELAYS), p["hrf_length"], p["dt"])

    @property
    def planted_columns(self) -> np.ndarray:
        """Which columns of ``weights`` and ``kernels`` are sparse-plant voxels, bool of shape (n_columns,)."""
        return np.any(self.weights[self.driver_groups == "plant"] != 0, axis=0)

    def select_voxels(self, voxels) -> "SimulatedSubject":
        """A copy restricted to ``voxels`` (int indices or bool mask of shape (n_voxels,))."""
        _, mask = ordered_selection(voxels, self.n_voxels)
        return replace(self, dataset=self.dataset.select_voxels(mask), clean=self.clean[:, mask],
                       weights=self.weights[:, mask], kernels=self.kernels[:, mask])


def simulate(stimulus: Stimulus, subject: str = "sub-01", seed: int = 0, n_language: int = 1000,
             n_control: int = 500, noise: float = 5.0, snr_spread: float = 0.8, ar1: float = 0.3,
             max_window: int = 20, kernel: str = "exponential", semantic_dim: int = 16,
             semantics: str = "wordnet", plant_share: float = 0.05, plant_delays=DELAYS,
             sample_offset: float = 0.5,
             hrf_length: float = 32.0, dt: float = 0.1) -> SimulatedSubject:
    """Simulate one subject reading ``stimulus``, keeping the ground-truth state.

    Parameters
    ----------
    stimulus : Stimulus
        Must carry annotations.
    subject : str
        Subject identifier. With ``seed``, it sets the subject's random state through a stable
        hash, so different subjects get different voxels, weights, windows and noise.
    seed : int
        Global seed (also seeds the semantic vectors, which all subjects share).
    n_language, n_control : int
        Numbers of language-ROI and control voxels (:func:`brainattr.data.atlas.sample_atlas_voxels`).
    noise : float
        Noise standard deviation. It is the single calibration knob. A language voxel's clean
        signal has sd ``a_v`` (log-normal, median 1), so its SNR is ``a_v / noise`` (see the
        module docstring for the resulting true-signal correlations).
    snr_spread : float
        Standard deviation of ``log a_v``, i.e. how much better the best voxels are than the worst.
    ar1 : float
        Lag-1 autocorrelation of the noise, in [0, 1). Each run starts from the stationary
        distribution.
    max_window : int
        Longest integration window in words. The per-ROI window ranges of :data:`ROI_PROFILES`
        are clipped to it.
    kernel : {"exponential", "boxcar"}
        Integration kernel over the last ``w`` words: ``exp(-3 m / w)`` or 1, for ``m < w``.
    semantic_dim : int
        Dimension of the semantic driver vectors.
    semantics : {"wordnet", "random"}
        How semantic vectors are made (:func:`word_drivers`).
    plant_share : float
        Share of the language voxels that form the **sparse plant**: voxels driven only by
        mentions of characters (``is_character``, not centred, so every other word contributes
        exactly zero), with no integration (window 1), through the HRF cut to ``plant_delays``
        (:func:`plant_sampling_matrix`) rather than the full HRF, so they lie in the encoding
        model's class. Their truth is a known, sparse set of words per TR, which precision@k
        scores (chapter 3). They keep their ROI and count among the language voxels.
    plant_delays : sequence of int
        The TRs back that the plant reads (default: the encoder's, :data:`brainattr.trs.DELAYS`).
    sample_offset, hrf_length, dt : float
        See :func:`hrf_sampling_matrix`.

    Returns
    -------
    SimulatedSubject
        ``.dataset.meta`` holds the parameters (``"simulation"``), the driver names and groups,
        and per-voxel arrays of shape (n_voxels,) or (n_voxels, 3): ``voxel_region``
        (Harvard-Oxford name), ``voxel_window`` (0 for controls), ``voxel_dominant_group``
        (``"none"`` for controls), ``voxel_group_weights`` (variance share of each driver group,
        rows sum to 1, zero for controls), ``voxel_signal_sd`` (``a_v``, 0 for controls) and
        ``voxel_true_r`` (measured corr(clean, response), NaN for controls), ``voxel_plant`` (bool,
        the sparse plant; their dominant group is ``"plant"`` and their group weights are zero).
    """
    if not noise > 0:
        raise ValueError(f"noise must be a positive standard deviation, got {noise!r}.")
    if not 0 <= ar1 < 1:
        raise ValueError(f"ar1 must be in [0, 1), got {ar1!r}.")
    if kernel not in ("exponential", "boxcar"):
        raise ValueError(f"kernel must be 'exponential' or 'boxcar', got {kernel!r}.")
    if max_window < 1:
        raise ValueError(f"max_window must be at least 1 word, got {max_window!r}.")
    if not 0 <= plant_share < 1:
        raise ValueError(f"plant_share must be in [0, 1), got {plant_share!r}.")
    plant_delays = [int(d) for d in np.atleast_1d(plant_delays)]
    if not plant_delays or min(plant_delays) < 0:
        raise ValueError(f"plant_delays must be TRs back, at least 0, got {plant_delays!r}; the encoder's are "
                         f"{list(DELAYS)}, which keep the plant in its model class.")
    params = dict(subject=str(subject), seed=int(seed), n_language=int(n_language), n_control=int(n_control),
                  noise=float(noise), snr_spread=float(snr_spread), ar1=float(ar1), max_window=int(max_window),
                  kernel=kernel, semantic_dim=int(semantic_dim), semantics=semantics, plant_share=float(plant_share),
                  plant_delays=plant_delays, sample_offset=float(sample_offset), hrf_length=float(hrf_length),
                  dt=float(dt))
    groups = word_drivers(stimulus, seed=seed, semantic_dim=semantic_dim, semantics=semantics)
    H = hrf_sampling_matrix(stimulus, sample_offset, hrf_length, dt)
    subject_seed = stable_seed("subject", seed, subject)
    rng = np.random.default_rng(subject_seed)  # one stream, drawn in a fixed order: voxels, profiles, weights, ...

    lang_rows, ctrl_rows = sample_atlas_rows(n_language, n_control, rng.integers(2**63))
    table = voxel_table()
    rows = np.concatenate([lang_rows, ctrl_rows])
    n_lang, n_vox = lang_rows.size, rows.size
    labels = table["roi"].to_numpy()[rows]

    dominant, windows, mix = _voxel_profiles(rng, labels, n_lang, max_window)
    # the plant is drawn from its own stream: without it (plant_share=0) the rest is unchanged
    plant = np.zeros(n_vox, dtype=bool)
    n_plant = int(round(plant_share * n_lang))
    plant[np.random.default_rng([subject_seed, 1]).choice(n_lang, n_plant, replace=False)] = True
    dominant[plant], windows[plant], mix[plant] = len(DRIVER_GROUPS), 1, 0.0
    character = _check_annotations(stimulus)["is_character"].to_numpy(dtype=float)
    drivers = np.hstack([groups[n].to_numpy() for n in DRIVER_GROUPS] + [character[:, None]])
    weights = np.vstack([_driver_weights(rng, groups, mix), plant[None, :].astype(float)])
    kernels = _integration_kernels(windows, max_window, kernel)
    drive = drivers @ weights
    clean = H @ _integrate(drive, kernels, stimulus.word_runs)
    # the plant reads per-TR word averages at the encoder's delays (window 1): its own form, see plant_share
    clean[:, plant] = plant_sampling_matrix(stimulus, plant_delays, hrf_length, dt) @ drive[:, plant]
    # scale the weights, not only the signal, so contributions recomputed from them stay exact
    amplitude = np.zeros(n_vox)
    amplitude[:n_lang] = np.exp(snr_spread * rng.standard_normal(n_lang))
    scale = _signal_scale(clean, amplitude)
    weights *= scale
    clean *= scale

    responses = clean + noise * _ar1_noise(rng, (stimulus.n_trs, n_vox), ar1, stimulus.tr_runs)
    true_r = np.full(n_vox, np.nan)
    if n_lang:
        true_r[:n_lang] = pearson_r(clean[:, :n_lang], responses[:, :n_lang])

    group_names = np.array([*DRIVER_GROUPS, "plant", "none"])
    meta = {
        "simulation": params,
        "subject_seed": subject_seed,
        "driver_groups": {name: list(groups[name].columns) for name in DRIVER_GROUPS},
        "voxel_region": table["region"].to_numpy()[rows],
        "voxel_window": windows,
        "voxel_dominant_group": group_names[dominant],
        "voxel_group_weights": mix,
        "voxel_signal_sd": amplitude,
        "voxel_true_r": true_r,
        "voxel_plant": plant,
    }
    ds = Dataset(stimulus=stimulus, subject=str(subject), responses=responses,
                 voxel_coords=table[["x", "y", "z"]].to_numpy()[rows], voxel_labels=labels,
                 voxel_is_language=np.arange(n_vox) < n_lang, name="builtin", meta=meta)
    return SimulatedSubject(dataset=ds, clean=clean, drivers=drivers,
                            driver_names=np.concatenate([groups[n].columns.to_numpy(str) for n in DRIVER_GROUPS]
                                                        + [["plant:character"]]),
                            driver_groups=np.concatenate([[n] * groups[n].shape[1] for n in DRIVER_GROUPS]
                                                         + [["plant"]]),
                            weights=weights, kernels=kernels, hrf_matrix=H, params=params)


def _voxel_profiles(rng, labels, n_lang: int, max_window: int):
    """Per voxel: a dominant driver group (ROI-dependent odds), a window, then a Dirichlet mix favouring the group.

    Parameters
    ----------
    rng : numpy.random.Generator
    labels : array of str, shape (n_voxels,)
        ROI labels, the ``n_lang`` language voxels first.
    n_lang, max_window : int

    Returns
    -------
    dominant : array of int, shape (n_voxels,)
        Index into :data:`DRIVER_GROUPS`; -1 for control voxels.
    windows : array of int, shape (n_voxels,)
        Integration window in words; 0 for control voxels.
    mix : array of float, shape (n_voxels, 3)
        Variance share of each driver group; rows sum to 1 (zero for control voxels).
    """
    n_vox = labels.size
    dominant = np.full(n_vox, -1)
    windows = np.zeros(n_vox, dtype=int)
    for roi, prof in ROI_PROFILES.items():
        idx = np.flatnonzero(labels[:n_lang] == roi)
        dominant[idx] = rng.choice(3, size=idx.size, p=prof["dominant"])
        w_lo, w_hi = min(prof["window"][0], max_window), min(prof["window"][1], max_window)
        windows[idx] = rng.integers(w_lo, w_hi + 1, size=idx.size)
    mix = np.zeros((n_vox, 3))
    alpha = 0.6 + 3.0 * np.eye(3)[dominant[:n_lang]]
    mix[:n_lang] = np.array([rng.dirichlet(a) for a in alpha]) if n_lang else np.zeros((0, 3))
    return dominant, windows, mix


def _driver_weights(rng, groups: dict, mix) -> np.ndarray:
    """Random driver weights, shape (n_drivers, n_voxels), groups stacked in :data:`DRIVER_GROUPS` order.

    Each group's drive is normalised to unit variance over words, then weighted by
    ``sqrt(mix)``, so ``mix[v, g]`` is group g's share of the word-level drive variance of voxel v.
    """
    blocks = []
    for g, name in enumerate(DRIVER_GROUPS):
        D_g = groups[name].to_numpy()
        R = rng.standard_normal((D_g.shape[1], mix.shape[0]))
        sd = (D_g @ R).std(axis=0)
        blocks.append(R * np.sqrt(mix[:, g]) / np.where(sd > 0, sd, 1.0))
    return np.vstack(blocks)


def _integration_kernels(windows, max_window: int, kernel: str) -> np.ndarray:
    """Kernels of shape (max_window, n_voxels): ``exp(-3 m / w)`` (or 1 for "boxcar") for ``m < w``, else 0."""
    m = np.arange(max_window)[:, None]
    w = windows[None, :]
    return np.where(m < w, np.exp(-3.0 * m / np.maximum(w, 1)) if kernel == "exponential" else 1.0, 0.0)


def _signal_scale(clean, amplitude) -> np.ndarray:
    """Per-voxel factor giving ``clean`` (n_trs, n_voxels) the sd ``amplitude`` (n_voxels,); 0 for flat voxels."""
    sd = clean.std(axis=0)
    return np.where(sd > 0, amplitude / np.where(sd > 0, sd, 1.0), 0.0)


def _integrate(drive, kernels, word_runs):
    """s[i, v] = sum_m kernels[m, v] * drive[i - m, v], over words of the same run. Shape (n_words, V)."""
    s = drive * kernels[0]
    for m in range(1, kernels.shape[0]):
        cols = np.flatnonzero(kernels[m])
        if cols.size == 0 or m >= len(drive):
            continue
        same = (word_runs[m:] == word_runs[:-m])[:, None]
        s[m:, cols] += np.where(same, drive[:-m, cols] * kernels[m, cols], 0.0)
    return s


def _ar1_noise(rng, shape, phi, runs):
    """Unit-variance AR(1) noise of shape (n_trs, V), restarted (stationary) at each run."""
    u = rng.standard_normal(shape)
    if phi == 0:
        return u
    e = np.empty(shape)
    c = np.sqrt(1 - phi**2)
    for t in range(shape[0]):
        e[t] = u[t] if t == 0 or runs[t] != runs[t - 1] else phi * e[t - 1] + c * u[t]
    return e


def simulated_dataset(stimulus: Stimulus, subject: str = "sub-01", seed: int = 0, **kwargs) -> Dataset:
    """One simulated subject as a :class:`Dataset` (``simulate(...).dataset``; see :func:`simulate`)."""
    return simulate(stimulus, subject=subject, seed=seed, **kwargs).dataset


def simulated_datasets(subjects=("sub-01",), *, max_words: int | None = None, n_language_voxels: int = 1000,
                       n_control_voxels: int = 500, seed: int = 0, noise: float | None = None, text=None,
                       stimulus: Stimulus | None = None, context: int | None = None) -> list[Dataset]:
    """Simulated subjects reading the built-in stimulus, or any text: the ``"builtin"`` loader of :func:`brainattr.data.load_dataset`.

    Parameters
    ----------
    subjects : sequence of str, str or int
        Subject ids (``"sub-01"``), or an int n for ``sub-01`` ... ``sub-0n``.
    max_words : int or None
        Keep the first ``max_words`` words of the stimulus (:func:`load_builtin_stimulus`,
        :func:`brainattr.data.load_text_stimulus`).
    n_language_voxels, n_control_voxels : int
        Voxels sampled inside and outside the language ROIs.
    seed : int
        Global simulation seed.
    noise : float or None
        Noise level (None: the simulation's calibrated default).
    text : str or Path or None
        A UTF-8 plain-text file (paragraphs, shown word by word) or a word-timing table (``.tsv``
        with columns word, onset, run, duration) that the subjects read instead of the built-in
        text (:func:`brainattr.data.load_text_stimulus`, annotations inferred from the text).
    stimulus : Stimulus or None
        An annotated stimulus to read instead (``max_words``, ``text`` and ``context`` then unused).
    context : int or None
        Words of context the attribution reads: a ``text`` not longer than that is an error.

    Returns
    -------
    list of Dataset, one per subject
        NaN and zero-variance voxels already excluded (:func:`brainattr.schema.drop_bad_voxels`).
    """
    if isinstance(subjects, (int, np.integer)):
        subjects = [f"sub-{k + 1:02d}" for k in range(int(subjects))]
    if isinstance(subjects, str):
        subjects = [subjects]
    if stimulus is not None and text is not None:
        raise DataError("give either a text (a file the subjects read) or a stimulus, not both.")
    if stimulus is None and text is not None:
        from .text import load_text_stimulus  # here, so the rest of this module does not change for it

        stimulus = load_text_stimulus(text, max_words=max_words, context=context)
    elif stimulus is None:
        stimulus = load_builtin_stimulus(max_words=max_words)
    kw = dict(n_language=n_language_voxels, n_control=n_control_voxels)
    if noise is not None:
        kw["noise"] = noise
    return [drop_bad_voxels(simulated_dataset(stimulus, subject=s, seed=seed, **kw)) for s in subjects]


def noise_datasets(stimulus: Stimulus, n_subjects: int = 1, n_language_voxels: int = 500,
                   n_control_voxels: int = 200, seed: int = 0) -> list[Dataset]:
    """Subjects whose responses are Gaussian noise: a subject of the right size and nothing planted.

    For timing (benchmarks, the GPU check) and for tests that need no signal: the run time of an
    encoding fit or of attribution does not depend on the responses' values. Needs neither spaCy
    nor WordNet, so ``stimulus`` may be unannotated (``load_builtin_stimulus(annotate=False)``).
    Voxels have no coordinates (all zeros) and are labelled ``"language"`` or ``"control"``.

    Parameters
    ----------
    stimulus : Stimulus
    n_subjects : int
    n_language_voxels, n_control_voxels : int
    seed : int

    Returns
    -------
    list of Dataset, one per subject (``sub-01`` ...), responses of shape
    (stimulus.n_trs, n_language_voxels + n_control_voxels)
    """
    n_voxels = n_language_voxels + n_control_voxels
    is_language = np.arange(n_voxels) < n_language_voxels
    labels = np.where(is_language, "language", "control")
    rng = np.random.default_rng(seed)
    return [Dataset(stimulus=stimulus, subject=f"sub-{k + 1:02d}", name="noise", voxel_coords=np.zeros((n_voxels, 3)),
                    responses=rng.standard_normal((stimulus.n_trs, n_voxels), dtype=np.float32),
                    voxel_labels=labels, voxel_is_language=is_language, meta=dict(simulation="gaussian noise"))
            for k in range(n_subjects)]
