"""The paper's claims, in one cited table: the paper's side of every chapter's "paper vs this run" table.

Every number of Proietti, Capobianco & Toneva (2025, arXiv 2510.12355) that a chapter compares
with lives in ``paper_claims.csv`` (shipped with the package): one row per claim, with the
paper's statement, its number or range where it gives one (in ``units``), the paper's
``direction`` of the chapter's ``estimate`` relative to its ``null``, where in the paper it is
(``source``) and how far the project's reference notes support it (``support``, ``verified``:
the paper's body could not be read directly, so every value is second-hand). Chapters name
claims by id and never type the paper's numbers:

>>> from brainattr import claims
>>> claims.value("iou-t10")
0.16
>>> claims.paper_range("iou-chance-t60-80"), claims.direction("spread-early")
((1.5, 2.0), 'less')

The verdict itself is :func:`brainattr.stats.verdict`, the one rule; chapters get it through
:func:`brainattr.pipeline.verdict_table`, which reads the paper's range and direction from here.
"""
from __future__ import annotations

import functools
import io
from importlib import resources

import pandas as pd

#: The cited table, a file of the package.
CSV = "paper_claims.csv"
#: Columns every row fills.
REQUIRED = ("claim_id", "chapter", "figure", "claim", "paper", "statement", "source", "support", "verified")
#: Columns holding the paper's numbers (empty where the claim is qualitative).
NUMBERS = ("value", "low", "high")
#: Text columns that may be empty: the numbers' units, the paper's direction ("greater", "less" or empty),
#: what the chapter's estimate is and the null it is compared with.
OPTIONAL_TEXT = ("units", "direction", "estimate", "null")
#: The values ``direction`` may take (empty: the paper states none).
DIRECTIONS = ("greater", "less")


@functools.lru_cache(maxsize=1)
def _read() -> pd.DataFrame:
    text = resources.files("brainattr").joinpath(CSV).read_text(encoding="utf-8")
    df = pd.read_csv(io.StringIO(text), comment="#", dtype={c: str for c in REQUIRED + OPTIONAL_TEXT},
                     keep_default_na=False, na_values={c: [""] for c in NUMBERS})
    df["chapter"] = df["chapter"].astype(int)
    for c in NUMBERS:
        df[c] = df[c].astype(float)
    return df.set_index("claim_id", drop=False)


def paper_claims(chapter=None) -> pd.DataFrame:
    """The paper's claims, one row per claim.

    Parameters
    ----------
    chapter : int or None
        Only the claims a chapter of the book compares with (None: all).

    Returns
    -------
    pandas.DataFrame indexed by ``claim_id``
        Columns ``claim_id``, ``chapter`` (int), ``figure`` (the paper's figure or appendix),
        ``claim`` (short label), ``paper`` (the paper's statement, short, as the chapters show it),
        ``value``, ``low``, ``high`` (float, NaN where the paper gives none), ``units``,
        ``direction`` (``"greater"``, ``"less"`` or ``""``), ``estimate`` and ``null`` (what a
        chapter measures and compares it with), ``statement`` (the claim in a sentence), ``source`` (where in arXiv 2510.12355),
        ``support`` (where the project's reference notes state it) and ``verified`` (how far
        they support it).
    """
    df = _read().copy()
    return df if chapter is None else df[df["chapter"] == int(chapter)]


def claim(claim_id) -> pd.Series:
    """One claim's row of :func:`paper_claims`; a KeyError names the known ids."""
    df = _read()
    if claim_id not in df.index:
        raise KeyError(f"unknown claim {claim_id!r}; the table {CSV} has: {', '.join(df.index)}.")
    return df.loc[claim_id]


def value(claim_id, which="value") -> float:
    """The paper's number for a claim.

    Parameters
    ----------
    claim_id : str
    which : {"value", "low", "high"}
        The point value, or a bound of the range.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the paper gives no such number for that claim.
    """
    if which not in NUMBERS:
        raise ValueError(f"which must be one of {NUMBERS}, got {which!r}.")
    row = claim(claim_id)
    number = row[which]
    if pd.isna(number):
        given = [c for c in NUMBERS if not pd.isna(row[c])]
        raise ValueError(f"claim {claim_id!r} has no {which!r} in {CSV}; it gives {given or 'no number'}.")
    return float(number)


def paper_range(claim_id) -> tuple:
    """The paper's stated range for a claim, as ``(low, high)``; None for an end it does not state.

    A single number is its own range (``(v, v)``); "> 0.8" is ``(0.8, None)``; a claim without a
    number gives ``(None, None)``. This is what :func:`brainattr.stats.verdict` compares the CI with.
    """
    row = claim(claim_id)
    low, high = (None if pd.isna(row[c]) else float(row[c]) for c in ("low", "high"))
    if low is None and high is None and not pd.isna(row["value"]):
        low = high = float(row["value"])
    return low, high


def direction(claim_id):
    """The paper's direction of the chapter's estimate relative to its null: ``"greater"``, ``"less"`` or None."""
    found = str(claim(claim_id)["direction"]).strip()
    if found and found not in DIRECTIONS:
        raise ValueError(f"claim {claim_id!r}: direction {found!r} in {CSV} is not one of {DIRECTIONS}.")
    return found or None
