"""Tests for brainattr.claims: the cited table of the paper's numbers and the chapters' comparison tables."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from brainattr import claims

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: A claim id in a notebook's claims cells: a quoted kebab-case string (``"iou-t10"``); nothing else the
#: cells quote looks like one.
CLAIM_ID = re.compile(r"""["']([a-z0-9]+(?:-[a-z0-9]+)+)["']""")


def _claim_cells(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code" and "claims." in "".join(c["source"])]


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
    assert {nb[:2] for nb in used.values()} >= {"04", "05", "06", "07"}


def test_notebooks_type_no_paper_numbers_in_their_claims_tables():
    for path in NOTEBOOKS:
        for source in _claim_cells(path):
            assert "≈" not in source and "more than doubles" not in source, path.name


def test_table_reads_the_papers_side():
    out = claims.table([("iou-t10", "0.150 (chance 0.010)", claims.verdict(True)),
                        (("semantic-t60-ba", "semantic-t60-nwp"), "BA 30 %, NWP 25 %", claims.verdict(False), "label")])
    assert list(out.columns) == claims.TABLE_COLUMNS
    assert out.loc[0, "claim"] == "IoU of BA and NWP sets at t = 10 %"
    assert out.loc[0, "paper"] == "≈ 0.16 (chance ≈ 0)" and out.loc[0, "in the paper"] == "Fig. 2"
    assert out.loc[0, "verdict"] == "same direction"
    assert out.loc[1, "claim"] == "label" and out.loc[1, "paper"] == "BA ≈ 33 %; NWP ≈ 20 %"
    assert out.loc[1, "verdict"] == "differs"


def test_unknown_ids_and_missing_numbers_are_clear_errors():
    with pytest.raises(KeyError, match="unknown claim 'no-such-claim'"):
        claims.table([("no-such-claim", "1", "differs")])
    with pytest.raises(ValueError, match="has no 'value'"):
        claims.value("nwp-recency")
    with pytest.raises(ValueError, match="which must be"):
        claims.value("iou-t10", "middle")


def test_chapter_filter():
    ch4 = claims.paper_claims(chapter=4)
    assert len(ch4) and (ch4["chapter"] == 4).all() and "iou-t10" in ch4.index
    assert np.isnan(ch4.loc["iou-t10", "low"])
