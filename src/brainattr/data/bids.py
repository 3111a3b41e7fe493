"""Bring your own fMRI: a BIDS (derivatives) folder, or already-masked arrays, in the :mod:`brainattr.schema` schema.

:func:`load_bids` reads, for each subject, the preprocessed BOLD of every selected run (NIfTI,
``sub-<label>[_ses-<label>]_task-<label>[_run-<index>][_space-<label>][_desc-<label>]_bold.nii[.gz]``,
sessions, tasks, acquisitions and runs all allowed), the repetition time from the run's sidecar
JSON (``RepetitionTime``, BIDS inheritance: the nearest ``*_bold.json`` wins, the raw dataset's
too), a word-timing table per run, and turns the volumes into voxels with a mask
(:class:`nilearn.maskers.NiftiMasker`) or into parcels with a parcellation
(:class:`nilearn.maskers.NiftiLabelsMasker`). :func:`load_arrays` does the same for data that are
already masked: one ``.npy`` or HDF5 array (TRs x voxels) per run.

Word timings, in seconds from the start of each run (the BIDS convention):

- by default the run's BIDS events file (``*_events.tsv``, found like the sidecars) with a
  ``word`` column; rows without a word (``n/a``) are ignored;
- or one table for all runs (``words=path``, columns ``word``, ``onset``, ``run``, optional
  ``duration``; :func:`brainattr.data.text.read_word_timing`) whose ``run`` names each BOLD run
  by its run index (``1``), its BIDS entities (``task-story_run-1``) or its task (``story``).

Runs are laid end to end on one clock. A recording of one run is cut into contiguous pseudo-runs
(default 4) so that leave-one-run-out cross-validation has folds.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..schema import DataError, Dataset, Stimulus
from ._common import cut_stimulus, data_root, finish_datasets, subject_list
from .annotate import word_annotations
from .atlas import LANGUAGE_ROIS, voxel_table
from .text import read_word_timing

#: Entities that name one acquisition (a run); files agreeing on them are the same run in other
#: output spaces, resolutions or descriptions.
RUN_ENTITIES = ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "part")
#: Pseudo-runs a one-run recording is cut into when ``pseudo_runs`` is not given.
DEFAULT_PSEUDO_RUNS = 4
#: Largest distance (mm) from an MNI voxel to the nearest labelled 3 mm atlas voxel for it to take its label.
ATLAS_MAX_DISTANCE = 3.0
#: Suffixes of array files :func:`load_arrays` reads (one run each).
ARRAY_SUFFIXES = (".npy", ".h5", ".hdf5", ".hf5")


# ---------------------------------------------------------------- BIDS file names
def bids_entities(path) -> dict:
    """The entities of a BIDS file name (``{"sub": "01", "task": "story", ...}``), read by nilearn."""
    from nilearn.interfaces.bids import parse_bids_filename  # deferred: nilearn is heavy

    parsed = parse_bids_filename(str(path))
    if "entities" in parsed:                            # nilearn >= 0.12
        return dict(parsed["entities"])
    return {k: parsed[k] for k in parsed.get("file_fields", [])}   # nilearn 0.11's layout


def run_key(entities) -> str:
    """The entities naming one run, joined as in a file name: ``ses-1_task-story_run-2``."""
    return "_".join(f"{k}-{entities[k]}" for k in RUN_ENTITIES if k in entities and k != "sub")


def _subset(small: dict, big: dict) -> bool:
    return all(big.get(k) == v for k, v in small.items())


def find_bold_runs(root, subject, *, task=None, session=None, space=None, desc=None, filters=None) -> list:
    """The subject's BOLD runs (one NIfTI per run), in session, task and run order.

    Parameters
    ----------
    root : str or Path
        The folder holding ``sub-<label>/`` (a BIDS dataset or a derivatives pipeline folder).
    subject : str
        ``sub-01`` or ``01``.
    task, session, space, desc : str or None
        Keep only files with these entities (None: any, as long as one file is left per run).
        fMRIPrep writes ``space-<template>`` and ``desc-preproc``.
    filters : dict of str -> str, optional
        Other entities to match, e.g. ``{"res": "2"}``.

    Returns
    -------
    list of dict
        ``path`` (Path), ``entities`` (dict), ``key`` (:func:`run_key`).

    Raises
    ------
    DataError
        No subject folder, no matching file (listing the tasks, spaces and descriptions there
        are), or two files for one run (naming the entity to choose with).
    """
    root = Path(root)
    label = re.sub(r"^sub-", "", str(subject))
    folder = root / f"sub-{label}"
    if not folder.is_dir():
        found = sorted(p.name for p in root.glob("sub-*") if p.is_dir())
        raise DataError(f"no folder {folder} for subject {subject!r}; subjects under {root}: "
                        f"{', '.join(found[:20]) or 'none'}. Check the subject ids and the BIDS (derivatives) root.")
    files = sorted(p for p in folder.rglob("*_bold.nii*") if p.name.endswith(("_bold.nii", "_bold.nii.gz")))
    wanted = dict(filters or {})
    for k, v in (("task", task), ("ses", session), ("space", space), ("desc", desc)):
        if v is not None:
            wanted[k] = str(v)
    found = [dict(path=p, entities=bids_entities(p)) for p in files]
    runs = [f for f in found if _subset(wanted, f["entities"])]
    if not runs:
        seen = {k: sorted({f["entities"].get(k, "(none)") for f in found}) for k in ("task", "ses", "space", "desc")}
        raise DataError(f"no BOLD file under {folder} matches {wanted or 'anything'} ({len(found)} *_bold.nii[.gz] "
                        f"file(s) there; tasks {seen['task']}, sessions {seen['ses']}, spaces {seen['space']}, "
                        f"descriptions {seen['desc']}). Choose among them with task=, session=, space=, desc= "
                        "or filters={...} (None matches any).")
    by_run = {}
    for f in runs:
        f["key"] = run_key(f["entities"])
        by_run.setdefault(f["key"], []).append(f)
    for key, group in by_run.items():
        if len(group) > 1:
            differ = {k: sorted({g["entities"].get(k, "(none)") for g in group})
                      for k in set().union(*(g["entities"] for g in group))
                      if len({g["entities"].get(k) for g in group}) > 1}
            raise DataError(f"subject {subject}: {len(group)} BOLD files for run {key or 'of the task'} "
                            f"({', '.join(g['path'].name for g in group)}); they differ in {differ}. Pick one with "
                            "the matching argument (space=, desc=) or filters={'<entity>': '<value>'}.")
    return sorted(runs, key=lambda f: tuple(_natural(f["entities"].get(k, "")) for k in RUN_ENTITIES))


def _natural(label):
    """Sort key: numbers by value (run-2 before run-10)."""
    return (0, int(label), "") if str(label).isdigit() else (1, 0, str(label))


def _candidates(path, roots, suffix):
    """Files ending in ``suffix`` that BIDS inheritance applies to ``path``, least specific first."""
    ents = bids_entities(path)
    raw = {k: v for k, v in ents.items() if k in RUN_ENTITIES}
    out = []
    for depth, root in enumerate(roots):
        root = Path(root)
        folders = [root, root / f"sub-{ents.get('sub', '')}"]
        if "ses" in ents:
            folders.append(folders[-1] / f"ses-{ents['ses']}")
        folders.append(folders[-1] / "func")
        for level, folder in enumerate(folders):
            for f in sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else []:
                fe = bids_entities(f)
                # a derivative's own files may carry space/desc; the raw dataset's name the run only
                if _subset(fe, ents) or _subset(fe, raw):
                    out.append(((-depth, level, len(fe)), f))
    return [f for _, f in sorted(out, key=lambda t: t[0])]


def sidecar_metadata(bold_path, roots) -> tuple:
    """The metadata of a BOLD file from its sidecar JSONs (BIDS inheritance: nearer files win).

    Parameters
    ----------
    bold_path : Path
    roots : list of Path
        Where to look, most specific first (the derivatives folder, then the raw dataset).

    Returns
    -------
    metadata : dict
    files : list of Path
        The JSON files read, least specific first.
    """
    files = _candidates(bold_path, roots, "_bold.json")
    meta = {}
    for f in files:
        try:
            meta.update(json.loads(f.read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError) as err:
            raise DataError(f"{f} is not a valid JSON sidecar ({err}); fix or remove it.") from None
    return meta, files


def repetition_time(bold_path, roots) -> float:
    """``RepetitionTime`` (seconds) of a BOLD run from its sidecar JSON(s).

    Raises
    ------
    DataError
        No sidecar, or sidecars without a usable ``RepetitionTime`` (naming them and the fix).
    """
    bold_path = Path(bold_path)
    meta, files = sidecar_metadata(bold_path, roots)
    beside = bold_path.with_name(re.sub(r"\.nii(\.gz)?$", ".json", bold_path.name))
    if "RepetitionTime" not in meta:
        where = (f"its sidecar(s) {', '.join(str(f) for f in files)} have no \"RepetitionTime\"" if files
                 else f"no sidecar JSON was found for it (looked for {beside} and the BIDS inheritance chain)")
        raise DataError(f"{bold_path}: {where}. Add \"RepetitionTime\": <seconds between volumes> to {beside}, or "
                        "pass tr=<seconds>.")
    tr = meta["RepetitionTime"]
    if not isinstance(tr, (int, float)) or isinstance(tr, bool) or not 0 < tr < 60:
        raise DataError(f"{bold_path}: RepetitionTime {tr!r} in {files[-1]} is not a number of seconds between 0 and "
                        "60 (milliseconds?); write it in seconds, or pass tr=<seconds>.")
    return float(tr)


def events_file(bold_path, roots):
    """The run's ``*_events.tsv`` (BIDS inheritance, the most specific one), or None."""
    files = _candidates(bold_path, roots, "_events.tsv")
    return files[-1] if files else None


