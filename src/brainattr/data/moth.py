"""Moth Radio Hour stories read word by word (Deniz et al. 2019) in the :mod:`brainattr.schema` schema.

The public release on gin.g-node.org (6 subjects; the paper used 9): 10 training stories plus one
validation story shown twice, TR 2.0045 s. The runs of the Dataset are the stories; the
validation story's repeats give each voxel's explainable variance
(:func:`brainattr.metrics.noise_ceiling`). Files, under ``<data_home>/moth/``
(:func:`brainattr.data.data_root`)::

    responses/subject01_reading_fmri_data_trn.hdf, ..._val.hdf
    mappers/subject01_mappers.hdf      optional: ROI masks (language voxels)
    textgrids/story_01.TextGrid ...    word timings (or <moth story name>.TextGrid)
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from ..metrics import noise_ceiling
from ..schema import DataError, Dataset, Stimulus
from ._common import cut_stimulus, data_root, finish_datasets, missing_files_error, subject_list, subject_number
from .annotate import word_annotations
from .textgrid import textgrid_words

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


def _moth_ids(subjects):
    if isinstance(subjects, (int, np.integer)):
        if not 1 <= int(subjects) <= len(MOTH_SUBJECTS):
            raise DataError(f"the Moth release has {len(MOTH_SUBJECTS)} subjects; got {subjects}.")
        return list(MOTH_SUBJECTS[: int(subjects)])
    ids = []
    for s in subject_list(subjects):
        k = subject_number(s)
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
    import h5py  # deferred: h5py is only needed to read the Moth release

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
    import h5py  # deferred: h5py is only needed to read the Moth release

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
    import h5py  # deferred: h5py is only needed to read the Moth release

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
    ann = word_annotations(words, (), annotate)
    ann["story"] = np.concatenate([np.full(r.size, s) for s, r in zip(story_trs, runs)])
    return Stimulus(name="moth_reading", words=words, word_onsets=np.concatenate(onsets), word_runs=np.concatenate(runs),
                    tr_times=np.concatenate(tr_times), tr_runs=np.concatenate(tr_runs), tr=MOTH_TR, annotations=ann,
                    source=f"The Moth Radio Hour stories, read word by word (Deniz et al. 2019); release {MOTH_GIN_URL}")


def load_moth(subjects=("sub-01",), *, data_home=None, max_words=None, annotate=True):
    """Moth Radio Hour, reading (Deniz et al. 2019), one Dataset per subject.

    The runs are the stories: the training stories in release order, then the validation story
    with the mean of its repeats. ``meta["explainable_variance"]`` (n_voxels,) is computed from
    the validation story's repeats (:func:`brainattr.metrics.noise_ceiling`, :data:`MOTH_TRIM` TRs dropped at each end).

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
        raise missing_files_error("Moth Radio Hour (reading) files not found", root.parent, missing, _moth_instructions(root))
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
    return finish_datasets(datasets, cut, tr_keep)


def moth_download_list(subjects=None) -> list:
    """Files of the public release that ``python -m brainattr download moth`` fetches.

    Parameters
    ----------
    subjects : sequence, int or None
        Default: all subjects of the release (:data:`MOTH_SUBJECTS`).

    Returns
    -------
    list of (list of str, str)
        Candidate URLs and the path under the data root, per file.
    """
    ids = _moth_ids(subjects if subjects is not None else len(MOTH_SUBJECTS))
    raw = f"{MOTH_GIN_URL}/raw/master/"
    files = [([f"{raw}responses/subject{s}_reading_fmri_data_{split}.hdf"],
              f"moth/responses/subject{s}_reading_fmri_data_{split}.hdf") for s in ids for split in ("trn", "val")]
    files += [([f"{raw}mappers/subject{s}_mappers.hdf"], f"moth/mappers/subject{s}_mappers.hdf") for s in ids]
    return files + [([f"{MOTH_TEXTGRID_URL}{story}.TextGrid"], f"moth/textgrids/{key}.TextGrid")
                    for key, story in MOTH_STORIES.items()]
