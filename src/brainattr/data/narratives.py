"""Narratives (Nastase et al. 2021; OpenNeuro ds002345): spoken stories, BIDS, word times from Gentle.

A BIDS dataset read by :func:`~brainattr.data.bids.load_bids`, with the dataset's own word
timings. Files, under ``<data_home>/narratives/`` (the ds002345 folder)::

    sub-001/func/sub-001_task-pieman_run-1_events.tsv        when the story's audio starts (s)
    sub-001/func/sub-001_task-pieman_run-1_bold.json         RepetitionTime (1.5 s)
    derivatives/afni-nosmooth/sub-001/func/
        sub-001_task-pieman_run-1_space-MNI152NLin2009cAsym_res-native_desc-clean_bold.nii.gz
    derivatives/afni-nosmooth/tpl-MNI152NLin2009cAsym/
        tpl-MNI152NLin2009cAsym_res-pieman_desc-brain_mask.nii.gz   the brain mask on the task's grid
    stimuli/gentle/pieman/align.csv                          Gentle word alignment of the story

    code/scan_exclude.json                                   scans the authors recommend excluding

``align.csv`` has no header and one row per transcript word: the word, the word as aligned (lower
case, ``<unk>`` when out of the aligner's vocabulary), its start and end in seconds from the start
of the audio file; words Gentle could not find in the audio have empty times. The audio file
starts at the first event of the run's ``events.tsv`` that plays it (``stim_file``), so a word
is heard at that onset plus its Gentle start.

``code/scan_exclude.json`` maps each task to the subjects with scans the authors recommend leaving
out (poor intersubject correlation in early auditory cortex, large lags, or known problems), each to
the BIDS name stems of those scans: ``{"pieman": {"sub-001": ["sub-001_task-pieman_run-1", ...]},
"lucy": {}, ...}``. The loader leaves them out by default (``exclude_scans=True``).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..schema import DataError
from ._common import data_root, subject_list, subject_number
from .bids import events_file, find_bold_runs, load_bids

NARRATIVES_URL = "https://openneuro.org/datasets/ds002345"
#: The preprocessed data the loader reads by default: fMRIPrep, then AFNI's confound regression
#: without smoothing (``desc-clean``), volumetric MNI space at the native resolution.
NARRATIVES_DERIVATIVES = "derivatives/afni-nosmooth"
NARRATIVES_SPACE = "MNI152NLin2009cAsym"
NARRATIVES_DESC = "clean"
#: The repetition time of every Narratives scan (its README and sidecars).
NARRATIVES_TR = 1.5
#: The release's list of scans its authors recommend excluding, relative to the ds002345 folder.
NARRATIVES_SCAN_EXCLUDE = "code/scan_exclude.json"


def narratives_instructions(root) -> str:
    return (f"Narratives (Nastase et al. 2021), OpenNeuro ds002345 ({NARRATIVES_URL}); e.g. with DataLad:\n"
            f"  datalad clone https://github.com/OpenNeuroDatasets/ds002345.git {root}\n"
            f"  cd {root} && datalad get {NARRATIVES_SCAN_EXCLUDE} sub-002/func stimuli/gentle/pieman "
            f"{NARRATIVES_DERIVATIVES}/sub-002/func {NARRATIVES_DERIVATIVES}/tpl-{NARRATIVES_SPACE}")


def read_scan_exclude(path) -> list:
    """The BIDS name stems of the scans listed in a Narratives ``code/scan_exclude.json``.

    The release's file maps each task to a dict of subject -> stems
    (``{"pieman": {"sub-001": ["sub-001_task-pieman_run-1"]}, "lucy": {}}``); a task mapping
    straight to a list of stems is read too.

    Returns
    -------
    list of str
        Every stem, e.g. ``"sub-001_task-pieman_run-1"`` (one scan) or ``"sub-053_task-lucy"``
        (every run of the subject's task).

    Raises
    ------
    DataError
        The file is not JSON of that shape (naming it and the fix).
    """
    path = Path(path)
    fix = (f"re-download it (datalad get {NARRATIVES_SCAN_EXCLUDE}), or pass exclude_scans=False to keep every "
           "scan.")
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err}); {fix}") from None
    if not isinstance(table, dict):
        raise DataError(f"{path}: expected a JSON object of task -> {{subject: [scan stems]}}, got a "
                        f"{type(table).__name__}; {fix}")
    stems = []
    for task, entry in table.items():
        lists = entry.values() if isinstance(entry, dict) else [entry]
        for scans in lists:
            if not isinstance(scans, list) or not all(isinstance(x, str) for x in scans):
                raise DataError(f"{path}: task {task!r} lists {scans!r}; each subject must map to a list of BIDS "
                                f"name stems such as 'sub-001_task-{task}_run-1'; {fix}")
            stems += scans
    return stems


def _same_label(a, b) -> bool:
    """BIDS labels equal, numbers by value (``run-01`` is ``run-1``)."""
    return int(a) == int(b) if a.isdigit() and b.isdigit() else a == b


def listed_scan(entities, stems):
    """The first stem whose every entity the run has (``sub-001_task-pieman`` lists all its pieman runs), or None.

    Parameters
    ----------
    entities : dict of str -> str
        The BOLD file's entities (:func:`~brainattr.data.bids.bids_entities`).
    stems : list of str
        :func:`read_scan_exclude`.
    """
    for stem in stems:
        wanted = dict(part.split("-", 1) for part in stem.split("_") if "-" in part)
        if wanted and all(k in entities and _same_label(entities[k], v) for k, v in wanted.items()):
            return stem
    return None


def scan_exclusion(root, exclude_scans=True):
    """The ``exclude`` of :func:`~brainattr.data.bids.load_bids` that leaves out the release's listed scans.

    Returns
    -------
    exclude : callable or None
        ``exclude(run)`` gives why a listed run is left out, None for the others; None when
        ``exclude_scans`` is False or the release has no ``code/scan_exclude.json`` (warned).
    path : Path or None
        The exclusion file read.
    """
    path = Path(root) / NARRATIVES_SCAN_EXCLUDE
    if not exclude_scans:
        return None, None
    if not path.exists():
        warnings.warn(f"{path} not found: the scans the Narratives authors recommend excluding are NOT left out. "
                      f"Get it (cd {root} && datalad get {NARRATIVES_SCAN_EXCLUDE}), or pass exclude_scans=False to "
                      "keep every scan knowingly.", stacklevel=3)
        return None, None
    stems = read_scan_exclude(path)

    def exclude(run):
        stem = listed_scan(run["entities"], stems)
        return None if stem is None else (f"listed as {stem!r} in {path}, the scans the Narratives authors recommend "
                                          "excluding; exclude_scans=False keeps it")

    return exclude, path


def first_subjects(deriv, n, task, exclude, **select) -> list:
    """The first ``n`` subjects (in name order) with a BOLD run of ``task`` that ``exclude`` keeps.

    Parameters
    ----------
    deriv : Path
        The derivatives folder holding ``sub-*/``.
    n : int
    task : str or None
    exclude : callable or None
        :func:`scan_exclusion`.
    **select
        ``space``, ``desc``, ``filters`` of :func:`~brainattr.data.bids.find_bold_runs`.

    Returns
    -------
    list of str
    """
    found, skipped = [], []
    for folder in sorted(p for p in Path(deriv).glob("sub-*") if p.is_dir()):
        try:
            runs = find_bold_runs(deriv, folder.name, task=task, **select)
        except DataError:
            continue                         # no scan of this story
        if exclude is not None and all(exclude(r) for r in runs):
            skipped.append(folder.name)
            continue
        found.append(folder.name)
        if len(found) == int(n):
            break
    if not found:
        raise DataError(f"no subject under {deriv} has a {task or 'BOLD'} scan the release does not exclude "
                        f"(all excluded: {', '.join(skipped) or 'none'}). Download more subjects, or pass "
                        "exclude_scans=False.")
    if skipped:
        warnings.warn(f"Narratives task {task}: skipped subject(s) {', '.join(skipped)}, whose scans the release "
                      f"excludes ({NARRATIVES_SCAN_EXCLUDE}).", stacklevel=3)
    return found


def read_gentle_alignment(path) -> pd.DataFrame:
    """Words and their times from a Gentle ``align.csv`` (no header: word, aligned word, start, end).

    Words Gentle did not find in the audio (empty times) keep their place in the text: their
    onsets are interpolated between the neighbouring aligned words (times are kept non-decreasing).

    Returns
    -------
    pandas.DataFrame
        Columns ``word``, ``onset``, ``duration`` (seconds from the start of the audio),
        ``aligned`` (bool), ``line`` (1-based line in the file).
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, header=None, names=["word", "aligned_word", "start", "end"], dtype={0: str, 1: str},
                            keep_default_na=False, na_values={"start": [""], "end": [""]}, encoding="utf-8")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{path} is not a Gentle alignment CSV ({err}); expected rows 'word,aligned word,start,end' "
                        "without a header, as in stimuli/gentle/<story>/align.csv.") from None
    table["line"] = np.arange(len(table)) + 1
    table = table[table["word"].str.strip() != ""].reset_index(drop=True)
    start = pd.to_numeric(table["start"], errors="coerce").to_numpy(float)
    end = pd.to_numeric(table["end"], errors="coerce").to_numpy(float)
    aligned = np.isfinite(start)
    if not aligned.any():
        raise DataError(f"{path}: no word has a time (Gentle aligned none); check the file.")
    idx = np.arange(len(table))
    onset = np.interp(idx, idx[aligned], start[aligned])
    onset = np.maximum.accumulate(onset)        # Gentle's times can step back by a few ms at re-syncs
    duration = np.where(aligned & np.isfinite(end), end - start, 0.0)
    return pd.DataFrame({"word": table["word"].str.strip().to_numpy(str), "onset": onset,
                         "duration": np.clip(duration, 0, None), "aligned": aligned, "line": table["line"].to_numpy()})