# ---------------------------------------------------------------- word timings per run
def match_runs(table_runs, runs, table_path) -> dict:
    """Which BOLD run each ``run`` label of a word-timing table names.

    A label names a run by its BIDS entities (``task-story_run-1``), its run index (``1`` or
    ``01``) when those are unique, or its task when each task has one run.

    Parameters
    ----------
    table_runs : list of str
    runs : list of dict
        :func:`find_bold_runs` entries.
    table_path : Path
        Named in the error.

    Returns
    -------
    dict of str -> int
        Table run label -> position in ``runs``.

    Raises
    ------
    DataError
        A label names no run or several, or a BOLD run gets no words.
    """
    names = []                        # every label that names each run
    for f in runs:
        e = f["entities"]
        labels = {f["key"]}
        if e.get("run", "").isdigit():
            labels |= {e["run"], str(int(e["run"]))}
        if "task" in e:
            labels.add(e["task"])
        names.append(labels)
    counts = {}
    for labels in names:
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
    out, bad = {}, []
    for label in table_runs:
        label = str(label)
        norm = str(int(label)) if label.isdigit() else label
        hits = [i for i, labels in enumerate(names) if norm in labels and counts[norm] == 1]
        if len(hits) == 1:
            out[label] = hits[0]
        else:
            bad.append(label)
    keys = [f["key"] or "(one run)" for f in runs]
    if bad:
        raise DataError(f"{table_path}: run(s) {bad} of the timing table match no BOLD run (or several); the BOLD runs "
                        f"are {keys}. Name each run in the table's run column by its BIDS entities (e.g. "
                        f"{keys[0]!r}) or, when unique, its run index.")
    twice = sorted({keys[i] for i in out.values() if list(out.values()).count(i) > 1})
    if twice:
        raise DataError(f"{table_path}: several run labels of the timing table name BOLD run(s) {twice} "
                        f"({ {lab: keys[i] for lab, i in out.items()} }); give each run one label.")
    missing = [keys[i] for i in range(len(runs)) if i not in out.values()]
    if missing:
        raise DataError(f"{table_path}: the timing table has no words for BOLD run(s) {missing} (its runs: "
                        f"{list(table_runs)}); give the words of every run, or select fewer runs (task=, session=, "
                        "filters=).")
    return out


