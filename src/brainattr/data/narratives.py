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

``align.csv`` has no header and one row per transcript word: the word, the word as aligned (lower
case, ``<unk>`` when out of the aligner's vocabulary), its start and end in seconds from the start
of the audio file; words Gentle could not find in the audio have empty times. The audio file
starts at the first event of the run's ``events.tsv`` that plays it (``stim_file``), so a word
is heard at that onset plus its Gentle start.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..schema import DataError
from ._common import data_root, subject_list, subject_number
from .bids import events_file, load_bids

NARRATIVES_URL = "https://openneuro.org/datasets/ds002345"
#: The preprocessed data the loader reads by default: fMRIPrep, then AFNI's confound regression
#: without smoothing (``desc-clean``), volumetric MNI space at the native resolution.
NARRATIVES_DERIVATIVES = "derivatives/afni-nosmooth"
NARRATIVES_SPACE = "MNI152NLin2009cAsym"
NARRATIVES_DESC = "clean"
#: The repetition time of every Narratives scan (its README and sidecars).
NARRATIVES_TR = 1.5


def narratives_instructions(root) -> str:
    return (f"Narratives (Nastase et al. 2021), OpenNeuro ds002345 ({NARRATIVES_URL}); e.g. with DataLad:\n"
            f"  datalad clone https://github.com/OpenNeuroDatasets/ds002345.git {root}\n"
            f"  cd {root} && datalad get sub-001/func stimuli/gentle/pieman "
            f"{NARRATIVES_DERIVATIVES}/sub-001/func {NARRATIVES_DERIVATIVES}/tpl-{NARRATIVES_SPACE}")


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


def load_narratives(subjects=("sub-001",), *, task="pieman", data_home=None, root=None,
                    derivatives=NARRATIVES_DERIVATIVES, space=NARRATIVES_SPACE, desc=NARRATIVES_DESC, filters=None,
                    mask=None, atlas=None, atlas_labels=None, pseudo_runs=None, language="harvard-oxford",
                    detrend=True, max_words=None, annotate=True) -> list:
    """Narratives subjects listening to one story (or several: ``task=None`` reads every task as a run).

    Parameters
    ----------
    subjects : sequence of str, str or int
        ``sub-001``-style ids (``sub-01`` and ``1`` work too), or an int n for the first n.
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

    Returns
    -------
    list of Dataset
        ``name="narratives"``, TR 1.5 s from the sidecars.
    """
    root = Path(root) if root is not None else data_root(data_home) / "narratives"
    if not (root / "stimuli" / "gentle").is_dir():
        raise DataError(f"Narratives not found: {root / 'stimuli' / 'gentle'} is missing. Put the ds002345 folder at "
                        f"{root} (or pass root=...).\n" + narratives_instructions(root))
    if isinstance(subjects, (int, np.integer)):
        ids = int(subjects)
    else:
        ids = [f"sub-{subject_number(s):03d}" if subject_number(s) is not None else s for s in subject_list(subjects)]
    deriv = root / derivatives
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

    return load_bids(ids, bids_root=root, derivatives=derivatives, task=task, space=space, desc=desc,
                     filters=filters, words=gentle_words, mask=mask, atlas=atlas, atlas_labels=atlas_labels,
                     pseudo_runs=pseudo_runs, language=language, detrend=detrend, max_words=max_words,
                     annotate=annotate,
                     name="narratives")
