"""What the real-data loaders share: where the files live, subject ids, cutting, and the trimmed-TR checks.

The dataset modules (:mod:`~brainattr.data.harry_potter`, :mod:`~brainattr.data.moth`) build their
Datasets with these helpers; the user-facing ones are re-exported by :mod:`brainattr.data`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..schema import DataError, Dataset, Stimulus, drop_bad_voxels
from ..trs import TRIM, trim_mask

#: Environment variable naming the folder that holds the real datasets.
DATA_ENV = "BRAINATTR_DATA"

#: Fewest TRs a run keeps when ``max_words`` cuts it: the pipeline trims 20 + 15 (:data:`brainattr.trs.TRIM`)
#: and leave-one-run-out needs a few TRs left in every run.
MIN_RUN_TRS = 45
#: TRs kept after a run's last kept word when ``max_words`` cuts it (the 4 hemodynamic delays).
CUT_TAIL_TRS = 4


def data_root(data_home=None) -> Path:
    """The folder holding the real datasets: ``data_home``, else ``$BRAINATTR_DATA``, else ``~/brainattr_data``."""
    return Path(data_home or os.environ.get(DATA_ENV) or Path.home() / "brainattr_data").expanduser()


def subject_list(subjects) -> list[str]:
    """Subject ids as a list of str (one str is one subject)."""
    if isinstance(subjects, (str, np.str_)):
        return [str(subjects)]
    return [str(s) for s in subjects]


def subject_number(subject: str) -> int | None:
    """The number in ``sub-01``, ``sub1``, ``subject_1`` or ``01`` (any case), or None if there is none."""
    m = re.fullmatch(r"(?:sub-?|subject_?)?0*(\d+)", subject.strip(), flags=re.I)
    return int(m.group(1)) if m else None


def missing_files_error(title, root, missing, instructions) -> DataError:
    """One error naming the missing files (the first 12), where to put them and where to get them.

    Parameters
    ----------
    title : str
    root : Path
        The data root the files belong under.
    missing : list of Path
    instructions : str
        The dataset's sources and layout.
    """
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


def finish_datasets(datasets, stimulus, tr_keep) -> list:
    """Put ``stimulus`` (maybe cut) in, cut responses to the kept TRs, renumber unmeasured TRs, drop bad voxels.

    Parameters
    ----------
    datasets : list of Dataset
    stimulus : Stimulus
        The stimulus :func:`cut_stimulus` returned.
    tr_keep : array of bool, shape (n_trs,)
        Kept TRs of the datasets' (uncut) stimulus.

    Returns
    -------
    list of Dataset
    """
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
        TRs dropped at the start and end of each run (:func:`brainattr.trs.trim_mask`).
    """
    bad = unmeasured_trs(dataset) & trim_mask(dataset.stimulus.tr_runs, tuple(trim))
    if bad.any():
        raise DataError(f"Dataset '{dataset.name}' {dataset.subject}: trim={tuple(trim)} keeps {int(bad.sum())} TR(s) "
                        f"that the release had already removed (they hold the run mean, not data); use at least "
                        f"trim={tuple(dataset.meta.get('trim', TRIM))}.")


def explainable_variance(dataset: Dataset):
    """The per-voxel explainable variance a loader stored, array of shape (n_voxels,), or None."""
    ev = dataset.meta.get("explainable_variance")
    return None if ev is None else np.asarray(ev)