def events_words(path) -> pd.DataFrame:
    """The words of one run's BIDS events file (column ``word``; onsets from the run's start).

    Returns
    -------
    pandas.DataFrame with columns ``word``, ``onset``, ``duration``, ``line``
    """
    head = Path(path).read_text(encoding="utf-8", errors="replace").split("\n", 1)[0].lower().split("\t")
    if "word" not in [h.strip() for h in head]:
        raise DataError(f"{path}: this events file has no 'word' column (columns {head}); add one (the word heard or "
                        "read at each onset, n/a for other events), or pass words=<one table for all runs>.")
    return read_word_timing(path, run="run")


def run_stimulus(run_words, n_vols, tr, paths, name, source) -> Stimulus:
    """The stimulus of a set of runs: word timings per run, runs of ``n_vols`` volumes laid end to end.

    Parameters
    ----------
    run_words : list of pandas.DataFrame
        Per run: ``word``, ``onset`` (seconds from the run's start), ``line``.
    n_vols : list of int
        Volumes of each run.
    tr : float
    paths : list
        The timing file of each run, named in errors.
    name, source : str

    Raises
    ------
    DataError
        A word after the run's last volume, or a run without words.
    """
    words, onsets, word_runs, tr_times, tr_runs, start = [], [], [], [], [], 0.0
    for k, (table, n, path) in enumerate(zip(run_words, n_vols, paths)):
        if table.empty:
            raise DataError(f"{path}: no words for run {k + 1}; give its word timings or leave the run out.")
        late = table["onset"].to_numpy() >= n * tr
        if late.any():
            i = int(np.flatnonzero(late)[0])
            raise DataError(f"{path} line {table['line'].iloc[i]}: word {table['word'].iloc[i]!r} at "
                            f"{table['onset'].iloc[i]:.2f} s is after the last volume of its run ({n} volumes x "
                            f"{tr} s = {n * tr:.2f} s; {int(late.sum())} such word(s)). Onsets must be seconds from the "
                            "run's first volume: check the TR, volumes removed at the start (shift the onsets), "
                            "milliseconds, or that this timing file belongs to this run.")
        words.append(table["word"].to_numpy(dtype=str))
        onsets.append(start + table["onset"].to_numpy(dtype=float))
        word_runs.append(np.full(len(table), k))
        tr_times.append(start + tr * np.arange(n))
        tr_runs.append(np.full(n, k))
        start += n * tr
    return Stimulus(name=name, words=np.concatenate(words), word_onsets=np.concatenate(onsets),
                    word_runs=np.concatenate(word_runs), tr_times=np.concatenate(tr_times),
                    tr_runs=np.concatenate(tr_runs), tr=tr, source=source)


def split_pseudo_runs(stimulus: Stimulus, n_blocks: int) -> Stimulus:
    """Every run cut into ``n_blocks`` contiguous blocks of TRs, each a run of its own.

    Words follow their TR. Leave-one-run-out cross-validation then has folds on a recording of
    one run (each block is z-scored and trimmed on its own by the pipeline).
    """
    from dataclasses import replace

    tr_runs = np.zeros(stimulus.n_trs, dtype=int)
    label = 0
    for run in np.unique(stimulus.tr_runs):
        for block in np.array_split(np.flatnonzero(stimulus.tr_runs == run), int(n_blocks)):
            tr_runs[block] = label
            label += 1
    return replace(stimulus, word_runs=tr_runs[stimulus.word_trs], tr_runs=tr_runs,
                   source=stimulus.source + f"; each run cut into {int(n_blocks)} pseudo-runs")


# ---------------------------------------------------------------- voxels: masks, parcels, labels
def _load_img(path, what):
    import nibabel as nib  # deferred: nibabel is only needed for NIfTI data

    try:
        return nib.load(str(path))
    except (FileNotFoundError, nib.filebasedimages.ImageFileError, OSError, ValueError) as err:
        raise DataError(f"{what} {path} could not be read as NIfTI ({err}); check the path, and that the download "
                        "is complete (not a git-annex or LFS pointer).") from None


def check_same_grid(img, img_path, ref, ref_path, what="mask") -> None:
    """Raise :class:`DataError` unless ``img`` (3-D) is on the voxel grid of ``ref`` (3-D or 4-D)."""
    shape, ref_shape = tuple(img.shape[:3]), tuple(ref.shape[:3])
    if shape != ref_shape or not np.allclose(img.affine, ref.affine, atol=1e-3):
        fix = ("Use a mask in the BOLD's grid: resample it, e.g. nilearn.image.resample_to_img(mask, bold, "
               "interpolation='nearest'), or pass resample_mask=True." if what == "mask" else
               "Runs loaded together must share one voxel grid: use the same output space and resolution for all "
               "(space=, filters={'res': ...}).")
        raise DataError(f"{ref_path} has voxel grid {ref_shape} but the {what} {img_path} has {shape}"
                        f"{'' if shape != ref_shape else ' with another affine (voxel size or position)'}. {fix}")


