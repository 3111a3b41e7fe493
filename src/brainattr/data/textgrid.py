"""Praat TextGrid word timings (long or short text format), as the Moth Radio Hour release ships them."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..schema import DataError

#: TextGrid labels that are not words (silence, breath, noise; Huth lab conventions).
TEXTGRID_SKIP = frozenset({"", "sp", "sil", "sl", "br", "lg", "ls", "ns", "cg", "sentence_start",
                           "sentence_end"})

_TG_TOKEN = re.compile(r'"((?:[^"]|"")*)"|(<exists>|<absent>)|(?<![\w.])(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)(?![\w.])')


def _textgrid_tokens(text: str) -> list:
    text = re.sub(r"\[\s*\d*\s*\]", "", text)  # "item [1]:", "intervals [3]:" carry no data
    out = []
    for m in _TG_TOKEN.finditer(text):
        if m.group(1) is not None:
            out.append(m.group(1).replace('""', '"'))
        elif m.group(2) is not None:
            out.append(m.group(2))
        else:
            out.append(float(m.group(3)))
    return out


def read_textgrid(path) -> dict:
    """Read a Praat TextGrid (long or short text format, UTF-8 or UTF-16).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict of str -> pandas.DataFrame
        One table per tier, in file order, with columns ``start``, ``end`` (seconds) and ``text``
        (a point tier has ``start == end``).
    """
    raw = Path(path).read_bytes()
    enc = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    tokens = _textgrid_tokens(raw.decode(enc, errors="replace"))
    try:
        if not str(tokens[0]).startswith("ooTextFile") or tokens[1] != "TextGrid":
            raise ValueError("not a TextGrid text file")
        pos = 4
        if tokens[pos] in ("<exists>", "<absent>"):
            if tokens[pos] == "<absent>":
                return {}
            pos += 1
        n_tiers, pos = int(tokens[pos]), pos + 1
        tiers = {}
        for _ in range(n_tiers):
            kind, name, n = tokens[pos], str(tokens[pos + 1]), int(tokens[pos + 4])
            pos += 5
            if kind == "IntervalTier":
                rows = [tokens[pos + 3 * i: pos + 3 * i + 3] for i in range(n)]
                pos += 3 * n
            elif kind == "TextTier":
                rows = [[tokens[pos + 2 * i], tokens[pos + 2 * i], tokens[pos + 2 * i + 1]] for i in range(n)]
                pos += 2 * n
            else:
                raise ValueError(f"unknown tier class {kind!r}")
            table = pd.DataFrame(rows, columns=["start", "end", "text"])
            tiers[name] = table.astype({"start": float, "end": float, "text": str})
        return tiers
    except (IndexError, ValueError, TypeError) as err:
        raise DataError(f"{path} is not a readable Praat TextGrid ({err}).") from None


def textgrid_words(path, tier=None):
    """Words and onsets of a TextGrid's word tier, silences and noise labels dropped.

    Parameters
    ----------
    path : str or Path
    tier : str or None
        Tier name; default the tier named "word"/"words" (any case), else the last tier.

    Returns
    -------
    words : array of str, shape (n_words,)
    onsets : array of float, shape (n_words,)
        Seconds from the start of the audio.
    """
    tiers = read_textgrid(path)
    if not tiers:
        raise DataError(f"{path} has no tiers.")
    if tier is None:
        tier = next((n for n in tiers if n.strip().lower() in ("word", "words")), list(tiers)[-1])
    if tier not in tiers:
        raise DataError(f"{path} has no tier {tier!r} (tiers: {list(tiers)}).")
    table = tiers[tier]
    text = table["text"].str.strip()
    keep = ~text.str.lower().str.strip("{}<>").isin(TEXTGRID_SKIP)
    return text[keep].to_numpy(dtype=str), table["start"][keep].to_numpy(dtype=float)
