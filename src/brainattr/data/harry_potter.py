"""Harry Potter chapter 9 (Wehbe et al. 2014) in the :mod:`brainattr.schema` schema.

8 subjects, 5,176 words at 0.5 s each, TR 2 s, 4 runs. Two on-disk layouts: the CMU MATLAB
release (``subject_N.mat``, layout ``"mat"``) and the preprocessed NumPy release of Toneva & Wehbe
2019 (``data_subject_F.npy`` ..., layout ``"npy"``). ``load_dataset("hp")`` picks the NumPy release
when it is there, else the MATLAB one; ``"hp-mat"`` and ``"hp-npy"`` force one. Files, under
``<data_home>/hp/`` (:func:`brainattr.data.data_root`)::

    subject_1.mat ... subject_8.mat      layout "mat"
    story_features.mat                   word feature annotations (both layouts)
    fMRI/data_subject_F.npy ... _N.npy   layout "npy", with time_fmri.npy, runs_fmri.npy,
                                         time_words_fmri.npy, words_fmri.npy
    HP_subj_roi_inds.npy                 optional: language ROIs for layout "npy"

The NumPy release already dropped the first 20 and last 15 TRs of each run; they are put back on
the full TR grid, hold the run mean and are listed in ``meta["unmeasured_trs"]``. The pipeline's
own trimming (:data:`brainattr.trs.TRIM` = (20, 15)) removes exactly those rows again, so nothing
is trimmed twice; :func:`brainattr.data.check_trim` raises if a smaller trim would keep them.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..schema import DataError, Dataset, Stimulus
from ._common import (cut_stimulus, data_root, finish_datasets, missing_files_error, subject_list, subject_number,
                      word_runs_from_onsets)
from .annotate import word_annotations

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
#: short labels of :data:`brainattr.data.atlas.LANGUAGE_ROIS` where they correspond.
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
    from scipy.io import loadmat  # deferred: scipy.io is only needed to read MATLAB files

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
        given = subject_list(subjects)
        numbers = [HP_NPY_SUBJECTS.index(s.upper()) + 1 if s.upper() in HP_NPY_SUBJECTS else subject_number(s)
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
        raise missing_files_error("Harry Potter data not found (neither layout)", data_root(data_home), missing,
                             _hp_instructions(root))
    if layout == "mat":
        datasets, stimulus = _load_hp_mat(root, numbers, annotate)
    else:
        datasets, stimulus = _load_hp_npy(root, numbers, annotate)
    cut, tr_keep = cut_stimulus(stimulus, max_words)
    return finish_datasets(datasets, cut, tr_keep)


def _hp_stimulus(root, words, onsets, tr_times, tr_runs, annotate, source):
    runs = word_runs_from_onsets(onsets, tr_times, tr_runs)
    ann = word_annotations(words, HP_CHARACTERS, annotate)
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
    import scipy.signal  # deferred: scipy.signal is only needed for the MATLAB release

    paths = [root / f"subject_{k}.mat" for k in numbers]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise missing_files_error("Harry Potter (CMU release) files not found", root.parent, missing, _hp_instructions(root))
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
        raise missing_files_error("Harry Potter (preprocessed NumPy release) files not found", root.parent, missing,
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


def hp_download_list(subjects=None) -> list:
    """Files of the CMU release that ``python -m brainattr download hp`` fetches.

    Parameters
    ----------
    subjects : sequence, int or None
        Default: all 8 subjects.

    Returns
    -------
    list of (list of str, str)
        Candidate URLs and the path under the data root, per file.
    """
    numbers = _hp_numbers(subjects if subjects is not None else HP_N_SUBJECTS)
    files = [([f"{HP_CMU_URL}subject_{k}.mat"], f"hp/subject_{k}.mat") for k in numbers]
    return files + [([f"{HP_CMU_URL}story_features.mat", f"{HP_GITHUB_URL}story_features.mat"],
                     "hp/story_features.mat")]
