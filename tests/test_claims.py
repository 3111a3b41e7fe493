"""Tests for brainattr.claims: the cited table of the paper's numbers, and how the chapters use it."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from brainattr import claims

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: A claim id in a notebook's claims cells: a quoted kebab-case string (``"iou-t10"``); nothing else the
#: cells quote looks like one.
CLAIM_ID = re.compile(r"""["']([a-z0-9]+(?:-[a-z0-9]+)+)["']""")


def _code_cells(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def _claim_cells(path):
    """The code cells that compare with the paper: read its numbers or build a verdict table."""
    return [s for s in _code_cells(path) if any(m in s for m in ("claims.", "verdict_table", "claim_id"))]


def _ids_used():
    used = {}
    for path in NOTEBOOKS:
        for source in _claim_cells(path):
            for claim_id in CLAIM_ID.findall(source):
                used.setdefault(claim_id, path.name)
    return used


def test_table_has_unique_ids_and_every_required_column_filled():
    df = claims.paper_claims()
    assert df["claim_id"].is_unique and len(df) >= 20
    for column in claims.REQUIRED:
        assert df[column].astype(str).str.strip().ne("").all(), f"empty {column!r}"
    assert df["chapter"].between(1, 8).all()
    assert df["source"].str.contains("2510.12355").all()     # every claim cites the paper (or its review)


def test_numbers_have_units_and_ranges_are_ordered():
    df = claims.paper_claims()
    has_number = df[list(claims.NUMBERS)].notna().any(axis=1)
    assert has_number.sum() >= 10
    assert df.loc[has_number, "units"].str.strip().ne("").all()
    both = df["low"].notna() & df["high"].notna()
    assert (df.loc[both, "low"] <= df.loc[both, "high"]).all()


def test_the_papers_headline_numbers():
    assert claims.value("iou-t10") == 0.16
    assert (claims.value("iou-chance-t60-80", "low"), claims.value("iou-chance-t60-80", "high")) == (1.5, 2.0)
    assert claims.value("iou-t98", "low") == 0.8
    assert claims.value("semantic-t60-ba") == 33 and claims.value("semantic-t60-nwp") == 20
    assert claims.value("masking-nwp-ce", "low") == 2 and claims.value("masking-ba-r") == -100


def test_every_claim_id_a_notebook_uses_is_in_the_table():
    used = _ids_used()
    known = set(claims.paper_claims().index)
    assert used, "no notebook compares with the paper's claims"
    missing = {claim_id: nb for claim_id, nb in used.items() if claim_id not in known}
    assert not missing, f"claim ids used by notebooks but missing from {claims.CSV}: {missing}"
    # the chapters with a "paper vs this run" table all read it
    assert {nb[:2] for nb in used.values()} >= {"02", "04", "05", "06", "07", "08"}


def test_every_verdict_comes_from_the_one_rule():
    """No chapter writes a verdict by hand: every table goes through pipeline.verdict_table (stats.verdict)."""
    judged = set()
    for path in NOTEBOOKS:
        for source in _code_cells(path):
            assert "claims.verdict" not in source and "claims.table" not in source, path.name
            for word in ("same direction", "not reproduced", "reproduced", "differs", "weaker"):
                assert f'"{word}' not in source and f"'{word}" not in source, (path.name, word)
        if any("pipeline.verdict_table" in s for s in _code_cells(path)):
            judged.add(path.name[:2])
    assert judged >= {"02", "04", "05", "06", "07", "08"}


def test_every_claim_is_used_by_its_chapter_and_listed_in_the_figures_index():
    used = _ids_used()
    df = claims.paper_claims()
    assert set(df.index) <= set(used), f"claims no chapter judges: {set(df.index) - set(used)}"
    for claim_id, row in df.iterrows():
        assert used[claim_id][:2] == f"{row['chapter']:02d}", (claim_id, used[claim_id])
    index = (REPO / "book" / "figures_index.md").read_text(encoding="utf-8")
    for claim_id, row in df.iterrows():
        line = next((ln for ln in index.splitlines() if f"`{claim_id}`" in ln), None)
        assert line is not None, f"book/figures_index.md does not list {claim_id}"
        assert f"notebooks/{used[claim_id][:-6]}.html" in line, (claim_id, line)


def test_notebooks_type_no_paper_numbers_in_their_claims_tables():
    for path in NOTEBOOKS:
        for source in _claim_cells(path):
            assert "≈" not in source and "more than doubles" not in source, path.name


def test_paper_range_and_direction():
    assert claims.paper_range("iou-t10") == (0.16, 0.16)                 # a single number is its own range
    assert claims.paper_range("iou-chance-t60-80") == (1.5, 2.0)
    assert claims.paper_range("iou-t98") == (0.8, None)                  # "> 0.8"
    assert claims.paper_range("masking-nwp-ce") == (2.0, None)           # "more than doubles"
    assert claims.paper_range("spread-early") == (None, None)            # a direction, no number
    assert claims.direction("spread-early") == "less" and claims.direction("spread-late") == "greater"
    assert claims.direction("qwen-canonical") is None


def test_every_claim_with_a_number_or_direction_says_what_is_estimated():
    df = claims.paper_claims()
    assert df["direction"].isin(("",) + claims.DIRECTIONS).all()
    for claim_id, row in df.iterrows():
        low, high = claims.paper_range(claim_id)
        if low is not None or high is not None or row["direction"]:
            assert row["estimate"].strip() and row["null"].strip() and row["units"].strip(), claim_id
        if row["direction"] and low is not None and high is not None:   # the range lies on its direction's side
            assert low <= high


def test_unknown_ids_and_missing_numbers_are_clear_errors():
    with pytest.raises(KeyError, match="unknown claim 'no-such-claim'"):
        claims.paper_range("no-such-claim")
    with pytest.raises(ValueError, match="has no 'value'"):
        claims.value("nwp-recency")
    with pytest.raises(ValueError, match="which must be"):
        claims.value("iou-t10", "middle")


def test_chapter_filter():
    ch4 = claims.paper_claims(chapter=4)
    assert len(ch4) and (ch4["chapter"] == 4).all() and "iou-t10" in ch4.index
    assert np.isnan(ch4.loc["iou-t10", "low"])
