"""Any text as the stimulus of the simulated subjects (brainattr.data.text), and its clear errors."""
import textwrap

import numpy as np
import pytest

from brainattr.data import load_dataset
from brainattr.data.text import (load_text_stimulus, read_word_timing, sentence_units, text_paragraphs,
                                 timing_stimulus)
from brainattr.schema import DataError

_SENTENCES = [
    'Marguerite Okafor walked down to the harbour before dawn.',
    '"The boats are late again," said Tobias Brandt, shaking his head.',
    'Marguerite laughed and told Tobias that the tide would turn soon.',
    'Nobody in the village believed the old stories about the lighthouse.',
    'The gulls circled above the nets while the fishermen argued quietly.',
    '"Come with me," Marguerite said, "and we will see for ourselves."',
]


def _story(n_paragraphs=12, sentences_per_paragraph=8):
    paragraphs = []
    for p in range(n_paragraphs):
        paragraphs.append(" ".join(_SENTENCES[(p + k) % len(_SENTENCES)] for k in range(sentences_per_paragraph)))
    return paragraphs


def _write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def _timing_table(tmp_path, n_runs=2, words_per_run=160, rate=0.4, first=6.0, name="story.tsv", extra=None):
    rows = ["word\tonset\tduration\trun"]
    words = " ".join(_story()).split()
    k = 0
    for run in range(1, n_runs + 1):
        for i in range(words_per_run):
            rows.append(f"{words[k % len(words)]}\t{first + rate * i:.3f}\t0.3\t{run}")
            k += 1
    rows += extra or []
    return _write(tmp_path, name, "\n".join(rows) + "\n")


# ---------------------------------------------------------------- plain text, RSVP timing
def test_plain_text_paragraphs_become_an_rsvp_stimulus_cut_at_paragraph_boundaries(tmp_path):
    paragraphs = _story()
    # hard-wrapped paragraphs separated by blank lines, as texts usually come
    wrapped = "\n\n".join(textwrap.fill(p, 70) for p in paragraphs)
    path = _write(tmp_path, "My Story.txt", wrapped + "\n")
    stim = load_text_stimulus(path, annotate=False)
    words = " ".join(paragraphs).split()
    assert stim.name == "text_My_Story" and stim.n_words == len(words)
    assert " ".join(stim.words) == " ".join(words)        # words survive the line wrapping
    assert "My Story.txt (sha256 " in stim.source and "RSVP" in stim.source
    assert sorted(set(stim.word_runs)) == [0, 1, 2, 3]
    within = np.diff(stim.word_onsets)[np.diff(stim.word_runs) == 0]
    np.testing.assert_allclose(within, 0.5)
    # runs change only where a paragraph starts
    starts = np.cumsum([0] + [len(p.split()) for p in paragraphs])[:-1]
    assert set(np.flatnonzero(np.diff(stim.word_runs)) + 1) <= set(starts)


def test_one_paragraph_per_line_and_few_paragraphs_split_at_sentences(tmp_path):
    lines = _write(tmp_path, "lines.txt", "\n".join(_story()) + "\n")
    assert load_text_stimulus(lines, annotate=False).n_words == len(" ".join(_story()).split())
    assert [len(p) for p in text_paragraphs("a b\nc\n")] == [2, 1]
    assert [len(p) for p in text_paragraphs("a b\nc\n\nd e f\n")] == [3, 3]
    one = _write(tmp_path, "one.txt", " ".join(_story()))           # a single long paragraph
    stim = load_text_stimulus(one, annotate=False)
    assert np.unique(stim.tr_runs).size == 4
    assert sentence_units([["A", "b."], ["C", "d!", "E"]], 4) == [["A", "b."], ["C", "d!"], ["E"]]


def test_max_words_keeps_the_first_words(tmp_path):
    path = _write(tmp_path, "s.txt", "\n\n".join(_story(16)))
    stim = load_text_stimulus(path, annotate=False, max_words=600)
    assert stim.n_words == 600 and stim.name == "text_s_600w"