def mni_labels(coords) -> tuple:
    """Harvard-Oxford labels of MNI coordinates (the nearest 3 mm atlas voxel within 3 mm).

    Parameters
    ----------
    coords : array of float, shape (n, 3)

    Returns
    -------
    labels : array of str, shape (n,)
        The short language-ROI label (:data:`~brainattr.data.atlas.LANGUAGE_ROIS`), else the
        Harvard-Oxford region, else ``"other"``.
    is_language : array of bool, shape (n,)
    """
    from scipy.spatial import cKDTree

    table = voxel_table()
    dist, row = cKDTree(table[["x", "y", "z"]].to_numpy(float)).query(np.asarray(coords, float))
    near = dist <= ATLAS_MAX_DISTANCE
    roi = np.where(near, table["roi"].to_numpy(str)[row], "")
    region = np.where(near, table["region"].to_numpy(str)[row], "")
    is_lang = np.isin(roi, list(LANGUAGE_ROIS))
    labels = np.where(is_lang, roi, np.where(region != "", region, "other"))
    return labels.astype(str), is_lang


def read_labels(atlas_labels, values) -> dict:
    """Parcel names by label value: from a BIDS ``dseg.tsv`` (columns index, name), a list, or the values."""
    if atlas_labels is None:
        return {v: f"parcel_{v}" for v in values}
    if isinstance(atlas_labels, (str, Path)):
        table = pd.read_csv(atlas_labels, sep="\t")
        cols = {c.lower(): c for c in table.columns}
        if "index" not in cols or "name" not in cols:
            raise DataError(f"{atlas_labels}: a parcel label table needs columns index and name (BIDS dseg.tsv); it "
                            f"has {list(table.columns)}.")
        return {int(i): str(n) for i, n in zip(table[cols["index"]], table[cols["name"]]) if int(i) != 0}
    names = list(atlas_labels)
    return {int(v): names[int(v) - 1] if 0 < int(v) <= len(names) else f"parcel_{v}" for v in values}


def parcel_grid(atlas_path, atlas_labels, ref, ref_path, mask=None):
    """The parcellation on the BOLD's grid, every listed parcel checked to keep voxels.

    Parameters
    ----------
    atlas_path : Path
        A 3-D integer label image (0: background).
    atlas_labels : str, Path, list or None
        See :func:`read_labels`; its parcels, or the atlas' own values, must all be non-empty.
    ref : nibabel image
        A BOLD run (its grid).
    ref_path : Path
    mask : nibabel image or None
        Only the voxels inside count.

    Returns
    -------
    labels_img : nibabel image
        The atlas resampled (nearest neighbour) to the BOLD's grid, masked.
    names : dict of int -> str
        Parcel value -> name, in increasing value (the column order of the parcel signals).

    Raises
    ------
    DataError
        A parcel with no voxel on the BOLD's grid (inside the mask), naming the parcels and the fix.
    """
    import nibabel as nib
    from nilearn.image import resample_to_img

    atlas = _load_img(atlas_path, "parcellation")
    values = np.asarray(atlas.dataobj)
    if values.ndim != 3 or not np.allclose(values, np.round(values)):
        raise DataError(f"{atlas_path} is not a 3-D image of integer parcel labels (shape {values.shape}); give a "
                        "label image (dseg), not a probabilistic atlas.")
    own = sorted(int(v) for v in np.unique(values) if v != 0)
    names = read_labels(atlas_labels, own)
    if tuple(atlas.shape[:3]) != tuple(ref.shape[:3]) or not np.allclose(atlas.affine, ref.affine, atol=1e-3):
        atlas = resample_to_img(atlas, nib.Nifti1Image(np.zeros(ref.shape[:3], np.int8), ref.affine),
                                interpolation="nearest")
    grid = np.round(np.asarray(atlas.dataobj)).astype(int)
    if mask is not None:
        grid[~np.asarray(mask.dataobj).astype(bool)] = 0
    counts = {v: int(n) for v, n in zip(*np.unique(grid, return_counts=True))}
    empty = [v for v in names if counts.get(v, 0) == 0]
    if empty:
        shown = ", ".join(f"{v} ({names[v]})" for v in empty[:10]) + (" ..." if len(empty) > 10 else "")
        raise DataError(f"{atlas_path}: {len(empty)} of {len(names)} parcels have no voxel on the BOLD grid of "
                        f"{ref_path}{' inside the mask' if mask is not None else ''}: {shown}. Use a coarser "
                        "parcellation or a finer BOLD grid, drop those parcels from the label table (atlas_labels), "
                        "or check that atlas and BOLD are in the same space.")
    grid[~np.isin(grid, list(names))] = 0
    return nib.Nifti1Image(grid.astype(np.int32), atlas.affine), dict(sorted(names.items()))


def voxel_info(space, coords, labels=None, language="harvard-oxford") -> tuple:
    """Coordinates, labels and language flags of the responses' columns.

    Parameters
    ----------
    space : str or None
        The BIDS ``space`` entity: MNI spaces keep their coordinates, others get NaN.
    coords : array of float, shape (n, 3)
        Voxel (or parcel centroid) positions in mm.
    labels : array of str or None
        Parcel names (voxels: None).
    language : "harvard-oxford" or None
        Mark the columns whose position falls in a Harvard-Oxford language ROI; None marks none.

    Returns
    -------
    coords : array of float, shape (n, 3)
    labels : array of str, shape (n,)
    is_language : array of bool, shape (n,)
    """
    n = len(coords)
    mni = bool(space) and str(space).upper().startswith("MNI")
    if language not in ("harvard-oxford", None):
        raise DataError(f"language must be 'harvard-oxford' or None, got {language!r}.")
    if mni and language == "harvard-oxford":
        ho_labels, is_lang = mni_labels(coords)
    else:
        ho_labels, is_lang = np.full(n, "voxel"), np.zeros(n, dtype=bool)
    out_labels = np.asarray(labels, dtype=str) if labels is not None else ho_labels
    return (np.asarray(coords, float) if mni else np.full((n, 3), np.nan)), out_labels, is_lang


