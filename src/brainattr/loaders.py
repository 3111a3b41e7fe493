"""Real fMRI data in the :mod:`brainattr.dataset` schema: Harry Potter and Moth Radio Hour (reading).

Two datasets, both read word by word (book chapter "Use the real data" lists the sources):

- ``"hp"``: Harry Potter chapter 9 (Wehbe et al. 2014), 8 subjects, 5,176 words at 0.5 s each,
  TR 2 s, 4 runs. Two on-disk layouts: the CMU MATLAB release (``subject_N.mat``, layout
  ``"mat"``) and the preprocessed NumPy release of Toneva & Wehbe 2019 (``data_subject_F.npy``
  ..., layout ``"npy"``). ``"hp"`` picks the NumPy release when it is there, else the MATLAB one;
  ``"hp-mat"`` and ``"hp-npy"`` force one.
- ``"moth"``: Moth Radio Hour stories read word by word (Deniz et al. 2019), the public release on
  gin.g-node.org (6 subjects; the paper used 9), 10 training stories plus one validation story
  shown twice, TR 2.0045 s. The runs of the Dataset are the stories; the validation story's
  repeats give each voxel's explainable variance (:func:`noise_ceiling`).

Files live under ``$BRAINATTR_DATA`` (default ``~/brainattr_data``), or ``data_home``::

    <data_home>/hp/subject_1.mat ... subject_8.mat      layout "mat"
    <data_home>/hp/story_features.mat                   word feature annotations (both layouts)
    <data_home>/hp/fMRI/data_subject_F.npy ... _N.npy   layout "npy", with time_fmri.npy,
                                                         runs_fmri.npy, time_words_fmri.npy, words_fmri.npy
    <data_home>/hp/HP_subj_roi_inds.npy                 optional: language ROIs for layout "npy"
    <data_home>/moth/responses/subject01_reading_fmri_data_trn.hdf, ..._val.hdf
    <data_home>/moth/mappers/subject01_mappers.hdf      optional: ROI masks (language voxels)
    <data_home>/moth/textgrids/story_01.TextGrid ...    word timings (or <moth story name>.TextGrid)

Time follows the schema's single session clock (runs laid end to end). Releases that already
dropped the first 20 and last 15 TRs of each run (HP ``"npy"``) are put back on the full TR grid;
the dropped rows hold the run mean and are listed in ``meta["unmeasured_trs"]``. The pipeline's
own trimming (:data:`brainattr.features.TRIM` = (20, 15)) removes exactly those rows again, so
nothing is trimmed twice; :func:`check_trim` raises if a smaller trim would fit on them.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .dataset import DataError, Dataset, Stimulus, drop_bad_voxels

#: Environment variable naming the folder that holds the real datasets.
DATA_ENV = "BRAINATTR_DATA"

#: Fewest TRs a run keeps when ``max_words`` cuts it: the pipeline trims 20 + 15 (features.TRIM)
#: and leave-one-run-out needs a few TRs left in every run.
MIN_RUN_TRS = 45
#: TRs kept after a run's last kept word when ``max_words`` cuts it (the 4 hemodynamic delays).
CUT_TAIL_TRS = 4

# --------------------------------------------------------------------------------------------
# Harry Potter (Wehbe et al. 2014; Toneva & Wehbe 2019)
# --------------------------------------------------------------------------------------------
HP_TR = 2.0
HP_N_SUBJECTS = 8
#: Subject letters of the NumPy release, in the order taken as sub-01 ... sub-08. Whether F is
#: the CMU release's subject_1 is not documented; the two releases are not mixed.
HP_NPY_SUBJECTS = ("F", "H", "I", "J", "K", "L", "M", "N")
#: TRs the NumPy release dropped at the start and end of every run (its README).
HP_RELEASE_TRIM = (20, 15)
HP_CMU_URL = "http://www.cs.cmu.edu/~fmri/plosone/files/"
HP_DRIVE_URL = "https://drive.google.com/drive/folders/1Q6zVCAJtKuLOh-zWpkS3lH8LBvHcEOE8"
#: Public copies (pinned commit) of the story features and of the NumPy release's language ROIs.
HP_GITHUB_URL = ("https://raw.githubusercontent.com/awwkl/brain_language_summarization/"
                 "9983f91b46c6c3a823d748993842a6cf12791fc7/data/")
#: Feature types of ``story_features.mat`` per word category (Wehbe et al. 2014, Table 1).
#: "Visual" (word length, pixels) and "Word_Num" (position in sentence) are in no category.
HP_FEATURE_CATEGORIES = {
    "semantic": ("NNSE",),
    "syntactic": ("Part_of_speech", "Dependency_role"),
    "discourse": ("Speech", "Motion", "Emotion", "Verbs", "Characters"),
}
#: AAL regions (``meta.ROInumToName`` of the MATLAB release) taken as the language set, with the
#: short labels of :data:`brainattr.simulate.LANGUAGE_ROIS` where they correspond.
HP_AAL_LANGUAGE = {
    "Frontal_Inf_Tri_L": "IFGtri", "Frontal_Inf_Oper_L": "IFGoper",
    "Temporal_Pole_Sup_L": "TP", "Temporal_Pole_Mid_L": "TP",
    "Temporal_Sup_L": "STG", "Temporal_Mid_L": "MTG", "Angular_L": "AG",
}
#: Named characters of chapter 9 (for the ``is_character`` annotation).
HP_CHARACTERS = ("Harry", "Potter", "Ron", "Weasley", "Hermione", "Granger", "Neville", "Longbottom",
                 "Draco", "Malfoy", "Crabbe", "Goyle", "Hooch", "McGonagall", "Wood", "Oliver", "Filch",
                 "Peeves", "Norris", "Seamus", "Finnigan", "Dean", "Parvati", "Patil", "Lavender", "Dudley",
                 "Snape", "Quirrell", "Hagrid", "Dumbledore", "Fluffy", "Percy", "Fred", "George")
_HP_NPY_FILES = ("time_fmri.npy", "runs_fmri.npy", "time_words_fmri.npy", "words_fmri.npy")

# --------------------------------------------------------------------------------------------
# Moth Radio Hour, reading (Deniz et al. 2019)
# --------------------------------------------------------------------------------------------
MOTH_TR = 2.0045
#: Subjects with responses in the public release (its README: six; the paper used nine).
MOTH_SUBJECTS = ("01", "02", "03", "05", "07", "08")
#: Release story keys and the Moth story each one is (as listed by users of the release; the
#: TextGrids of LeBel et al. 2023, OpenNeuro ds003020, carry these names).
MOTH_STORIES = {
    "story_01": "alternateithicatom", "story_02": "avatar", "story_03": "howtodraw", "story_04": "legacy",
    "story_05": "life", "story_06": "myfirstdaywiththeyankees", "story_07": "naked",
    "story_08": "odetostepfather", "story_09": "souls", "story_10": "undertheinfluence",
    "story_11": "wheretheressmoke",
}
#: Seconds of silence before each story in its scan (release README: 10 s, 5 TRs): a TextGrid
#: time t is at t + MOTH_WORD_OFFSET on the run's clock.
MOTH_WORD_OFFSET = 10.0
#: TRs usually dropped at each end of a story (5 of silence + 5 more; Deniz et al. 2019 code).
MOTH_TRIM = (10, 10)
#: ROI masks of the release's mappers taken as the language set (IFG, posterior temporal, parietal).
MOTH_LANGUAGE_ROIS = ("Broca", "pSTS", "cIPL")
MOTH_GIN_URL = "https://gin.g-node.org/denizenslab/narratives_reading_listening_fmri"
MOTH_TEXTGRID_URL = "https://s3.amazonaws.com/openneuro.org/ds003020/derivative/TextGrids/"
#: TextGrid labels that are not words (silence, breath, noise; Huth lab conventions).
TEXTGRID_SKIP = frozenset({"", "sp", "sil", "sl", "br", "lg", "ls", "ns", "cg", "sentence_start",
                           "sentence_end"})

#: Names :func:`load` knows, with the HP layout each forces (None: automatic).
LOADERS = {"hp": "auto", "hp-mat": "mat", "hp-npy": "npy", "moth": None}


def data_root(data_home=None) -> Path:
    """The folder holding the real datasets: ``data_home``, else ``$BRAINATTR_DATA``, else ``~/brainattr_data``."""
    return Path(data_home or os.environ.get(DATA_ENV) or Path.home() / "brainattr_data").expanduser()


def load(name, subjects=("sub-01",), *, max_words=None, data_home=None, annotate=True):
    """Load the subjects of a real dataset (dispatch for :func:`brainattr.dataset.load_dataset`).

    Parameters
    ----------
    name : str
        ``"hp"``, ``"hp-mat"``, ``"hp-npy"`` or ``"moth"``.
    subjects : sequence of str, str or int
        ``"sub-01"``-style ids (HP: ``sub-01`` ... ``sub-08``; also the NumPy release's letters),
        or an int n for the first n subjects.
    max_words : int or None
        Keep about this many words, spread evenly over the runs (:func:`cut_stimulus`).
    data_home : str or Path or None
        Folder holding ``hp/`` and ``moth/`` (default :func:`data_root`).
    annotate : bool
        Attach spaCy word annotations (:func:`brainattr.stimulus.annotate_words`).

    Returns
    -------
    list of Dataset
        NaN and zero-variance voxels already excluded.
    """
    if name not in LOADERS:
        raise DataError(f"unknown real dataset {name!r}; available: {', '.join(LOADERS)}.")
    if name == "moth":
        return load_moth(subjects, data_home=data_home, max_words=max_words, annotate=annotate)
    return load_hp(subjects, data_home=data_home, layout=LOADERS[name], max_words=max_words, annotate=annotate)


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------
def _subject_list(subjects):
    if isinstance(subjects, (str, np.str_)):
        return [str(subjects)]
    return [str(s) for s in subjects]


def _subject_number(subject: str) -> int | None:
    m = re.fullmatch(r"(?:sub-?|subject_?)?0*(\d+)", subject.strip(), flags=re.I)
    return int(m.group(1)) if m else None


def _missing_error(title, root, missing, instructions):
    shown = [str(p) for p in missing[:12]] + ([f"... and {len(missing) - 12} more"] if len(missing) > 12 else [])
    return DataError(f"{title}: missing {len(missing)} file(s):\n  " + "\n  ".join(shown) + "\n"
                     f"Put the files under {root} (set ${DATA_ENV} or pass data_home=...).\n" + instructions +
                     "\nSee the book chapter 'Use the real data' for the folder layout.")


def word_runs_from_onsets(word_onsets, tr_times, tr_runs):
    """Run of the TR whose start precedes each word onset (the word's run).

    Parameters
    ----------
    word_onsets : array of float, shape (n_words,)
    tr_times : array of float, shape (n_trs,)
    tr_runs : array of int, shape (n_trs,)

    Returns
    -------
    word_runs : array of int, shape (n_words,)
        Words before the first TR take the first run (the Stimulus check then names them).
    """
    idx = np.searchsorted(np.asarray(tr_times), np.asarray(word_onsets), side="right") - 1
    return np.asarray(tr_runs)[np.clip(idx, 0, None)]


def _annotations(words, characters, annotate):
    if not annotate:
        return pd.DataFrame({"word": np.asarray(words, dtype=str)})
    from .stimulus import annotate_words

    return annotate_words(words, characters=characters)


def cut_stimulus(stimulus: Stimulus, max_words, tail=CUT_TAIL_TRS, min_run_trs=MIN_RUN_TRS):
    """Keep about ``max_words`` words, the first ``max_words / n_runs`` of every run.

    Every run keeps its first TRs up to ``tail`` TRs after its last kept word (at least
    ``min_run_trs`` TRs, at most the whole run), and all words shown in the kept TRs, so
    leave-one-run-out cross-validation still sees every run.

    Parameters
    ----------
    stimulus : Stimulus
    max_words : int or None
    tail, min_run_trs : int

    Returns
    -------
    stimulus : Stimulus
        ``stimulus`` itself when nothing is cut.
    tr_keep : array of bool, shape (n_trs,)
        Kept TRs of the input stimulus (apply it to the responses).
    """
    if max_words is None or int(max_words) >= stimulus.n_words:
        return stimulus, np.ones(stimulus.n_trs, dtype=bool)
    if int(max_words) < 1:
        raise DataError(f"max_words must be a positive number of words or None, got {max_words!r}.")
    runs = np.unique(stimulus.tr_runs)
    per_run = int(np.ceil(int(max_words) / len(runs)))
    word_trs = stimulus.word_trs
    tr_keep = np.zeros(stimulus.n_trs, dtype=bool)
    for run in runs:
        trs = np.flatnonzero(stimulus.tr_runs == run)
        words = np.flatnonzero(stimulus.word_runs == run)
        n = trs.size if words.size <= per_run else word_trs[words[per_run - 1]] - trs[0] + 1 + tail
        tr_keep[trs[:min(trs.size, max(n, min_run_trs))]] = True
    word_keep = tr_keep[word_trs]
    ann = stimulus.annotations
    cut = Stimulus(name=f"{stimulus.name}_{int(word_keep.sum())}w", words=stimulus.words[word_keep],
                   word_onsets=stimulus.word_onsets[word_keep], word_runs=stimulus.word_runs[word_keep],
                   tr_times=stimulus.tr_times[tr_keep], tr_runs=stimulus.tr_runs[tr_keep], tr=stimulus.tr,
                   annotations=None if ann is None else ann[word_keep].reset_index(drop=True),
                   source=stimulus.source + f"; cut to about {int(max_words)} words (max_words)")
    return cut, tr_keep


def _finish(datasets, stimulus, tr_keep):
    """Put ``stimulus`` (maybe cut) in, cut responses to the kept TRs, renumber unmeasured TRs, drop bad voxels."""
    out = []
    for ds in datasets:
        meta = dict(ds.meta)
        if "unmeasured_trs" in meta:
            unmeasured = np.zeros(tr_keep.size, dtype=bool)
            unmeasured[list(meta["unmeasured_trs"])] = True
            meta["unmeasured_trs"] = tuple(int(t) for t in np.flatnonzero(unmeasured[tr_keep]))
        out.append(drop_bad_voxels(Dataset(stimulus=stimulus, subject=ds.subject, responses=ds.responses[tr_keep],
                                           voxel_coords=ds.voxel_coords, voxel_labels=ds.voxel_labels,
                                           voxel_is_language=ds.voxel_is_language, name=ds.name, meta=meta)))
    return out


def unmeasured_trs(dataset: Dataset) -> np.ndarray:
    """TRs a release had already trimmed (filled with the run mean), array of bool, shape (n_trs,)."""
    mask = np.zeros(dataset.stimulus.n_trs, dtype=bool)
    mask[list(dataset.meta.get("unmeasured_trs", ()))] = True
    return mask


def check_trim(dataset: Dataset, trim) -> None:
    """Raise :class:`DataError` if trimming ``trim`` TRs per run would keep an unmeasured TR.

    Parameters
    ----------
    dataset : Dataset
    trim : (int, int)
        TRs dropped at the start and end of each run (:func:`brainattr.features.trim_mask`).
    """
    from .features import trim_mask

    bad = unmeasured_trs(dataset) & trim_mask(dataset.stimulus.tr_runs, tuple(trim))
    if bad.any():
        raise DataError(f"Dataset '{dataset.name}' {dataset.subject}: trim={tuple(trim)} keeps {int(bad.sum())} TR(s) "
                        f"that the release had already removed (they hold the run mean, not data); use at least "
                        f"trim={tuple(dataset.meta.get('trim', HP_RELEASE_TRIM))}.")


# --------------------------------------------------------------------------------------------
# MATLAB helpers
# --------------------------------------------------------------------------------------------
def _mat_str(x) -> str:
    """A MATLAB string (char array, possibly wrapped in 1x1 cells) as str; empty arrays give ''."""
    while isinstance(x, np.ndarray):
        if x.size == 0:
            return ""
        if x.size > 1 and x.dtype.kind == "U" and all(len(c) <= 1 for c in x.ravel()):
            return "".join(x.ravel())
        if x.size > 1:
            raise DataError(f"expected one string in a MATLAB cell, got an array of shape {x.shape}.")
        x = x.ravel()[0]
    return "" if x is None else str(x)


def _mat_strs(x) -> list[str]:
    """A MATLAB cell array of strings (or one string) as a list of str."""
    if isinstance(x, np.ndarray) and x.dtype == object:
        return [_mat_str(v) for v in x.ravel()]
    s = _mat_str(x)
    return [s] if s else []


def _loadmat(path):
    from scipy.io import loadmat

    try:
        return loadmat(path, squeeze_me=True, struct_as_record=False)
    except NotImplementedError:
        raise DataError(f"{path} is a MATLAB v7.3 (HDF5) file; this loader reads the v5 files of the CMU "
                        f"release ({HP_CMU_URL}). Re-download the file.") from None
    except (ValueError, OSError, TypeError) as err:
        raise DataError(f"{path} could not be read as a MATLAB file ({err}); is the download complete?") from None


def _field(struct, name, path):
    if not hasattr(struct, name):
        raise DataError(f"{path}: the MATLAB struct has no field {name!r}; this does not look like the CMU "
                        f"Harry Potter release (fields: {getattr(struct, '_fieldnames', '?')}).")
    return getattr(struct, name)


# --------------------------------------------------------------------------------------------
# Harry Potter
# --------------------------------------------------------------------------------------------
def read_hp_mat(path) -> dict:
    """Read one subject file of the CMU release (``subject_N.mat``, Wehbe et al. 2014).

    Variables used: ``data`` (n_trs, n_voxels); ``time`` (n_trs, 2), TR start time in seconds and
    run (1-based); ``words`` (1, n_words) struct with ``text`` and ``start`` (seconds, same clock);
    ``meta`` with ``colToCoord`` (n_voxels, 3) 1-based voxel indices of the 3 mm grid,
    ``matrix`` (4, 4) map from those indices to MNI mm, ``colToROInum`` (n_voxels,) AAL region
    number (0: none) and ``ROInumToName`` (cell of names, number k at position k).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict with
        ``data`` float32 (n_trs, n_voxels), ``tr_times`` (n_trs,), ``tr_runs`` int (n_trs,) 0-based,
        ``words`` str (n_words,), ``word_onsets`` (n_words,), ``ijk`` (n_voxels, 3) 1-based grid
        indices, ``affine`` (4, 4), ``mni`` (n_voxels, 3) MNI mm, ``roi_names`` str (n_voxels,).
    """
    mat = _loadmat(path)
    missing = [k for k in ("data", "time", "words", "meta") if k not in mat]
    if missing:
        raise DataError(f"{path} lacks variable(s) {missing}; expected the CMU Harry Potter release "
                        "(data, time, words, meta).")
    data = np.asarray(mat["data"], dtype=np.float32)
    data = data.reshape(-1, 1) if data.ndim == 1 else data
    time = np.asarray(mat["time"], dtype=float).reshape(-1, 2)
    if time.shape[0] != data.shape[0]:
        raise DataError(f"{path}: 'time' has {time.shape[0]} rows but 'data' has {data.shape[0]}; one row per TR.")
    words_struct = np.atleast_1d(mat["words"])
    words = np.array([_mat_str(_field(w, "text", path)) for w in words_struct])
    onsets = np.array([float(np.squeeze(_field(w, "start", path))) for w in words_struct])
    meta = mat["meta"]
    ijk = np.asarray(_field(meta, "colToCoord", path), dtype=float).reshape(-1, 3)
    affine = np.asarray(_field(meta, "matrix", path), dtype=float).reshape(4, 4)
    roi_num = np.asarray(_field(meta, "colToROInum", path)).astype(int).ravel()
    names = _mat_strs(_field(meta, "ROInumToName", path))
    if ijk.shape[0] != data.shape[1] or roi_num.shape[0] != data.shape[1]:
        raise DataError(f"{path}: 'data' has {data.shape[1]} voxel columns but meta.colToCoord has {ijk.shape[0]} "
                        f"rows and meta.colToROInum {roi_num.shape[0]} entries; they must match.")
    roi_names = np.array([names[k - 1] if 1 <= k <= len(names) else "Not_labelled" for k in roi_num], dtype=str)
    runs = time[:, 1].astype(int)
    return dict(data=data, tr_times=time[:, 0], tr_runs=runs - runs.min(), words=words, word_onsets=onsets,
                ijk=ijk, affine=affine, mni=ijk_to_mni(ijk, affine), roi_names=roi_names)


def ijk_to_mni(ijk, affine):
    """MNI coordinates (mm) of voxel grid indices.

    The CMU release's ``meta.matrix`` is taken to follow SPM's convention (its data were
    preprocessed with SPM8): it maps 1-based MATLAB voxel indices, as stored in
    ``meta.colToCoord``, to mm.

    Parameters
    ----------
    ijk : array of shape (n_voxels, 3)
        1-based voxel indices.
    affine : array of shape (4, 4)

    Returns
    -------
    xyz : array of float, shape (n_voxels, 3)
    """
    ijk = np.asarray(ijk, dtype=float)
    return ijk @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def _check_mni(xyz, path):
    outside = ~np.all((xyz >= [-100, -130, -80]) & (xyz <= [100, 100, 110]), axis=1)
    if outside.mean() > 0.05:
        warnings.warn(f"{path}: {outside.mean():.0%} of the voxel coordinates fall outside the MNI brain's bounding "
                      "box; the meta.matrix convention (1-based indices) may not hold for this file.", stacklevel=3)


def read_story_features(path) -> dict:
    """Read the word feature annotations of the Wehbe release (``story_features.mat``).

    The file holds one struct array ``features``; each entry has ``type`` (feature family, e.g.
    ``"NNSE"``, ``"Part_of_speech"``; some entries are empty), ``names`` (its features) and
    ``values`` (n_words, n_features).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict of str -> (list of str, array of float of shape (n_words, n_features))
        Feature names and values per feature type.
    """
    mat = _loadmat(path)
    if "features" not in mat:
        raise DataError(f"{path} has no variable 'features'; expected the story_features.mat of the Wehbe release.")
    out = {}
    for entry in np.atleast_1d(mat["features"]):
        ftype = _mat_str(getattr(entry, "type", ""))
        values = np.asarray(getattr(entry, "values", np.zeros((0, 0))), dtype=float)
        if not ftype or values.size == 0:
            continue
        values = values.reshape(-1, 1) if values.ndim == 1 else values
        names = _mat_strs(getattr(entry, "names", ""))
        if len(names) != values.shape[1]:  # e.g. one name too many for "Visual"
            names = names[:values.shape[1]] if len(names) > values.shape[1] else \
                [f"{ftype}_{k}" for k in range(values.shape[1])]
        out[ftype] = (names, values)
    return out


def hp_word_categories(features: dict, n_words: int, categories=HP_FEATURE_CATEGORIES, skip_sticky=True):
    """Per-word booleans from the story features: one per feature type and one per category.

    A word has a feature type when any of that type's features is non-zero for it; it is in a
    category (semantic, syntactic, discourse) when it has any of the category's types, so a word
    can be in several. Features named ``*sticky*`` (which keep a value over the following words)
    are skipped unless a type has no other features.

    Parameters
    ----------
    features : dict
        Output of :func:`read_story_features`.
    n_words : int
    categories : dict of str -> tuple of str
        Category -> feature types (:data:`HP_FEATURE_CATEGORIES`).
    skip_sticky : bool

    Returns
    -------
    table : pandas.DataFrame with n_words rows
        Columns ``hp_<type>`` (bool) per feature type and ``is_<category>`` (bool) per category.
    dims : dict of str -> int
        Number of features used per type.
    """
    table, dims = {}, {}
    for ftype, (names, values) in features.items():
        if values.shape[0] != n_words:
            raise DataError(f"story features '{ftype}' have {values.shape[0]} rows but the stimulus has {n_words} "
                            "words; use the story_features.mat of the same release.")
        use = np.array(["sticky" not in n for n in names]) if skip_sticky else np.ones(len(names), bool)
        use = use if use.any() else np.ones(len(names), bool)
        table[f"hp_{ftype}"] = np.any(np.nan_to_num(values[:, use]) != 0, axis=1)
        dims[ftype] = int(use.sum())
    for cat, types in categories.items():
        absent = [t for t in types if t not in features]
        if absent:
            warnings.warn(f"story features lack type(s) {absent} of category '{cat}'; it uses the others.", stacklevel=2)
        cols = [table[f"hp_{t}"] for t in types if t in features]
        table[f"is_{cat}"] = np.any(cols, axis=0) if cols else np.zeros(n_words, dtype=bool)
    return pd.DataFrame(table), dims


def pad_trimmed_runs(data, tr_runs, trim=HP_RELEASE_TRIM):
    """Put responses a release trimmed per run back on the full TR grid.

    Parameters
    ----------
    data : array of shape (n_kept, n_voxels)
        Rows of the kept TRs, runs in order.
    tr_runs : array of int, shape (n_trs,)
        Run of every TR of the full grid.
    trim : (int, int)
        TRs the release dropped at the start and end of each run.

    Returns
    -------
    responses : array of float32, shape (n_trs, n_voxels)
        Dropped rows hold the voxel's mean over the kept rows of the same run.
    measured : array of bool, shape (n_trs,)
    """
    tr_runs = np.asarray(tr_runs)
    start, end = trim
    measured = np.zeros(tr_runs.size, dtype=bool)
    for run in np.unique(tr_runs):
        idx = np.flatnonzero(tr_runs == run)
        measured[idx[start: max(idx.size - end, start)]] = True
    if measured.sum() != data.shape[0]:
        raise DataError(f"the responses have {data.shape[0]} rows; the {tr_runs.size} TRs of runs_fmri.npy minus "
                        f"{start} + {end} per run give {int(measured.sum())}, and untrimmed data would have "
                        f"{tr_runs.size}. Use data, time and run files of the same release.")
    responses = np.empty((tr_runs.size, data.shape[1]), dtype=np.float32)
    responses[measured] = data
    for run in np.unique(tr_runs):
        in_run = tr_runs == run
        responses[in_run & ~measured] = responses[in_run & measured].mean(axis=0)
    return responses, measured


def _npy_dir(root: Path) -> Path:
    return root / "fMRI" if (root / "fMRI").is_dir() else root


def _hp_layout(root: Path, layout: str) -> str:
    if layout in ("mat", "npy"):
        return layout
    npy = _npy_dir(root)
    if any((npy / f).exists() for f in _HP_NPY_FILES) or any(npy.glob("data_subject_*.npy")):
        return "npy"
    if any(root.glob("subject_*.mat")):
        return "mat"
    return "none"


def _hp_numbers(subjects):
    if isinstance(subjects, (int, np.integer)):
        given, numbers = [str(subjects)], list(range(1, int(subjects) + 1))
    else:
        given = _subject_list(subjects)
        numbers = [HP_NPY_SUBJECTS.index(s.upper()) + 1 if s.upper() in HP_NPY_SUBJECTS else _subject_number(s)
                   for s in given]
    if not numbers or any(k is None or not 1 <= k <= HP_N_SUBJECTS for k in numbers):
        raise DataError(f"Harry Potter subjects are sub-01 ... sub-{HP_N_SUBJECTS:02d} (or the NumPy release's letters "
                        f"{', '.join(HP_NPY_SUBJECTS)}, or an int 1-{HP_N_SUBJECTS}); got {given}.")
    return numbers


def _hp_instructions(root):
    return (f"Harry Potter (Wehbe et al. 2014) comes in two layouts:\n"
            f"  (a) CMU release: {root}/subject_1.mat ... subject_8.mat and {root}/story_features.mat, from "
            f"{HP_CMU_URL} (`python -m brainattr download hp` fetches them; needs pooch);\n"
            f"  (b) preprocessed release (Toneva & Wehbe 2019): {root}/fMRI/data_subject_F.npy ... data_subject_N.npy, "
            f"time_fmri.npy, runs_fmri.npy, time_words_fmri.npy, words_fmri.npy, from the Google Drive folder "
            f"{HP_DRIVE_URL} (download by hand), plus {root}/story_features.mat as in (a) and, for the language "
            f"ROIs, {root}/HP_subj_roi_inds.npy from {HP_GITHUB_URL}HP_subj_roi_inds.npy.")


def load_hp(subjects=("sub-01",), *, data_home=None, layout="auto", max_words=None, annotate=True):
    """Harry Potter chapter 9 (Wehbe et al. 2014), one Dataset per subject.

    Parameters
    ----------
    subjects : sequence of str, str or int
        ``sub-01`` ... ``sub-08`` (``sub-0k`` is ``subject_k.mat``, or the k-th letter of
        :data:`HP_NPY_SUBJECTS`), letters, or an int n for the first n.
    data_home : str or Path or None
        Folder holding ``hp/`` (default :func:`data_root`).
    layout : {"auto", "mat", "npy"}
        "auto": the NumPy release when its files are there, else the MATLAB release.
    max_words : int or None
        See :func:`cut_stimulus`.
    annotate : bool
        Attach spaCy annotations (the story-feature columns are always attached when
        ``story_features.mat`` is there).

    Returns
    -------
    list of Dataset
        ``name="hp"``; ``meta`` holds ``layout``, ``source_subject``, ``trim`` (the pipeline trim
        the release needs), ``unmeasured_trs`` (tuple of TR indices), ``hp_feature_dims`` and,
        for the MATLAB release, ``affine`` and ``voxel_ijk`` (n_voxels, 3).
    """
    if layout not in ("auto", "mat", "npy"):
        raise DataError(f"layout must be 'auto', 'mat' or 'npy', got {layout!r}.")
    root = data_root(data_home) / "hp"
    numbers = _hp_numbers(subjects)
    layout = _hp_layout(root, layout)
    if layout == "none":
        missing = [root / f"subject_{k}.mat" for k in numbers] + \
                  [root / "fMRI" / f"data_subject_{HP_NPY_SUBJECTS[k - 1]}.npy" for k in numbers] + \
                  [root / "fMRI" / f for f in _HP_NPY_FILES]
        raise _missing_error("Harry Potter data not found (neither layout)", data_root(data_home), missing,
                             _hp_instructions(root))
    if layout == "mat":
        datasets, stimulus = _load_hp_mat(root, numbers, annotate)
    else:
        datasets, stimulus = _load_hp_npy(root, numbers, annotate)
    cut, tr_keep = cut_stimulus(stimulus, max_words)
    return _finish(datasets, cut, tr_keep)


def _hp_stimulus(root, words, onsets, tr_times, tr_runs, annotate, source):
    runs = word_runs_from_onsets(onsets, tr_times, tr_runs)
    ann = _annotations(words, HP_CHARACTERS, annotate)
    ann["is_format_mark"] = [w == "+" or "@" in w for w in words]
    dims = {}
    path = root / "story_features.mat"
    if path.exists():
        table, dims = hp_word_categories(read_story_features(path), len(words))
        ann = pd.concat([ann, table], axis=1)
    else:
        warnings.warn(f"{path} not found: the stimulus has no is_semantic / is_syntactic / is_discourse columns. "
                      f"Get story_features.mat from {HP_CMU_URL} (or `python -m brainattr download hp`).", stacklevel=3)
    stim = Stimulus(name="harry_potter_ch9", words=words, word_onsets=onsets, word_runs=runs, tr_times=tr_times,
                    tr_runs=tr_runs, tr=HP_TR, annotations=ann, source=source)
    return stim, dims


def _load_hp_mat(root, numbers, annotate):
    import scipy.signal

    paths = [root / f"subject_{k}.mat" for k in numbers]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise _missing_error("Harry Potter (CMU release) files not found", root.parent, missing, _hp_instructions(root))
    datasets, stimulus, dims = [], None, {}
    for k, path in zip(numbers, paths):
        sub = read_hp_mat(path)
        if stimulus is None:
            stimulus, dims = _hp_stimulus(root, sub["words"], sub["word_onsets"], sub["tr_times"], sub["tr_runs"],
                                          annotate, source=f"Harry Potter and the Sorcerer's Stone, chapter 9 "
                                          f"(Wehbe et al. 2014), CMU release {HP_CMU_URL}")
        elif not (np.array_equal(sub["words"], stimulus.words) and np.allclose(sub["word_onsets"], stimulus.word_onsets)
                  and np.allclose(sub["tr_times"], stimulus.tr_times)):
            raise DataError(f"{path}: words or TR times differ from {paths[0]}; all subjects must come from one release.")
        _check_mni(sub["mni"], path)
        data = sub["data"]
        for run in np.unique(sub["tr_runs"]):  # the release is not detrended (its README); remove linear drifts
            idx = sub["tr_runs"] == run
            data[idx] = scipy.signal.detrend(data[idx], axis=0, type="linear")
        short = pd.Series(sub["roi_names"]).map(HP_AAL_LANGUAGE)
        labels = np.where(short.notna(), short.fillna(""), sub["roi_names"])
        meta = dict(layout="mat", source_subject=f"subject_{k}", trim=HP_RELEASE_TRIM, unmeasured_trs=(),
                    hp_feature_dims=dims, affine=tuple(map(tuple, sub["affine"])), voxel_ijk=sub["ijk"],
                    preprocessing="CMU release (realigned, slice-timed, MNI-normalized); linear detrend per run here",
                    language_set="AAL: " + ", ".join(HP_AAL_LANGUAGE))
        datasets.append(Dataset(stimulus=stimulus, subject=f"sub-{k:02d}", responses=data, voxel_coords=sub["mni"],
                                voxel_labels=labels, voxel_is_language=short.notna().to_numpy(), name="hp", meta=meta))
    return datasets, stimulus


def _np_load(path, allow_pickle=False):
    try:
        return np.load(path, allow_pickle=allow_pickle)
    except ValueError:
        if allow_pickle:
            raise
        return np.load(path, allow_pickle=True)  # object-dtype word arrays of the release
    except OSError as err:
        raise DataError(f"{path} could not be read as a NumPy file ({err}); is the download complete?") from None


def read_hp_rois(path, letter, n_voxels):
    """Language ROIs of one subject of the NumPy release (``HP_subj_roi_inds.npy``).

    The file is a pickled dict: subject letter -> ROI name -> mask of shape (n_voxels,); ``"all"``
    is the union of the others. It is loaded with ``allow_pickle=True``: use only the copy
    named in the book chapter.

    Returns
    -------
    labels : array of str, shape (n_voxels,)
        First ROI holding the voxel, else ``"other"``.
    is_language : array of bool, shape (n_voxels,)
        The ``"all"`` mask (the union of the ROIs when there is no ``"all"``).
    """
    rois = np.load(path, allow_pickle=True)
    rois = rois.item() if isinstance(rois, np.ndarray) and rois.dtype == object and rois.ndim == 0 else rois
    if letter not in rois:
        raise DataError(f"{path} has no ROIs for subject {letter!r} (it has {sorted(rois)}).")
    masks = {name: np.asarray(m).astype(bool).ravel() for name, m in rois[letter].items()}
    bad = {name: m.size for name, m in masks.items() if m.size != n_voxels}
    if bad:
        raise DataError(f"{path}: ROI masks of subject {letter} have sizes {bad}, but its data have {n_voxels} voxels.")
    parts = [(name, m) for name, m in masks.items() if name != "all"]
    labels = np.full(n_voxels, "other", dtype=object)
    for name, m in reversed(parts):  # the first ROI in file order wins
        labels[m] = name
    union = masks["all"] if "all" in masks else np.zeros(n_voxels, dtype=bool)
    for _, m in ([] if "all" in masks else parts):
        union = union | m
    return labels.astype(str), union


def _load_hp_npy(root, numbers, annotate):
    folder = _npy_dir(root)
    words_path = folder / "words_fmri.npy"
    if not words_path.exists() and (root / "stimuli_words.npy").exists():
        words_path = root / "stimuli_words.npy"  # the same 5,176 words, from the brain_language_nlp repository
    needed = [folder / f for f in _HP_NPY_FILES[:3]] + [words_path] + \
             [folder / f"data_subject_{HP_NPY_SUBJECTS[k - 1]}.npy" for k in numbers]
    missing = [p for p in needed if not p.exists()]
    if missing:
        raise _missing_error("Harry Potter (preprocessed NumPy release) files not found", root.parent, missing,
                             _hp_instructions(root))
    tr_times = np.asarray(_np_load(folder / "time_fmri.npy"), dtype=float).ravel()
    runs = np.asarray(_np_load(folder / "runs_fmri.npy")).astype(int).ravel()
    onsets = np.asarray(_np_load(folder / "time_words_fmri.npy"), dtype=float).ravel()
    words = np.asarray(_np_load(words_path)).astype(str).ravel()
    if tr_times.size != runs.size or onsets.size != words.size:
        raise DataError(f"{folder}: time_fmri.npy ({tr_times.size}) and runs_fmri.npy ({runs.size}) must have one "
                        f"entry per TR, time_words_fmri.npy ({onsets.size}) and the words ({words.size}) one per word.")
    stimulus, dims = _hp_stimulus(root, words, onsets, tr_times, runs - runs.min(), annotate,
                                  source="Harry Potter and the Sorcerer's Stone, chapter 9 (Wehbe et al. 2014), "
                                         "preprocessed release of Toneva & Wehbe (2019)")
    roi_path = next((p for p in (root / "HP_subj_roi_inds.npy", folder / "HP_subj_roi_inds.npy") if p.exists()), None)
    if roi_path is None:
        warnings.warn(f"{root / 'HP_subj_roi_inds.npy'} not found: no voxel is marked as language. Get it from "
                      f"{HP_GITHUB_URL}HP_subj_roi_inds.npy.", stacklevel=3)
    datasets = []
    for k in numbers:
        letter = HP_NPY_SUBJECTS[k - 1]
        data = np.asarray(_np_load(folder / f"data_subject_{letter}.npy"), dtype=np.float32)
        if data.shape[0] == stimulus.n_trs:
            responses, measured = data, np.ones(stimulus.n_trs, dtype=bool)
        else:
            responses, measured = pad_trimmed_runs(data, stimulus.tr_runs, HP_RELEASE_TRIM)
        n_vox = responses.shape[1]
        if roi_path is not None:
            labels, is_lang = read_hp_rois(roi_path, letter, n_vox)
        else:
            labels, is_lang = np.full(n_vox, "other"), np.zeros(n_vox, dtype=bool)
        meta = dict(layout="npy", source_subject=letter, trim=HP_RELEASE_TRIM,
                    unmeasured_trs=tuple(int(t) for t in np.flatnonzero(~measured)), hp_feature_dims=dims,
                    preprocessing="Toneva & Wehbe (2019) release: detrended, smoothed, trimmed 20 + 15 TRs per run",
                    coordinates="none in the release (voxels are in each subject's own space)",
                    language_set="HP_subj_roi_inds.npy 'all'" if roi_path is not None else "none")
        datasets.append(Dataset(stimulus=stimulus, subject=f"sub-{k:02d}", responses=responses,
                                voxel_coords=np.full((n_vox, 3), np.nan), voxel_labels=labels,
                                voxel_is_language=is_lang, name="hp", meta=meta))
    return datasets, stimulus


# --------------------------------------------------------------------------------------------
# TextGrid (Praat) word timings
# --------------------------------------------------------------------------------------------
_TG_TOKEN = re.compile(r'"((?:[^"]|"")*)"|(<exists>|<absent>)|(?<![\w.])(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)(?![\w.])')


def _textgrid_tokens(text: str) -> list:
    text = re.sub(r"\[\s*\d*\s*\]", "", text)  # "item [1]:", "intervals [3]:" carry no data
    out = []
    for m in _TG_TOKEN.finditer(text):
        if m.group(1) is not None:
            out.append(m.group(1).replace('""', '"'))
        elif m.group(2) is not None:
            out.append(m.group(2))
        else:
            out.append(float(m.group(3)))
    return out


def read_textgrid(path) -> dict:
    """Read a Praat TextGrid (long or short text format, UTF-8 or UTF-16).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict of str -> pandas.DataFrame
        One table per tier, in file order, with columns ``start``, ``end`` (seconds) and ``text``
        (a point tier has ``start == end``).
    """
    raw = Path(path).read_bytes()
    enc = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    tokens = _textgrid_tokens(raw.decode(enc, errors="replace"))
    try:
        if not str(tokens[0]).startswith("ooTextFile") or tokens[1] != "TextGrid":
            raise ValueError("not a TextGrid text file")
        pos = 4
        if tokens[pos] in ("<exists>", "<absent>"):
            if tokens[pos] == "<absent>":
                return {}
            pos += 1
        n_tiers, pos = int(tokens[pos]), pos + 1
        tiers = {}
        for _ in range(n_tiers):
            kind, name, n = tokens[pos], str(tokens[pos + 1]), int(tokens[pos + 4])
            pos += 5
            if kind == "IntervalTier":
                rows = [tokens[pos + 3 * i: pos + 3 * i + 3] for i in range(n)]
                pos += 3 * n
            elif kind == "TextTier":
                rows = [[tokens[pos + 2 * i], tokens[pos + 2 * i], tokens[pos + 2 * i + 1]] for i in range(n)]
                pos += 2 * n
            else:
                raise ValueError(f"unknown tier class {kind!r}")
            table = pd.DataFrame(rows, columns=["start", "end", "text"])
            tiers[name] = table.astype({"start": float, "end": float, "text": str})
        return tiers
    except (IndexError, ValueError, TypeError) as err:
        raise DataError(f"{path} is not a readable Praat TextGrid ({err}).") from None


def textgrid_words(path, tier=None):
    """Words and onsets of a TextGrid's word tier, silences and noise labels dropped.

    Parameters
    ----------
    path : str or Path
    tier : str or None
        Tier name; default the tier named "word"/"words" (any case), else the last tier.

    Returns
    -------
    words : array of str, shape (n_words,)
    onsets : array of float, shape (n_words,)
        Seconds from the start of the audio.
    """
    tiers = read_textgrid(path)
    if not tiers:
        raise DataError(f"{path} has no tiers.")
    if tier is None:
        tier = next((n for n in tiers if n.strip().lower() in ("word", "words")), list(tiers)[-1])
    if tier not in tiers:
        raise DataError(f"{path} has no tier {tier!r} (tiers: {list(tiers)}).")
    table = tiers[tier]
    text = table["text"].str.strip()
    keep = ~text.str.lower().str.strip("{}<>").isin(TEXTGRID_SKIP)
    return text[keep].to_numpy(dtype=str), table["start"][keep].to_numpy(dtype=float)


# --------------------------------------------------------------------------------------------
# Moth Radio Hour
# --------------------------------------------------------------------------------------------
def noise_ceiling(repeats, bias_correction=True, zscore=True):
    """Explainable variance of each voxel from repeated presentations of one stimulus.

    The share of a voxel's variance that repeats across presentations: the variance over time
    of the mean over repeats, divided by the mean over repeats of the variance over time, with
    the bias correction ``ev - (1 - ev) / (n_repeats - 1)`` (Schoppe et al. 2016; the
    ``explainable_variance`` of the Gallant lab's voxelwise tutorials). Identical repeats give 1,
    independent noise about 0 (it can be negative).

    Parameters
    ----------
    repeats : array of shape (n_repeats, n_trs, n_voxels)
    bias_correction : bool
    zscore : bool
        Z-score every repeat over time first.

    Returns
    -------
    ev : array of float64, shape (n_voxels,)
        NaN for a voxel constant in some repeat.
    """
    Y = np.asarray(repeats, dtype=np.float64)
    if Y.ndim != 3 or Y.shape[0] < 2 or Y.shape[1] < 2:
        raise DataError(f"noise_ceiling needs repeats of shape (n_repeats >= 2, n_trs >= 2, n_voxels), got {Y.shape}.")
    with np.errstate(invalid="ignore", divide="ignore"):
        if zscore:
            Y = (Y - Y.mean(axis=1, keepdims=True)) / Y.std(axis=1, keepdims=True)
        mean_var = Y.var(axis=1, ddof=1).mean(axis=0)
        var_mean = Y.mean(axis=0).var(axis=0, ddof=1)
        ev = var_mean / mean_var
    if bias_correction:
        ev = ev - (1 - ev) / (Y.shape[0] - 1)
    return ev


def explainable_variance(dataset: Dataset):
    """The per-voxel explainable variance a loader stored, array of shape (n_voxels,), or None."""
    ev = dataset.meta.get("explainable_variance")
    return None if ev is None else np.asarray(ev)


def _moth_ids(subjects):
    if isinstance(subjects, (int, np.integer)):
        if not 1 <= int(subjects) <= len(MOTH_SUBJECTS):
            raise DataError(f"the Moth release has {len(MOTH_SUBJECTS)} subjects; got {subjects}.")
        return list(MOTH_SUBJECTS[: int(subjects)])
    ids = []
    for s in _subject_list(subjects):
        k = _subject_number(s)
        if k is None:
            raise DataError(f"Moth subjects are sub-01-style ids ({', '.join('sub-' + s for s in MOTH_SUBJECTS)} "
                            f"in the public release) or an int; got {s!r}.")
        ids.append(f"{k:02d}")
    return ids


def _moth_instructions(root):
    return (f"Moth Radio Hour reading (Deniz et al. 2019), public release {MOTH_GIN_URL} (subjects "
            f"{', '.join(MOTH_SUBJECTS)}):\n"
            f"  {root}/responses/subjectXX_reading_fmri_data_trn.hdf and ..._val.hdf (release folder responses/),\n"
            f"  {root}/mappers/subjectXX_mappers.hdf (optional, release folder mappers/: ROI masks for the language set),\n"
            f"  {root}/textgrids/story_01.TextGrid ... story_11.TextGrid, or <story name>.TextGrid (word timings; the "
            f"TextGrids of OpenNeuro ds003020, {MOTH_TEXTGRID_URL}<name>.TextGrid).\n"
            f"`python -m brainattr download moth` fetches them (needs pooch).")


def _moth_story_keys(trn_path, val_path) -> list:
    """Story keys of a subject's training and validation files, without reading the data."""
    import h5py

    keys = []
    for path in (trn_path, val_path):
        try:
            with h5py.File(path, "r") as f:
                keys += sorted(k for k in f.keys() if re.fullmatch(r"story_\d+", k))
        except OSError as err:
            raise DataError(f"{path} could not be read as HDF5 ({err}); is the download complete (not a git-annex "
                            "pointer)?") from None
    return keys


def read_moth_responses(trn_path, val_path):
    """Read one subject's responses of the Moth reading release.

    Parameters
    ----------
    trn_path, val_path : str or Path
        ``subjectXX_reading_fmri_data_trn.hdf`` (one dataset ``story_NN`` of shape
        (n_trs, n_voxels) per training story) and ``..._val.hdf`` (the validation story,
        shape (n_repeats, n_trs, n_voxels)).

    Returns
    -------
    runs : dict of str -> array of float32, shape (n_trs_story, n_voxels)
        Training stories in key order, then the validation story (mean of its repeats).
    repeats : array of float32, shape (n_repeats, n_trs_val, n_voxels)
    val_story : str
    """
    import h5py

    runs = {}
    try:
        with h5py.File(trn_path, "r") as f:
            for key in sorted(k for k in f.keys() if re.fullmatch(r"story_\d+", k)):
                runs[key] = np.asarray(f[key][()], dtype=np.float32)
        with h5py.File(val_path, "r") as f:
            keys = sorted(k for k in f.keys() if re.fullmatch(r"story_\d+", k))
            if len(keys) != 1:
                raise DataError(f"{val_path} should hold one validation story, found {keys}.")
            val_story, repeats = keys[0], np.asarray(f[keys[0]][()], dtype=np.float32)
    except OSError as err:
        raise DataError(f"{trn_path} or {val_path} could not be read as HDF5 ({err}); is the download complete "
                        "(not a git-annex pointer)?") from None
    repeats = repeats[None] if repeats.ndim == 2 else repeats
    if not runs:
        raise DataError(f"{trn_path} holds no story_NN datasets.")
    n_vox = {a.shape[-1] for a in runs.values()} | {repeats.shape[-1]}
    if len(n_vox) != 1 or any(a.ndim != 2 for a in runs.values()):
        raise DataError(f"{trn_path} / {val_path}: stories must be (n_trs, n_voxels) with one voxel count; got "
                        f"{ {k: a.shape for k, a in runs.items()} } and {repeats.shape}.")
    runs[val_story] = repeats.mean(axis=0)
    return runs, repeats, val_story


def read_moth_rois(path, n_voxels, language_rois=MOTH_LANGUAGE_ROIS):
    """ROI labels from a subject's mappers file (datasets ``roi_mask_<ROI>`` of shape (n_voxels,)).

    Returns
    -------
    labels : array of str, shape (n_voxels,)
        The ROI with the largest mask value (``"cortex"`` where none is non-zero).
    is_language : array of bool, shape (n_voxels,)
        Non-zero in any of ``language_rois``.
    """
    import h5py

    masks = {}
    with h5py.File(path, "r") as f:
        for key in f.keys():
            if key.startswith("roi_mask_"):
                masks[key[len("roi_mask_"):]] = np.asarray(f[key][()], dtype=float).ravel()
    bad = {k: m.size for k, m in masks.items() if m.size != n_voxels}
    if bad:
        raise DataError(f"{path}: ROI masks have sizes {bad} but the responses have {n_voxels} voxels.")
    labels = np.full(n_voxels, "cortex", dtype=object)
    if masks:
        names = list(masks)
        stack = np.stack([masks[n] for n in names])
        best = stack.argmax(axis=0)
        has = stack.max(axis=0) > 0
        labels[has] = np.asarray(names, dtype=object)[best[has]]
    present = [r for r in language_rois if r in masks]
    is_lang = np.any([masks[r] > 0 for r in present], axis=0) if present else np.zeros(n_voxels, dtype=bool)
    return labels.astype(str), is_lang


def _find_textgrid(root: Path, story: str):
    names = [story] + ([MOTH_STORIES[story]] if story in MOTH_STORIES else [])
    for folder in (root / "textgrids", root / "stimuli", root / "stimuli" / "TextGrids"):
        for name in names:
            if (folder / f"{name}.TextGrid").exists():
                return folder / f"{name}.TextGrid"
    return None


def _moth_stimulus(root, story_trs: dict, annotate):
    words, onsets, runs, tr_times, tr_runs = [], [], [], [], []
    start = 0.0
    for run, (story, n_trs) in enumerate(story_trs.items()):
        w, t = textgrid_words(_find_textgrid(root, story))
        words.append(w)
        onsets.append(start + MOTH_WORD_OFFSET + t)
        runs.append(np.full(w.size, run))
        tr_times.append(start + MOTH_TR * np.arange(n_trs))
        tr_runs.append(np.full(n_trs, run))
        start += MOTH_TR * n_trs
    words = np.concatenate(words)
    ann = _annotations(words, (), annotate)
    ann["story"] = np.concatenate([np.full(r.size, s) for s, r in zip(story_trs, runs)])
    return Stimulus(name="moth_reading", words=words, word_onsets=np.concatenate(onsets), word_runs=np.concatenate(runs),
                    tr_times=np.concatenate(tr_times), tr_runs=np.concatenate(tr_runs), tr=MOTH_TR, annotations=ann,
                    source=f"The Moth Radio Hour stories, read word by word (Deniz et al. 2019); release {MOTH_GIN_URL}")


def load_moth(subjects=("sub-01",), *, data_home=None, max_words=None, annotate=True):
    """Moth Radio Hour, reading (Deniz et al. 2019), one Dataset per subject.

    The runs are the stories: the training stories in release order, then the validation story
    with the mean of its repeats. ``meta["explainable_variance"]`` (n_voxels,) is computed from
    the validation story's repeats (:func:`noise_ceiling`, :data:`MOTH_TRIM` TRs dropped at each end).

    Parameters
    ----------
    subjects : sequence of str, str or int
        ``sub-01``-style ids (public release: 01, 02, 03, 05, 07, 08) or an int n for the first n.
    data_home : str or Path or None
        Folder holding ``moth/`` (default :func:`data_root`).
    max_words : int or None
        See :func:`cut_stimulus`.
    annotate : bool
        Attach spaCy annotations.

    Returns
    -------
    list of Dataset
        ``name="moth"``; voxel coordinates are NaN (the release has cortical voxels in each
        subject's own space, no MNI coordinates).
    """
    root = data_root(data_home) / "moth"
    ids = _moth_ids(subjects)
    paths = {s: (root / "responses" / f"subject{s}_reading_fmri_data_trn.hdf",
                 root / "responses" / f"subject{s}_reading_fmri_data_val.hdf") for s in ids}
    missing = [p for pair in paths.values() for p in pair if not p.exists()]
    stories = _moth_story_keys(*paths[ids[0]]) if not missing else list(MOTH_STORIES)
    missing += [root / "textgrids" / f"{story}.TextGrid" for story in stories if _find_textgrid(root, story) is None]
    if missing:
        raise _missing_error("Moth Radio Hour (reading) files not found", root.parent, missing, _moth_instructions(root))
    datasets, stimulus, story_trs = [], None, None
    for s in ids:
        runs, repeats, val_story = read_moth_responses(*paths[s])
        trs = {story: a.shape[0] for story, a in runs.items()}
        if stimulus is None:
            story_trs, stimulus = trs, _moth_stimulus(root, trs, annotate)
        elif trs != story_trs:
            raise DataError(f"subject {s}: stories and TR counts {trs} differ from subject {ids[0]}'s {story_trs}.")
        n_vox = repeats.shape[-1]
        mapper = root / "mappers" / f"subject{s}_mappers.hdf"
        if mapper.exists():
            labels, is_lang = read_moth_rois(mapper, n_vox)
        else:
            warnings.warn(f"{mapper} not found: no voxel is marked as language. Get it from {MOTH_GIN_URL} (mappers/).",
                          stacklevel=2)
            labels, is_lang = np.full(n_vox, "cortex"), np.zeros(n_vox, dtype=bool)
        a, b = MOTH_TRIM
        meta = dict(layout="gin", source_subject=f"subject{s}", trim=MOTH_TRIM, val_story=val_story,
                    n_repeats=int(repeats.shape[0]), language_set="mappers roi_mask_" + "/".join(MOTH_LANGUAGE_ROIS),
                    explainable_variance=noise_ceiling(repeats[:, a: repeats.shape[1] - b]) if repeats.shape[0] > 1
                    else np.full(n_vox, np.nan),
                    coordinates="none in the release (cortical voxels in each subject's own space)")
        datasets.append(Dataset(stimulus=stimulus, subject=f"sub-{s}", responses=np.concatenate(list(runs.values())),
                                voxel_coords=np.full((n_vox, 3), np.nan), voxel_labels=labels,
                                voxel_is_language=is_lang, name="moth", meta=meta))
    cut, tr_keep = cut_stimulus(stimulus, max_words)
    return _finish(datasets, cut, tr_keep)


# --------------------------------------------------------------------------------------------
# Download (optional; pooch)
# --------------------------------------------------------------------------------------------
def download_list(name, subjects=None):
    """Files ``python -m brainattr download`` fetches, as (list of candidate URLs, path under the data root).

    Parameters
    ----------
    name : {"hp", "moth"}
    subjects : sequence or None
        Default: all subjects of the release.

    Returns
    -------
    list of (list of str, str)
    """
    if name == "hp":
        numbers = _hp_numbers(subjects if subjects is not None else HP_N_SUBJECTS)
        files = [([f"{HP_CMU_URL}subject_{k}.mat"], f"hp/subject_{k}.mat") for k in numbers]
        return files + [([f"{HP_CMU_URL}story_features.mat", f"{HP_GITHUB_URL}story_features.mat"],
                         "hp/story_features.mat")]
    if name == "moth":
        ids = _moth_ids(subjects if subjects is not None else len(MOTH_SUBJECTS))
        raw = f"{MOTH_GIN_URL}/raw/master/"
        files = [([f"{raw}responses/subject{s}_reading_fmri_data_{split}.hdf"],
                  f"moth/responses/subject{s}_reading_fmri_data_{split}.hdf") for s in ids for split in ("trn", "val")]
        files += [([f"{raw}mappers/subject{s}_mappers.hdf"], f"moth/mappers/subject{s}_mappers.hdf") for s in ids]
        return files + [([f"{MOTH_TEXTGRID_URL}{story}.TextGrid"], f"moth/textgrids/{key}.TextGrid")
                        for key, story in MOTH_STORIES.items()]
    raise DataError(f"no download for {name!r}; available: hp (CMU release), moth. The preprocessed HP release is "
                    f"on Google Drive ({HP_DRIVE_URL}) and is downloaded by hand.")


def download(name, data_home=None, subjects=None, progress=True) -> list:
    """Download a dataset's files into the data root with pooch (never called at import or in tests).

    Files already present are kept. No checksums are published for these files, so none are
    checked; pooch logs the SHA-256 of what it downloads.

    Returns
    -------
    list of Path
    """
    try:
        import pooch
    except ImportError:
        raise DataError("downloading needs pooch: `pip install 'pooch>=1.8'` (or `pip install -e '.[download]'`), "
                        "or fetch the files by hand (book chapter 'Use the real data').") from None
    root = data_root(data_home)
    out = []
    for urls, rel in download_list(name, subjects):
        target = root / rel
        if target.exists():
            out.append(target)
            continue
        errors = []
        for url in urls:
            try:
                pooch.retrieve(url, known_hash=None, fname=target.name, path=target.parent, progressbar=progress)
                break
            except Exception as err:  # network errors differ by backend; try the next copy
                errors.append(f"{url}: {err}")
        else:
            raise DataError(f"could not download {rel}:\n  " + "\n  ".join(errors))
        out.append(target)
    return out
