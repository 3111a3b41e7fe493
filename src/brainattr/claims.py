"""The paper's claims, in one cited table, and the chapters' "paper vs this run" tables built from it.

Every number of Proietti, Capobianco & Toneva (2025, arXiv 2510.12355) that a chapter compares
with lives in ``paper_claims.csv`` (shipped with the package): one row per claim, with the
paper's statement, its number or range where it gives one, the units, where in the paper it is
(``source``) and how far the project's reference notes support it (``support``, ``verified``:
the paper's body could not be read directly, so every value is second-hand). Chapters name
claims by id and never type the paper's numbers:

>>> from brainattr import claims
>>> claims.value("iou-t10")
0.16
>>> claims.table([("iou-t10", "0.150 (chance 0.010)", claims.verdict(True))])  # doctest: +SKIP

A chapter's verdict logic (what "same direction" means for each claim) stays in the chapter.
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
#: Columns of a chapter's comparison table (:func:`table`).
TABLE_COLUMNS = ["claim", "paper", "this run", "verdict", "in the paper"]


@functools.lru_cache(maxsize=1)
def _read() -> pd.DataFrame:
    text = resources.files("brainattr").joinpath(CSV).read_text(encoding="utf-8")
    df = pd.read_csv(io.StringIO(text), comment="#", dtype={c: str for c in REQUIRED + ("units",)},
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
        ``statement`` (the claim in a sentence), ``source`` (where in arXiv 2510.12355),
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


def verdict(agrees) -> str:
    """The chapters' verdict for a claim checked by one condition: ``"same direction"`` or ``"differs"``."""
    return "same direction" if agrees else "differs"


def table(rows) -> pd.DataFrame:
    """A chapter's "paper vs this run" table: the paper's side read from the cited table.

    Parameters
    ----------
    rows : sequence of tuples
        ``(claim_id, this_run, verdict)`` or ``(claim_id, this_run, verdict, label)``:
        ``claim_id`` names a row of :func:`paper_claims` (or is a tuple of ids shown as one row,
        their ``paper`` texts joined by "; "); ``this_run`` is the run's number as text;
        ``label`` replaces the claim's label (e.g. when the chapter's threshold is a parameter).

    Returns
    -------
    pandas.DataFrame
        Columns ``claim``, ``paper``, ``this run``, ``verdict`` and ``in the paper`` (the claim's
        figure or appendix), one row per entry of ``rows``.
    """
    out = []
    for row in rows:
        ids, this_run, verdict_, *label = row
        ids = (ids,) if isinstance(ids, str) else tuple(ids)
        found = [claim(i) for i in ids]
        out.append((label[0] if label else found[0]["claim"], "; ".join(c["paper"] for c in found), this_run,
                    verdict_, "; ".join(dict.fromkeys(c["figure"] for c in found))))
    return pd.DataFrame(out, columns=TABLE_COLUMNS)