# ---------------------------------------------------------------- the loaders
def drop_excluded_runs(runs, exclude, subject) -> tuple:
    """The runs ``exclude`` keeps, and the ones it leaves out with why (named in a warning).

    Parameters
    ----------
    runs : list of dict
        :func:`find_bold_runs` entries.
    exclude : callable or None
        ``exclude(run) -> str or None``: why the run is left out, None to keep it (None: keep all).
    subject : str

    Returns
    -------
    (kept, dropped) : (list of dict, dict of str -> str)
        The runs kept; file name -> reason for the runs left out. Leaving out every run of the
        subject is a :class:`DataError` naming them, the reasons and the fix.
    """
    reasons = [exclude(f) for f in runs] if exclude is not None else [None] * len(runs)
    kept = [f for f, why in zip(runs, reasons) if not why]
    dropped = {f["path"].name: str(why) for f, why in zip(runs, reasons) if why}
    if dropped and not kept:
        listed = "; ".join(f"{name}: {why}" for name, why in dropped.items())
        raise DataError(f"subject {subject}: every selected BOLD run is excluded ({listed}). Load another subject "
                        "or task, or keep the excluded runs (the loader's exclusion option).")
    if dropped:
        warnings.warn(f"subject {subject}: left out {len(dropped)} BOLD run(s): "
                      + "; ".join(f"{name} ({why})" for name, why in dropped.items()), stacklevel=3)
    return kept, dropped


def _run_words(words, runs, roots):
    """Word tables per run and the file each came from, for :func:`load_bids`."""
    if words is None:
        tables, paths = [], []
        for f in runs:
            path = events_file(f["path"], roots)
            if path is None:
                raise DataError(f"{f['path']}: no events file with word timings found for this run (looked for "
                                f"{run_key(f['entities'])}_events.tsv beside it and in the raw dataset). Add one with "
                                "a 'word' column, or pass words=<table with columns word, onset, run>.")
            tables.append(events_words(path))
            paths.append(path)
        return tables, paths
    if callable(words):          # a dataset module's reader; its table may name its file in attrs["source"]
        tables = [words(f) for f in runs]
        return tables, [t.attrs.get("source", f["path"]) for t, f in zip(tables, runs)]
    table = read_word_timing(words)
    labels = list(dict.fromkeys(table["run"]))
    which = match_runs(labels, runs, words)
    label_of = {i: lab for lab, i in which.items()}
    tables = [table[table["run"] == label_of[k]].reset_index(drop=True) for k in range(len(runs))]
    return tables, [words] * len(runs)


