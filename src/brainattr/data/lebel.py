"""LeBel et al. 2023 (OpenNeuro ds003020): podcast stories heard in the scanner, responses as HDF5 per story.

The release's preprocessed responses are one HDF5 file per subject and story; the word timings
are the stories' Praat TextGrids. Files, under ``<data_home>/lebel/`` (the ds003020 folder)::

    derivative/preprocessed_data/UTS01/<story>.hf5     dataset "data": (TRs, cortical voxels)
    derivative/TextGrids/<story>.TextGrid              word tier: times from the start of the audio

Timing, as the release's code (HuthLab/deep-fMRI-dataset, ``encoding/``) aligns features to
responses: the story's audio starts 10 s into the scan (``load_simulated_trfiles``,
``start_time=10``), so a TextGrid time t is at t + 10 s on the run's clock; the stimulus TR grid
starts at the scan's first volume, and the features of grid TRs ``[10:-5]`` are regressed on
the response rows (``apply_zscore_and_hrf``, ``5 + trim : -trim`` with ``trim=5``). Row i of a
response file is therefore TR i + 10 of its story. The loader puts the rows back on that grid
(10 TRs before, 5 after, more if the last word needs them), fills the unmeasured TRs with the
run mean and lists them in ``meta["unmeasured_trs"]``; the pipeline's trim of (20, 15) drops
them (:func:`~brainattr.data.check_trim`).

The test story ``wheretheressmoke`` was heard once in every session. Its response file holds, beside
``data`` (the average over the repeats, (TRs, voxels)), the dataset ``individual_repeats`` of shape
(repeats, TRs, voxels), ten repeats for the subjects with the most sessions (public code reading the
release; see the book's real-data chapter). When a chosen story's file holds it, the loader computes
each voxel's explainable variance from the repeats (:func:`brainattr.metrics.noise_ceiling`, as for
Moth and the Emma dataset) over the TRs the pipeline keeps, a block of voxels at a time.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from .. import metrics
from ..schema import DataError, Dataset, Stimulus
from ..trs import TRIM
from ._common import cut_stimulus, data_root, finish_datasets, missing_files_error, subject_list, subject_number
from .annotate import word_annotations
from .bids import read_array
from .textgrid import textgrid_words

LEBEL_URL = "https://openneuro.org/datasets/ds003020"
#: The scanner's repetition time (LeBel et al. 2023; the release's code simulates 2.0 s TR grids).
LEBEL_TR = 2.0045
#: Seconds of scan before each story's audio starts (the release code's ``start_time``).
LEBEL_AUDIO_START = 10.0
#: TRs of the stimulus grid missing from each response file, at its start and end.
LEBEL_TRIM = (10, 5)
#: The release's subjects.
LEBEL_SUBJECTS = tuple(f"UTS{k:02d}" for k in range(1, 9))
#: The story heard in every session (the release's test story).
LEBEL_REPEATED_STORY = "wheretheressmoke"
#: The HDF5 dataset of a response file holding each repeat, (n_repeats, TRs, voxels); ``data`` is their average.
LEBEL_REPEATS_KEY = "individual_repeats"
#: Voxels read at a time from a repeats dataset (10 repeats x 291 TRs x 8192 voxels in float64: 190 MB).
REPEATS_CHUNK = 8192


def lebel_subject(subject) -> str:
    """``UTS01`` for ``UTS01``, ``sub-01``, ``sub-UTS01``, ``1``."""
    s = re.sub(r"^sub-", "", str(subject)).upper()
    if re.fullmatch(r"UTS\d+", s):
        return f"UTS{int(s[3:]):02d}"
    k = subject_number(str(subject))
    if k is None:
        raise DataError(f"LeBel et al. 2023 subjects are UTS01 ... UTS08 (or sub-01 ... sub-08); got {subject!r}.")
    return f"UTS{k:02d}"


def lebel_instructions(root) -> str:
    return (f"LeBel et al. 2023, OpenNeuro ds003020 ({LEBEL_URL}); e.g. with DataLad:\n"
            f"  datalad clone https://github.com/OpenNeuroDatasets/ds003020.git {root}\n"
            f"  cd {root} && datalad get derivative/TextGrids derivative/preprocessed_data/UTS01")


def lebel_stories(root, subject) -> list:
    """Stories with a response file for ``subject``, sorted."""
    folder = Path(root) / "derivative" / "preprocessed_data" / subject
    return sorted(p.stem for p in folder.glob("*.hf5"))


def story_grid(n_rows, last_onset, tr=LEBEL_TR, trim=LEBEL_TRIM):
    """TRs of a story's grid: the response rows with the trimmed TRs back, enough to hold the last word.

    Parameters
    ----------
    n_rows : int
        Rows of the response file.
    last_onset : float
        The last word's time on the run's clock (TextGrid time + :data:`LEBEL_AUDIO_START`).

    Returns
    -------
    n_trs : int
    rows : slice
        The grid TRs the response rows fill.
    """
    before, after = trim
    n_trs = max(before + n_rows + after, int(np.floor(last_onset / tr)) + 1)
    return n_trs, slice(before, before + n_rows)


def kept_rows(n_rows, n_trs, trim=TRIM):
    """The rows of a response file that the pipeline's trim keeps, as a slice.

    Parameters
    ----------
    n_rows : int
        Rows of the response file (grid TRs ``LEBEL_TRIM[0]`` ... ``LEBEL_TRIM[0] + n_rows - 1``).
    n_trs : int
        TRs of the story's grid (:func:`story_grid`).
    trim : (int, int)
        TRs the pipeline drops at each end of a run (:data:`brainattr.trs.TRIM`).
    """
    before = LEBEL_TRIM[0]
    return slice(max(trim[0] - before, 0), min(n_trs - trim[1] - before, n_rows))


def repeats_ceiling(path, n_rows, n_voxels, rows, chunk=REPEATS_CHUNK):
    """Each voxel's explainable variance from the repeats in a response file, or None if it has none.

    Parameters
    ----------
    path : Path
        A ``.hf5`` response file; its dataset :data:`LEBEL_REPEATS_KEY`, if any, has shape
        (n_repeats, n_rows, n_voxels).
    n_rows, n_voxels : int
        The shape of its ``data``, which the repeats must match.
    rows : slice
        Rows to compute it over (:func:`kept_rows`).
    chunk : int
        Voxels read at a time.

    Returns
    -------
    ev : array of float64, shape (n_voxels,), or None
        :func:`brainattr.metrics.noise_ceiling` of the repeats (None: no repeats dataset, or one repeat).
    n_repeats : int
    """
    import h5py  # deferred: h5py is only needed for HDF5 files

    with h5py.File(path, "r") as f:
        if LEBEL_REPEATS_KEY not in f:
            return None, 0
        reps = f[LEBEL_REPEATS_KEY]
        if reps.ndim != 3 or reps.shape[1:] != (n_rows, n_voxels):
            raise DataError(f"{path}: {LEBEL_REPEATS_KEY!r} has shape {reps.shape}, but its 'data' is ({n_rows}, "
                            f"{n_voxels}); the repeats must be (repeats, {n_rows}, {n_voxels}). Is the file complete "
                            "(not a git-annex pointer or a partial download)?")
        if reps.shape[0] < 2:
            return None, int(reps.shape[0])
        ev = np.concatenate([metrics.noise_ceiling(reps[:, rows, v: v + int(chunk)])
                             for v in range(0, n_voxels, int(chunk))])
        return ev, int(reps.shape[0])


def load_lebel(subjects=("UTS01",), *, stories=None, data_home=None, root=None, max_words=None, annotate=True,
               noise_ceiling=True):
    """LeBel et al. 2023 subjects listening to podcast stories; the runs are the stories.

    Parameters
    ----------
    subjects : sequence of str, str or int
        ``UTS01``-style or ``sub-01``-style ids, or an int n for UTS01 ... UTS0n.
    stories : sequence of str, int or None
        Story names (the response files' stems), an int n for the first n in name order, or None
        for every story all the subjects have (tens of GB for all 8 subjects: choose a few).
    data_home, root
        The ds003020 folder is ``root``, default ``<data_home>/lebel``.
    max_words : int or None
        See :func:`~brainattr.data.cut_stimulus`.
    annotate : bool
    noise_ceiling : bool
        When a chosen story's file holds each repeat (:data:`LEBEL_REPEATS_KEY`; the release's
        ``wheretheressmoke``), compute each voxel's explainable variance from them.

    Returns
    -------
    list of Dataset
        ``name="lebel"``, TR 2.0045 s; voxels are cortical voxels in each subject's space (no MNI
        coordinates, none marked as language: use ``voxel_set="all"`` or ``"r>X"``). A repeated
        story holds the average of its repeats (the file's ``data``); with repeats,
        ``meta["explainable_variance"]`` (n_voxels,) over the TRs the pipeline keeps
        (:func:`repeats_ceiling`), ``meta["repeated_story"]`` and ``meta["n_repeats"]``.
    """
    root = Path(root) if root is not None else data_root(data_home) / "lebel"
    ids = (list(LEBEL_SUBJECTS[: int(subjects)]) if isinstance(subjects, (int, np.integer))
           else [lebel_subject(s) for s in subject_list(subjects)])
    have = [set(lebel_stories(root, s)) for s in ids]
    if stories is None or isinstance(stories, (int, np.integer)):
        common = sorted(set.intersection(*have)) if have else []
        chosen = common if stories is None else common[: int(stories)]
    else:
        chosen = [str(s) for s in stories]
    if 0 < len(chosen) < 2:
        raise DataError(f"LeBel et al. 2023: stories {chosen}: choose at least 2 stories; they are the runs that "
                        "leave-one-run-out cross-validation leaves out.")
    if not chosen:
        raise missing_files_error("LeBel et al. 2023 files not found", root.parent,
                                  [root / "derivative" / "preprocessed_data" / s / "<story>.hf5" for s in ids],
                                  lebel_instructions(root))
    responses = {s: root / "derivative" / "preprocessed_data" / s for s in ids}
    grids = root / "derivative" / "TextGrids"
    missing = [responses[s] / f"{st}.hf5" for s in ids for st in chosen if not (responses[s] / f"{st}.hf5").exists()]
    missing += [grids / f"{st}.TextGrid" for st in chosen if not (grids / f"{st}.TextGrid").exists()]
    if missing:
        raise missing_files_error("LeBel et al. 2023 files not found", root.parent, missing, lebel_instructions(root))
    story_words = {st: textgrid_words(grids / f"{st}.TextGrid") for st in chosen}
    datasets, stimulus, layout = [], None, None
    for s in ids:
        arrays = {st: read_array(responses[s] / f"{st}.hf5") for st in chosen}
        n_vox = {a.shape[1] for a in arrays.values()}
        if len(n_vox) != 1:
            raise DataError(f"{responses[s]}: the stories have different voxel counts "
                            f"{ {st: a.shape[1] for st, a in arrays.items()} }; they must share one cortical mask.")
        rows = {st: a.shape[0] for st, a in arrays.items()}
        if stimulus is None:
            stimulus, layout = _lebel_stimulus(story_words, rows, grids), rows
        elif rows != layout:
            raise DataError(f"subject {s}: stories of {rows} TRs, but {ids[0]}: {layout}; the same story should have "
                            "the same number of TRs for every subject (check the files).")
        Y, unmeasured = [], []
        offset = 0
        for run, st in enumerate(chosen):
            n_trs = int(np.sum(stimulus.tr_runs == run))
            full = np.repeat(arrays[st].mean(axis=0, keepdims=True), n_trs, axis=0)
            _, filled = story_grid(rows[st], 0.0)
            full[filled] = arrays[st]
            Y.append(full)
            unmeasured += [offset + t for t in range(n_trs) if not filled.start <= t < filled.stop]
            offset += n_trs
        n = n_vox.pop()
        warnings.warn(f"LeBel et al. 2023 {s}: the release marks no language voxels (cortical voxels in the subject's "
                      "own space); attribute with voxel_set='all' or 'r>0.1'.", stacklevel=2)
        meta = dict(layout="ds003020", source_subject=s, stories=list(chosen), trim=LEBEL_TRIM,
                    unmeasured_trs=tuple(unmeasured), coordinates="none in the release (subject space)")
        if noise_ceiling:
            meta.update(_ceiling(responses[s], chosen, rows, n, stimulus))
        datasets.append(Dataset(stimulus=stimulus, subject=f"sub-{s}", responses=np.concatenate(Y),
                                voxel_coords=np.full((n, 3), np.nan), voxel_labels=np.full(n, "cortex"),
                                voxel_is_language=np.zeros(n, dtype=bool), name="lebel", meta=meta))
    if annotate:
        from dataclasses import replace

        stimulus = replace(stimulus, annotations=word_annotations(stimulus.words))
        datasets = [replace(ds, stimulus=stimulus) for ds in datasets]
    cut, tr_keep = cut_stimulus(stimulus, max_words)
    return finish_datasets(datasets, cut, tr_keep)


def _ceiling(folder, chosen, rows, n_voxels, stimulus) -> dict:
    """``meta`` entries of the noise ceiling from the first chosen story whose file holds repeats (else none)."""
    for run, story in enumerate(chosen):
        path = folder / f"{story}.hf5"
        keep = kept_rows(rows[story], int(np.sum(stimulus.tr_runs == run)))
        ev, n_repeats = repeats_ceiling(path, rows[story], n_voxels, keep)
        if ev is not None:
            return dict(repeated_story=story, n_repeats=n_repeats, explainable_variance=ev)
        if story == LEBEL_REPEATED_STORY:
            warnings.warn(f"{path} holds {n_repeats or 'no'} separate repeat(s) ({LEBEL_REPEATS_KEY!r}), only their "
                          "average: no noise ceiling for these voxels.", stacklevel=3)
    return {}


def _lebel_stimulus(story_words, rows, grids) -> Stimulus:
    words, onsets, word_runs, tr_times, tr_runs, start = [], [], [], [], [], 0.0
    for run, (story, (w, t)) in enumerate(story_words.items()):
        if w.size == 0:
            raise DataError(f"{grids / (story + '.TextGrid')} has no words in its word tier.")
        t = t + LEBEL_AUDIO_START
        n_trs, _ = story_grid(rows[story], float(t.max()))
        if n_trs > sum(LEBEL_TRIM) + rows[story] + 2:
            raise DataError(f"{grids / (story + '.TextGrid')}: its last word, at {t.max():.1f} s, is "
                            f"{n_trs - sum(LEBEL_TRIM) - rows[story]} TRs after the end of the story's {rows[story]} "
                            "response TRs (+ 15 trimmed); is this the TextGrid of the same story?")
        words.append(w)
        onsets.append(start + t)
        word_runs.append(np.full(w.size, run))
        tr_times.append(start + LEBEL_TR * np.arange(n_trs))
        tr_runs.append(np.full(n_trs, run))
        start += LEBEL_TR * n_trs
    return Stimulus(name="lebel_" + ("+".join(story_words) if len(story_words) <= 3 else f"{len(story_words)}stories"),
                    words=np.concatenate(words), word_onsets=np.concatenate(onsets),
                    word_runs=np.concatenate(word_runs), tr_times=np.concatenate(tr_times),
                    tr_runs=np.concatenate(tr_runs), tr=LEBEL_TR,
                    source=f"LeBel et al. 2023 ({LEBEL_URL}), stories {', '.join(story_words)}")
