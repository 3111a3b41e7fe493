"""The built-in stimulus: a public-domain narrative presented like the paper's Harry Potter chapter.

The text is the opening chapters (1-5) of Jane Austen's *Pride and Prejudice* (1813), taken
from Debian's ``r-cran-janeaustenr`` package by ``scripts/extract_stimulus.py`` and shipped as
package data beside this module. It is shown as the Harry Potter data were (Wehbe et al. 2014):
one word every 0.5 s (RSVP), TR = 2 s, split into 4 runs at paragraph boundaries, each run with a
fixation lead-in and lead-out.
"""
from __future__ import annotations

import functools
import importlib.resources

import numpy as np

from ..schema import Stimulus
from .annotate import annotate_words

BUILTIN_TEXT = "pride_and_prejudice_ch1-5.txt"
BUILTIN_SOURCE = ("Jane Austen, Pride and Prejudice (1813), chapters 1-5; public domain; extracted from Debian "
                  "package r-cran-janeaustenr 1.0.0-1 by scripts/extract_stimulus.py")


def load_text(name: str = BUILTIN_TEXT) -> list[str]:
    """Paragraphs of a text shipped in ``brainattr/data``, list of str."""
    text = importlib.resources.files("brainattr.data").joinpath(name).read_text(encoding="utf-8")
    return [p for p in text.splitlines() if p.strip()]


def split_runs(paragraph_lengths, n_runs: int) -> np.ndarray:
    """Run index of each paragraph, splitting at the paragraph boundaries nearest equal shares.

    Parameters
    ----------
    paragraph_lengths : array of int, shape (n_paragraphs,)
        Number of words in each paragraph.
    n_runs : int

    Returns
    -------
    runs : array of int, shape (n_paragraphs,)
    """
    lengths = np.asarray(paragraph_lengths)
    if n_runs < 1 or n_runs > len(lengths):
        raise ValueError(f"n_runs must be between 1 and the number of paragraphs ({len(lengths)}), got {n_runs}.")
    ends = np.cumsum(lengths)
    cuts = [int(np.argmin(np.abs(ends - ends[-1] * k / n_runs))) + 1 for k in range(1, n_runs)]
    cuts = np.maximum.accumulate(np.clip(cuts, 1, len(lengths) - 1))
    runs = np.zeros(len(lengths), dtype=int)
    for c in cuts:
        runs[c:] += 1
    return runs


def rsvp_timing(word_runs, word_duration: float = 0.5, tr: float = 2.0, lead_in: float = 20.0,
                lead_out: float = 10.0):
    """Word onsets and TR times for rapid serial visual presentation, runs laid end to end.

    Parameters
    ----------
    word_runs : array of int, shape (n_words,)
        Run of each word (non-decreasing).
    word_duration : float
        Seconds each word stays on screen (paper: 0.5).
    tr : float
        Repetition time in seconds (paper: 2).
    lead_in, lead_out : float
        Fixation seconds before the first and after the last word of each run.

    Returns
    -------
    word_onsets : array of float, shape (n_words,)
    tr_times : array of float, shape (n_trs,)
    tr_runs : array of int, shape (n_trs,)
    """
    word_runs = np.asarray(word_runs)
    onsets, tr_times, tr_runs = np.empty(len(word_runs)), [], []
    start = 0.0
    for run in np.unique(word_runs):
        idx = np.flatnonzero(word_runs == run)
        onsets[idx] = start + lead_in + word_duration * np.arange(idx.size)
        n_trs = int(np.ceil((lead_in + word_duration * idx.size + lead_out) / tr))
        tr_times.append(start + tr * np.arange(n_trs))
        tr_runs.append(np.full(n_trs, run))
        start += n_trs * tr
    return onsets, np.concatenate(tr_times), np.concatenate(tr_runs)


def paragraph_stimulus(paragraphs, *, name: str, source: str, n_runs: int = 4, word_duration: float = 0.5,
                       tr: float = 2.0, lead_in: float = 20.0, lead_out: float = 10.0, max_words: int | None = None,
                       annotate: bool = True) -> Stimulus:
    """A text of paragraphs presented word by word (RSVP), in runs cut at paragraph boundaries.

    Parameters
    ----------
    paragraphs : list of list of str
        The words of each paragraph, in reading order.
    name, source : str
        The Stimulus' name (``_<n>w`` is appended when ``max_words`` cuts) and provenance.
    n_runs : int
        Scanner runs (fewer when there are fewer paragraphs).
    word_duration, tr, lead_in, lead_out : float
        See :func:`rsvp_timing`.
    max_words : int or None
        Keep only the first ``max_words`` words.
    annotate : bool
        Attach spaCy word annotations (:func:`annotate_words`, characters inferred from the text).

    Returns
    -------
    Stimulus
    """
    paragraphs = [list(p) for p in paragraphs if len(p)]
    if max_words is not None:
        kept, n = [], 0
        for p in paragraphs:
            if n >= max_words:
                break
            kept.append(p[: max_words - n])
            n += len(kept[-1])
        paragraphs = kept
    para_runs = split_runs([len(p) for p in paragraphs], min(n_runs, len(paragraphs)))
    words = np.array([w for p in paragraphs for w in p])
    word_runs = np.concatenate([np.full(len(p), r) for p, r in zip(paragraphs, para_runs)])
    onsets, tr_times, tr_runs = rsvp_timing(word_runs, word_duration, tr, lead_in, lead_out)
    annotations = annotate_words(words) if annotate else None
    return Stimulus(name=name if max_words is None else f"{name}_{len(words)}w", words=words, word_onsets=onsets,
                    word_runs=word_runs, tr_times=tr_times, tr_runs=tr_runs, tr=tr, annotations=annotations,
                    source=source)


@functools.lru_cache(maxsize=4)
def load_builtin_stimulus(n_runs: int = 4, word_duration: float = 0.5, tr: float = 2.0,
                          lead_in: float = 20.0, lead_out: float = 10.0, max_words: int | None = None,
                          annotate: bool = True) -> Stimulus:
    """The built-in stimulus (Pride and Prejudice ch. 1-5, 5,334 words) with RSVP timing.

    Parameters
    ----------
    n_runs : int
        Number of scanner runs (paper: 4).
    word_duration, tr, lead_in, lead_out : float
        See :func:`rsvp_timing`.
    max_words : int or None
        Keep only the first ``max_words`` words (whole paragraphs; tiny test profiles).
    annotate : bool
        Attach spaCy word annotations (:func:`annotate_words`; the characters are inferred from
        the text kept).

    Returns
    -------
    Stimulus
    """
    return paragraph_stimulus([p.split() for p in load_text()], name="pride_and_prejudice", source=BUILTIN_SOURCE,
                              n_runs=n_runs, word_duration=word_duration, tr=tr, lead_in=lead_in, lead_out=lead_out,
                              max_words=max_words, annotate=annotate)