def load_bids(subjects=("sub-01",), *, bids_root=None, derivatives=None, task=None, session=None, space=None,
              desc=None, filters=None, words=None, mask=None, resample_mask=False, atlas=None,
              atlas_labels=None, tr=None, pseudo_runs=None, language="harvard-oxford", detrend=True,
              high_pass=None, smoothing_fwhm=None, max_words=None, annotate=True, data_home=None,
              name="bids", exclude=None) -> list:
    """Any BIDS dataset: one Dataset per subject, voxels of a mask or parcels of a parcellation.

    Parameters
    ----------
    subjects : sequence of str, str or int
        ``sub-01``-style ids, or an int n for the first n subject folders.
    bids_root : str or Path or None
        The BIDS dataset (raw data, events and sidecars); default ``<data_home>/bids``.
    derivatives : str or Path or None
        The pipeline folder holding the preprocessed BOLD (e.g. ``derivatives/fmriprep``),
        relative to ``bids_root`` or absolute; None reads the BOLD of ``bids_root`` itself.
    task, session, space, desc, filters
        Which files (:func:`find_bold_runs`).
    words : None, str, Path or callable
        None: each run's events file (column ``word``); a path: one word-timing table for all
        runs (:func:`match_runs`); a callable: ``words(run) -> table`` (dataset modules).
    mask : None, str, Path or "epi"
        A brain or ROI mask in the BOLD's grid; None: fMRIPrep's ``*_desc-brain_mask`` of each
        run, intersected; ``"epi"``: computed from the BOLD (nilearn ``compute_multi_epi_mask``).
    resample_mask : bool
        Resample a mask on another grid to the BOLD's (nearest neighbour) instead of stopping.
    atlas : str or Path or None
        A parcellation (3-D label image): the responses are its parcels' mean signals.
    atlas_labels : str, Path, list or None
        Parcel names (a dseg.tsv with columns index, name, or a list for values 1, 2, ...).
    tr : float or None
        Repetition time in seconds; None reads ``RepetitionTime`` from the sidecars.
    pseudo_runs : int or None
        Cut every run into this many contiguous pseudo-runs; None: :data:`DEFAULT_PSEUDO_RUNS`
        when there is a single run, else none.
    language : "harvard-oxford" or None
        MNI spaces: mark the voxels (parcel centroids) in the Harvard-Oxford language ROIs.
    detrend, high_pass, smoothing_fwhm
        Passed to the nilearn masker (per run).
    max_words : int or None
        See :func:`~brainattr.data.cut_stimulus`.
    annotate : bool
        Attach spaCy annotations (characters inferred from the text).
    data_home : str or Path or None
        Default root's parent (:func:`~brainattr.data.data_root`).
    name : str
        The Datasets' name.
    exclude : callable or None
        ``exclude(run) -> str or None``: why to leave a run out (:func:`drop_excluded_runs`); the
        runs left out are in ``meta["excluded_runs"]`` (file name -> reason).

    Returns
    -------
    list of Dataset
        Subjects must have the same runs, volumes and words (one stimulus); NaN and
        zero-variance columns excluded.
    """
    root = Path(bids_root) if bids_root is not None else data_root(data_home) / "bids"
    if not root.is_dir():
        raise DataError(f"BIDS folder {root} not found; pass bids_root=<the dataset folder> (or put it at "
                        f"{data_root(data_home) / 'bids'}).")
    deriv = root if derivatives is None else (Path(derivatives) if Path(derivatives).is_absolute()
                                              else root / derivatives)
    if not deriv.is_dir():
        raise DataError(f"derivatives folder {deriv} not found; pass derivatives=<the pipeline folder under "
                        f"{root}>, e.g. 'derivatives/fmriprep', or None for the BOLD of the dataset itself.")
    roots = [deriv, root] if deriv != root else [root]
    if isinstance(subjects, (int, np.integer)):
        found = sorted((p.name for p in deriv.glob("sub-*") if p.is_dir()), key=lambda s: _natural(s[4:]))
        subjects = found[: int(subjects)]
    ids = [s if str(s).startswith("sub-") else f"sub-{s}" for s in subject_list(subjects)]
    stimulus, datasets, reference = None, [], None
    for subject in ids:
        runs = find_bold_runs(deriv, subject, task=task, session=session, space=space, desc=desc, filters=filters)
        runs, dropped = drop_excluded_runs(runs, exclude, subject)
        imgs = [_load_img(f["path"], "BOLD run") for f in runs]
        for f, img in zip(runs, imgs):
            if len(img.shape) != 4 or img.shape[3] < 2:
                raise DataError(f"{f['path']} has shape {img.shape}, not a 4-D time series of volumes; give the "
                                "preprocessed BOLD run.")
        run_tr = tr if tr is not None else repetition_time(runs[0]["path"], roots)
        if tr is None:
            trs = {f["path"].name: repetition_time(f["path"], roots) for f in runs}
            if len(set(trs.values())) > 1:
                raise DataError(f"subject {subject}: the runs have different repetition times {trs}; load runs of one "
                                "TR together (task=, session=, filters=).")
        n_vols = [int(img.shape[3]) for img in imgs]
        run_words, paths = _run_words(words, runs, roots)
        signature = ([f["key"] for f in runs], n_vols)
        if stimulus is None:
            source = f"BIDS {root.name}: {', '.join(f['path'].name for f in runs)}"
            stimulus = run_stimulus(run_words, n_vols, run_tr, paths, name=f"{name}_{_stimulus_tag(runs)}", source=source)
            reference = (subject, signature, stimulus.fingerprint)
        else:
            other = run_stimulus(run_words, n_vols, run_tr, paths, name=stimulus.name, source=stimulus.source)
            if signature != reference[1] or other.fingerprint != reference[2]:
                raise DataError(f"subject {subject} has runs {signature[0]} of {signature[1]} volumes (or other word "
                                f"timings) but {reference[0]} has {reference[1][0]} of {reference[1][1]}: subjects "
                                "loaded together must hear or read the same stimulus; load them separately or "
                                "select the same runs (task=, session=, filters=).")
        Y, coords, labels, extra = _masked(runs, imgs, run_tr, mask=mask, resample_mask=resample_mask, atlas=atlas,
                                           atlas_labels=atlas_labels, detrend=detrend, high_pass=high_pass,
                                           smoothing_fwhm=smoothing_fwhm)
        space_label = runs[0]["entities"].get("space")
        coords, labels, is_lang = voxel_info(space_label, coords, labels, language)
        meta = dict(layout="bids", bids_root=str(root), derivatives=str(deriv), bold_files=[str(f["path"]) for f in runs],
                    word_files=[str(p) for p in paths], tr=run_tr, space=space_label, excluded_runs=dropped, **extra)
        datasets.append(Dataset(stimulus=stimulus, subject=subject, responses=Y, voxel_coords=coords,
                                voxel_labels=labels, voxel_is_language=is_lang, name=name, meta=meta))
    return _finish(datasets, stimulus, pseudo_runs, max_words, annotate)


def _stimulus_tag(runs):
    tasks = sorted({f["entities"].get("task", "") for f in runs} - {""})
    return "+".join(tasks) or "runs"


def _finish(datasets, stimulus, pseudo_runs, max_words, annotate):
    """Pseudo-runs, annotations, ``max_words``; then the common finishing (cut TRs, bad voxels)."""
    from dataclasses import replace

    n_runs = np.unique(stimulus.tr_runs).size
    if pseudo_runs is None and n_runs < 2:
        pseudo_runs = DEFAULT_PSEUDO_RUNS
        warnings.warn(f"'{stimulus.name}' has one run: it is cut into {pseudo_runs} contiguous pseudo-runs for "
                      "leave-one-run-out cross-validation (pass pseudo_runs=<n> to choose).", stacklevel=3)
    if pseudo_runs is not None and int(pseudo_runs) > 1:
        stimulus = split_pseudo_runs(stimulus, int(pseudo_runs))
    if annotate:
        stimulus = replace(stimulus, annotations=word_annotations(stimulus.words))
    datasets = [replace(ds, stimulus=stimulus, meta=dict(ds.meta, pseudo_runs=pseudo_runs)) for ds in datasets]
    cut, tr_keep = cut_stimulus(stimulus, max_words)
    return finish_datasets(datasets, cut, tr_keep)