# ---------------------------------------------------------------- word-timing table
def test_timing_table_is_used_as_given_runs_laid_end_to_end(tmp_path):
    path = _timing_table(tmp_path)
    stim = load_text_stimulus(path, annotate=False, tr=1.5, lead_out=9.0)
    assert stim.tr == 1.5 and np.unique(stim.word_runs).tolist() == [0, 1]
    run0_trs = int(np.sum(stim.tr_runs == 0))
    # run 0 lasts until 9 s after its last word ends: 6 + 0.4 * 159 + 0.3 + 9
    assert run0_trs == int(np.ceil((6 + 0.4 * 159 + 0.3 + 9) / 1.5))
    np.testing.assert_allclose(stim.word_onsets[:3], [6.0, 6.4, 6.8])
    first1 = np.flatnonzero(stim.word_runs == 1)[0]
    assert stim.word_onsets[first1] == pytest.approx(run0_trs * 1.5 + 6.0)   # run 1 starts after run 0's TRs
    rsvp = load_text_stimulus(path, annotate=False, timing="rsvp")
    assert rsvp.n_words == stim.n_words and np.unique(rsvp.word_runs).size == 2
    np.testing.assert_allclose(np.diff(rsvp.word_onsets[:5]), 0.5)


def test_timing_table_drops_rows_without_a_word_and_keeps_line_numbers(tmp_path):
    path = _write(tmp_path, "t.tsv", "onset\tword\trun\textra\n0.5\tHello\t1\tx\n1.0\tn/a\t1\tx\n1.5\tthere\t1\tx\n")
    table = read_word_timing(path)
    assert table["word"].tolist() == ["Hello", "there"] and table["line"].tolist() == [2, 4]
    assert table["duration"].tolist() == [0.0, 0.0]
    stim = timing_stimulus(table, name="t", source="t", tr=2.0, lead_out=2.0)
    assert stim.n_trs == 2