def audio_onset(events_path, task):
    """The story an events file plays and when its audio file starts (seconds from the run's start).

    Returns
    -------
    story : str
        The audio file's name without ``_audio.wav`` (the folder under ``stimuli/gentle/``).
    onset : float
    """
    events = pd.read_csv(events_path, sep="\t", dtype=str, keep_default_na=False)
    if "stim_file" not in events or "onset" not in events:
        raise DataError(f"{events_path}: a Narratives events file needs columns onset and stim_file (it has "
                        f"{list(events.columns)}).")
    played = events[~events["stim_file"].isin(["", "n/a"])]
    stories = list(dict.fromkeys(Path(s).name.removesuffix(".wav").removesuffix("_audio") for s in played["stim_file"]))
    if len(stories) != 1:
        raise DataError(f"{events_path}: the run plays {len(stories)} audio files {stories}; this loader reads runs of "
                        f"one story (task {task!r}), such as pieman, lucy or tunnel.")
    story = stories[0]
    return story, float(pd.to_numeric(played["onset"]).min())


def load_narratives(subjects=("sub-002",), *, task="pieman", data_home=None, root=None,
                    derivatives=NARRATIVES_DERIVATIVES, space=NARRATIVES_SPACE, desc=NARRATIVES_DESC, filters=None,
                    mask=None, atlas=None, atlas_labels=None, pseudo_runs=None, language="harvard-oxford",
                    detrend=True, max_words=None, annotate=True, exclude_scans=True) -> list:
    """Narratives subjects listening to one story (or several: ``task=None`` reads every task as a run).

    Parameters
    ----------
    subjects : sequence of str, str or int
        ``sub-002``-style ids (``sub-02`` and ``2`` work too), or an int n for the first n with a
        scan of the task that is not excluded. (Both pieman scans of ``sub-001`` are excluded.)
    task : str or None
        The story (BIDS task), e.g. ``"pieman"``.
    data_home, root
        The ds002345 folder is ``root``, default ``<data_home>/narratives``.
    derivatives, space, desc, filters
        Which preprocessed files (:func:`~brainattr.data.bids.find_bold_runs`).
    mask : str, Path, "epi" or None
        None: the release's brain mask for the task's grid, else fMRIPrep's beside the run.
    atlas, atlas_labels, pseudo_runs, language, detrend, max_words, annotate
        As for :func:`~brainattr.data.bids.load_bids`. One scan of one story is cut into 4
        pseudo-runs unless ``pseudo_runs`` says otherwise.
    exclude_scans : bool
        Leave out the scans listed in the release's ``code/scan_exclude.json`` (a warning names
        them; a subject with every scan listed is an error). Without that file, nothing is left
        out, with a warning. False keeps every scan.

    Returns
    -------
    list of Dataset
        ``name="narratives"``, TR 1.5 s from the sidecars; ``meta["excluded_runs"]`` (file name ->
        reason) and ``meta["scan_exclude"]`` (the exclusion file read, or None).
    """
    root = Path(root) if root is not None else data_root(data_home) / "narratives"
    if not (root / "stimuli" / "gentle").is_dir():
        raise DataError(f"Narratives not found: {root / 'stimuli' / 'gentle'} is missing. Put the ds002345 folder at "
                        f"{root} (or pass root=...).\n" + narratives_instructions(root))
    deriv = root / derivatives
    exclude, exclude_file = scan_exclusion(root, exclude_scans)
    if isinstance(subjects, (int, np.integer)):
        ids = first_subjects(deriv, int(subjects), task, exclude, space=space, desc=desc, filters=filters)
    else:
        ids = [f"sub-{subject_number(s):03d}" if subject_number(s) is not None else s for s in subject_list(subjects)]
    if mask is None and atlas is None and task is not None:
        tpl = deriv / f"tpl-{space}" / f"tpl-{space}_res-{task}_desc-brain_mask.nii.gz"
        mask = tpl if tpl.exists() else None
    roots = [deriv, root]

    def gentle_words(run):
        events = events_file(run["path"], roots)
        if events is None:
            raise DataError(f"{run['path']}: no events.tsv for this run in {root}; it gives when the story's audio "
                            f"starts.\n" + narratives_instructions(root))
        story, onset = audio_onset(events, run["entities"].get("task"))
        align = root / "stimuli" / "gentle" / story / "align.csv"
        if not align.exists():
            raise DataError(f"{align} not found (the word alignment of story {story!r}).\n"
                            + narratives_instructions(root))
        table = read_gentle_alignment(align)
        n_unaligned = int((~table["aligned"]).sum())
        if n_unaligned:
            warnings.warn(f"{align}: {n_unaligned} of {len(table)} words have no time in the audio; their onsets are "
                          "interpolated between their neighbours.", stacklevel=2)
        table["onset"] = table["onset"] + onset
        table.attrs["source"] = f"{align} (audio from {onset:g} s, {events.name})"
        return table

    data = load_bids(ids, bids_root=root, derivatives=derivatives, task=task, space=space, desc=desc,
                     filters=filters, words=gentle_words, mask=mask, atlas=atlas, atlas_labels=atlas_labels,
                     pseudo_runs=pseudo_runs, language=language, detrend=detrend, max_words=max_words,
                     annotate=annotate, name="narratives", exclude=exclude)
    return [replace(ds, meta=dict(ds.meta, scan_exclude=None if exclude_file is None else str(exclude_file)))
            for ds in data]