def _masked(runs, imgs, tr, *, mask, resample_mask, atlas, atlas_labels, detrend, high_pass, smoothing_fwhm):
    """Responses (n_trs, n_columns) of the runs laid end to end, and the columns' mm positions."""
    import nibabel as nib
    from nibabel.affines import apply_affine
    from nilearn.image import resample_to_img
    from nilearn.maskers import NiftiLabelsMasker, NiftiMasker

    ref, ref_path = imgs[0], runs[0]["path"]
    for f, img in zip(runs[1:], imgs[1:]):
        check_same_grid(img, f["path"], ref, ref_path, what="BOLD run")
    mask_img, mask_name = None, None
    if isinstance(mask, str) and mask == "epi":
        from nilearn.masking import compute_multi_epi_mask

        mask_img, mask_name = compute_multi_epi_mask(imgs), "computed from the BOLD (compute_multi_epi_mask)"
    elif mask is not None:
        mask_img, mask_name = _load_img(mask, "mask"), str(mask)
        if resample_mask and (tuple(mask_img.shape[:3]) != tuple(ref.shape[:3])
                              or not np.allclose(mask_img.affine, ref.affine, atol=1e-3)):
            mask_img = resample_to_img(mask_img, nib.Nifti1Image(np.zeros(ref.shape[:3], np.int8), ref.affine),
                                       interpolation="nearest")
        check_same_grid(mask_img, mask, ref, ref_path)
    elif atlas is None:
        found = [_brain_mask(f["path"]) for f in runs]
        if any(p is None for p in found):
            raise DataError(f"no mask: {ref_path} has no fMRIPrep brain mask beside it (*_desc-brain_mask.nii.gz). "
                            "Pass mask=<NIfTI mask in the BOLD's grid>, mask='epi' to compute one from the data, or "
                            "atlas=<parcellation>.")
        masks = []
        for p in found:
            m = _load_img(p, "mask")
            check_same_grid(m, p, ref, ref_path)
            masks.append(np.asarray(m.dataobj).astype(bool))
        mask_img, mask_name = nib.Nifti1Image(np.logical_and.reduce(masks).astype(np.int8), ref.affine), \
            ", ".join(sorted({p.name for p in found}))
    if mask_img is not None:
        m = np.asarray(mask_img.dataobj)
        if m.ndim != 3 or not np.isin(np.unique(m), [0, 1]).all() or not m.any():
            raise DataError(f"the mask {mask_name} must be a 3-D image of 0 and 1 with some voxels in it (shape "
                            f"{m.shape}, values {np.unique(m)[:5]}); binarise it (nilearn.image.binarize_img).")
        mask_img = nib.Nifti1Image(m.astype(np.int8), mask_img.affine)
    clean = dict(detrend=detrend, high_pass=high_pass, smoothing_fwhm=smoothing_fwhm, t_r=tr, standardize=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)      # nilearn's deprecation notices, not the user's concern
        warnings.simplefilter("ignore", DeprecationWarning)
        if atlas is not None:
            labels_img, names = parcel_grid(atlas, atlas_labels, ref, ref_path, mask_img)
            masker = NiftiLabelsMasker(labels_img=labels_img, resampling_target=None, strategy="mean", **clean).fit()
            Y = np.concatenate([masker.transform(img) for img in imgs])
            grid = np.asarray(labels_img.dataobj)
            ijk = np.array([np.argwhere(grid == v).mean(axis=0) for v in names])
            coords = apply_affine(ref.affine, ijk)
            extra = dict(atlas=str(atlas), mask=mask_name, parcels=list(names.values()))
            if Y.shape[1] != len(names):
                raise DataError(f"{atlas}: {Y.shape[1]} parcel signals for {len(names)} parcels; give a label image "
                                "whose values are the parcel indices.")
            return Y.astype(np.float32), coords, np.array(list(names.values()), dtype=str), extra
        masker = NiftiMasker(mask_img=mask_img, **clean).fit()
        Y = np.concatenate([masker.transform(img) for img in imgs])
    ijk = np.argwhere(np.asarray(mask_img.dataobj).astype(bool))
    coords = apply_affine(ref.affine, ijk)
    return Y.astype(np.float32), coords, None, dict(mask=mask_name, voxel_ijk=ijk, affine=ref.affine)


def _brain_mask(bold_path):
    """fMRIPrep's brain mask of a BOLD run (same entities, ``desc-brain_mask``), or None."""
    name = re.sub(r"_desc-[A-Za-z0-9]+_bold\.nii(\.gz)?$", "_desc-brain_mask.nii.gz", Path(bold_path).name)
    name = re.sub(r"_bold\.nii(\.gz)?$", "_desc-brain_mask.nii.gz", name)
    path = Path(bold_path).with_name(name)
    return path if path.exists() else None