# ---------------------------------------------------------------- clear errors, one per case
def test_non_utf8_text_names_the_file_the_byte_and_how_to_convert(tmp_path):
    path = _write(tmp_path, "latin.txt", "\n\n".join(_story()) + "\nCaf\u00e9 cr\u00e8me.\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"latin.txt is not UTF-8 text: byte b'\\xe9'.*line 24.*iconv -f latin1"):
        load_text_stimulus(path)


def test_empty_text_is_an_error(tmp_path):
    for name, content in (("empty.txt", ""), ("blank.txt", " \n\n\t\n")):
        with pytest.raises(DataError, match=f"{name} holds no words"):
            load_text_stimulus(_write(tmp_path, name, content))
    with pytest.raises(DataError, match="missing.txt not found"):
        load_text_stimulus(tmp_path / "missing.txt")


def test_text_shorter_than_the_context_is_an_error(tmp_path):
    path = _write(tmp_path, "s.txt", "\n\n".join(_story()))
    n = len(" ".join(_story()).split())
    with pytest.raises(DataError, match=f"s.txt has {n} words, no more than the context of {n + 20} words"):
        load_text_stimulus(path, annotate=False, context=n + 20)
    assert load_text_stimulus(path, annotate=False, context=80).n_words == n


def test_text_too_short_for_the_runs_says_what_the_pipeline_needs(tmp_path):
    path = _write(tmp_path, "short.txt", "\n\n".join(_story(4, 3)))
    with pytest.raises(DataError, match=r"short.txt is too short: .* drops 20 \+ 15 TRs .* at least 45 TRs"):
        load_text_stimulus(path, annotate=False)
    one_run = _timing_table(tmp_path, n_runs=1, name="one.tsv")
    with pytest.raises(DataError, match="one.tsv gives 1 run; .* at least 2"):
        load_text_stimulus(one_run, annotate=False)


@pytest.mark.parametrize("content, message", [
    ("word\tonset\nHi\t0.5\n", r"lacks column\(s\) \['run'\]"),
    ("word\tonset\trun\nHi\t0.5\t1\nthere\tsoon\t1\n", r"line 3: onset 'soon' of word 'there' is not a non-negative"),
    ("word\tonset\trun\nHi\t0.5\t1\nthere\t-1\t1\n", r"line 3: onset '-1'"),
    ("word\tonset\trun\na\t0.5\t1\nb\t0.6\t2\nc\t0.7\t1\n", "switches back to an earlier run"),
    ("word\tonset\trun\na\t0.5\t1\nb\t0.4\t1\n", r"line 3: onset 0.4 s of 'b' is before the previous word's"),
    ("word\tonset\trun\na\t0.5\t\n", "line 2: word 'a' has no run"),
    ("word\tonset\trun\nn/a\t0.5\t1\n", "has no word"),
])
def test_malformed_timing_tables_name_the_file_line_and_fix(tmp_path, content, message):
    path = _write(tmp_path, "bad.tsv", content)
    with pytest.raises(DataError, match=message) as err:
        read_word_timing(path)
    assert "bad.tsv" in str(err.value)


def test_given_timing_needs_a_table(tmp_path):
    path = _write(tmp_path, "s.txt", "\n\n".join(_story()))
    with pytest.raises(DataError, match="timing='given' needs a word-timing table"):
        load_text_stimulus(path, timing="given")


def test_load_dataset_passes_text_to_the_simulation_only(tmp_path):
    path = _write(tmp_path, "s.txt", "\n\n".join(_story()))
    with pytest.raises(DataError, match="dataset 'hp' does not read a text"):
        load_dataset("hp", ["sub-01"], text=path)
    with pytest.raises(DataError, match=r"unknown option\(s\) \['colour'\]"):
        load_dataset("builtin", ["sub-01"], options={"colour": "red"})
    with pytest.raises(DataError, match="no more than the context"):
        load_dataset("builtin", ["sub-01"], text=path, context=5000)


# ---------------------------------------------------------------- annotations inferred from the text
@pytest.mark.medium
def test_simulated_subjects_read_any_text_with_characters_inferred_from_it(tmp_path):
    path = _write(tmp_path, "harbour.txt", "\n\n".join(_story()))
    data = load_dataset("builtin", ["sub-01", "sub-02"], text=path, n_language_voxels=12, n_control_voxels=4)
    stim = data[0].stimulus
    assert stim.name == "text_harbour" and data[1].stimulus is stim
    assert data[0].responses.shape == (stim.n_trs, 16)
    ann = stim.annotations
    # names of this text, not of Pride and Prejudice
    for name in ("Marguerite", "Tobias"):
        assert ann.is_character[ann.word.str.strip('",.') == name].all()
    assert not ann.is_character[ann.word.isin(["harbour", "The", "boats"])].any()
    said = ann.index[ann.word == "said"][0]
    assert ann.in_dialogue[ann.index[ann.word == '"The'][0]] and not ann.in_dialogue[said]


@pytest.mark.medium
def test_builtin_text_characters_are_inferred_close_to_the_old_list():
    import re

    from brainattr.data.annotate import CHARACTERS, infer_characters
    from brainattr.data.builtin import load_builtin_stimulus

    stim = load_builtin_stimulus()
    inferred = set(infer_characters(stim.words))
    assert {"Bennet", "Bingley", "Darcy", "Elizabeth", "Jane", "Lizzy", "Lydia", "Lucas"} <= inferred
    assert not inferred & {"Mr", "Mrs", "Miss", "Sir", "Lady"}
    old = np.array([re.sub(r"[^A-Za-z]", "", w) in CHARACTERS for w in stim.words])
    changed = int((old != stim.annotations.is_character.to_numpy()).sum())
    assert changed <= 12, changed          # 10 of 5,334 words (report of issue 16)


def test_the_built_in_text_as_a_file_gives_the_built_in_stimulus(tmp_path):
    from brainattr.data.builtin import load_builtin_stimulus, load_text

    path = _write(tmp_path, "pp.txt", "\n\n".join(load_text()) + "\n")      # blank-line paragraphs
    stim = load_text_stimulus(path, annotate=False)
    assert stim.fingerprint == load_builtin_stimulus(annotate=False).fingerprint
