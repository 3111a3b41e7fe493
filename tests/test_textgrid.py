"""Praat TextGrid parsing (brainattr.data.textgrid)."""
import numpy as np
import pytest

import _realdata_fixtures as F
from brainattr.data.textgrid import read_textgrid, textgrid_words
from brainattr.schema import DataError


def test_textgrid_long_and_short_formats_read_alike(tmp_path):
    (tmp_path / "long.TextGrid").write_text(F.textgrid_text("story_11"))
    (tmp_path / "short.TextGrid").write_bytes(F.textgrid_text("story_11", short=True).encode("utf-16"))
    long, short = read_textgrid(tmp_path / "long.TextGrid"), read_textgrid(tmp_path / "short.TextGrid")
    assert list(long) == list(short) == ["phone", "word"]
    assert long["phone"].text[0] == 'a "quoted" phone'
    for a, b in zip(long.values(), short.values()):
        np.testing.assert_allclose(a[["start", "end"]], b[["start", "end"]])
        assert list(a.text) == list(b.text)
    words, onsets = textgrid_words(tmp_path / "short.TextGrid")
    np.testing.assert_array_equal(words, F.MOTH_WORDS["story_11"])
    np.testing.assert_allclose(onsets, F.moth_word_times("story_11"))
    (tmp_path / "bad.TextGrid").write_text("not a textgrid")
    with pytest.raises(DataError, match="not a readable Praat TextGrid"):
        read_textgrid(tmp_path / "bad.TextGrid")