# ---------------------------------------------------------------- already-masked arrays
def read_array(path) -> np.ndarray:
    """One run's responses from ``.npy`` or HDF5 (dataset ``data``, else its only dataset), (n_trs, n_voxels)."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            Y = np.load(path, allow_pickle=False)
        else:
            import h5py  # deferred: h5py is only needed for HDF5 files

            with h5py.File(path, "r") as f:
                keys = [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]
                key = "data" if "data" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise DataError(f"{path}: an HDF5 run file needs a dataset named 'data' (or exactly one dataset); "
                                    f"it has {keys}.")
                Y = f[key][()]
    except (OSError, ValueError) as err:
        raise DataError(f"{path} could not be read ({err}); is the file complete (not a git-annex or LFS "
                        "pointer)?") from None
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise DataError(f"{path} holds an array of shape {Y.shape}; one run's responses must be 2-D, (TRs, voxels) "
                        "(transpose it, or mask the volumes first).")
    return Y.astype(np.float32)


def load_arrays(subjects=("sub-01",), *, root=None, words=None, tr=None, pseudo_runs=None, max_words=None,
                annotate=True, data_home=None, name="arrays") -> list:
    """Already-masked responses, one array file per run, with one word-timing table.

    Layout::

        <root>/<subject>/<run>.npy (or .h5/.hdf5/.hf5)   (n_trs, n_voxels), one file per run
        <root>/<subject>/<run>.json                        optional sidecar with "RepetitionTime"
        <root>/<subject>/voxels.tsv                        optional: x, y, z (MNI mm), label, is_language
        <words>                                            word, onset (s from the run's start), run, duration

    Runs are the files in natural order of their names; the table's ``run`` names each by its
    file stem, its position (1, 2, ...), or the number in its stem.

    Parameters
    ----------
    subjects : sequence of str or str
    root : str or Path or None
        Default ``<data_home>/arrays``.
    words : str or Path
        The word-timing table (:func:`brainattr.data.text.read_word_timing`).
    tr : float or None
        Repetition time; None reads each run's ``<run>.json``.
    pseudo_runs, max_words, annotate, name
        As for :func:`load_bids`.

    Returns
    -------
    list of Dataset
    """
    root = Path(root) if root is not None else data_root(data_home) / "arrays"
    if words is None:
        raise DataError("load_arrays needs words=<word-timing table> (columns word, onset, run; onsets in seconds "
                        "from the start of each run).")
    table = read_word_timing(words)
    stimulus, datasets, reference = None, [], None
    for subject in subject_list(subjects):
        folder = root / subject
        files = sorted((p for p in folder.glob("*") if p.suffix in ARRAY_SUFFIXES),
                       key=lambda p: [_natural(t) for t in re.split(r"(\d+)", p.stem)])
        if not files:
            raise DataError(f"no run files ({', '.join(ARRAY_SUFFIXES)}) in {folder}; put one (TRs x voxels) array "
                            "per run there.")
        arrays = [read_array(p) for p in files]
        n_vox = {a.shape[1] for a in arrays}
        if len(n_vox) > 1:
            raise DataError(f"{folder}: the runs have different numbers of voxels "
                            f"{ {p.name: a.shape[1] for p, a in zip(files, arrays)} }; every run must have the same "
                            "voxels, in the same order.")
        run_tr = tr if tr is not None else _array_tr(files)
        runs = [dict(key=p.stem, number=(re.findall(r"\d+", p.stem) or [None])[-1]) for p in files]
        which = _match_array_runs(list(dict.fromkeys(table["run"])), runs, words)
        tables = [table[table["run"] == lab].reset_index(drop=True) for lab in which]
        n_vols = [a.shape[0] for a in arrays]
        if stimulus is None:
            stimulus = run_stimulus(tables, n_vols, run_tr, [words] * len(runs), name=f"{name}_{Path(words).stem}",
                                    source=f"arrays under {root}, words {Path(words).name}")
            reference = (subject, n_vols)
        elif n_vols != reference[1]:
            raise DataError(f"subject {subject} has runs of {n_vols} TRs but {reference[0]} has {reference[1]}: "
                            "subjects loaded together must share the stimulus.")
        coords, labels, is_lang = _voxels_table(folder / "voxels.tsv", n_vox.pop())
        datasets.append(Dataset(stimulus=stimulus, subject=subject, responses=np.concatenate(arrays),
                                voxel_coords=coords, voxel_labels=labels, voxel_is_language=is_lang, name=name,
                                meta=dict(layout="arrays", files=[str(p) for p in files], tr=run_tr)))
    return _finish(datasets, stimulus, pseudo_runs, max_words, annotate)


def _array_tr(files):
    trs = {}
    for p in files:
        side = p.with_suffix(".json")
        if not side.exists():
            raise DataError(f"{p}: no repetition time: pass tr=<seconds>, or write {side} with \"RepetitionTime\".")
        meta = json.loads(side.read_text(encoding="utf-8"))
        if not isinstance(meta.get("RepetitionTime"), (int, float)):
            raise DataError(f"{side} has no numeric \"RepetitionTime\"; add it (seconds), or pass tr=<seconds>.")
        trs[p.name] = float(meta["RepetitionTime"])
    if len(set(trs.values())) != 1:
        raise DataError(f"the runs have different repetition times {trs}; load runs of one TR together.")
    return next(iter(trs.values()))


def _match_array_runs(labels, runs, path):
    """Table run label for each array run, in run order."""
    out = []
    for k, r in enumerate(runs):
        hits = [lab for lab in labels if lab == r["key"] or (lab.isdigit() and int(lab) == k + 1)
                or (lab.isdigit() and r["number"] is not None and int(lab) == int(r["number"]))]
        if len(hits) != 1:
            raise DataError(f"{path}: the timing table's runs {labels} do not match the run files "
                            f"{[x['key'] for x in runs]} (run file {r['key']!r} matches {hits or 'none'}); name each "
                            "run in the run column by its file stem or its position (1, 2, ...).")
        out.append(hits[0])
    extra = [lab for lab in labels if lab not in out]
    if extra:
        raise DataError(f"{path}: the timing table has runs {extra} without a run file (run files: "
                        f"{[x['key'] for x in runs]}); add their files or drop their rows.")
    return out


def _voxels_table(path, n_vox):
    if not path.exists():
        return np.full((n_vox, 3), np.nan), np.full(n_vox, "voxel"), np.zeros(n_vox, dtype=bool)
    table = pd.read_csv(path, sep="\t")
    if len(table) != n_vox or not {"x", "y", "z"} <= set(table.columns):
        raise DataError(f"{path}: needs columns x, y, z (and optionally label, is_language) and one row per voxel "
                        f"({n_vox}); it has {len(table)} rows and columns {list(table.columns)}.")
    labels = table["label"].astype(str).to_numpy() if "label" in table else np.full(n_vox, "voxel")
    is_lang = (table["is_language"].astype(str).str.lower().isin(["true", "1", "yes"]).to_numpy()
               if "is_language" in table else np.zeros(n_vox, dtype=bool))
    return table[["x", "y", "z"]].to_numpy(float), labels, is_lang

