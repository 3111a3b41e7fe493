import numpy as np
import pandas as pd
import pytest

from brainattr.data.builtin import load_builtin_stimulus, load_text, rsvp_timing, split_runs


def test_builtin_text_is_long_enough_and_public_domain_austen():
    words = [w for p in load_text() for w in p.split()]
    assert len(words) >= 5176  # at least as long as the paper's Harry Potter chapter
    assert " ".join(words[:9]) == "It is a truth universally acknowledged, that a single"


def test_builtin_stimulus_is_presented_like_the_paper():
    stim = load_builtin_stimulus()
    assert stim.n_words == 5334 and stim.tr == 2.0
    assert sorted(set(stim.word_runs)) == [0, 1, 2, 3]
    # one word every 0.5 s within a run, about four words per TR
    within = np.diff(stim.word_onsets)[np.diff(stim.word_runs) == 0]
    np.testing.assert_allclose(within, 0.5)
    counts = np.bincount(stim.word_trs, minlength=stim.n_trs)
    assert np.bincount(counts).argmax() == 4
    # runs are of similar length
    sizes = np.bincount(stim.word_runs)
    assert sizes.max() / sizes.min() < 1.1


def test_split_runs_cuts_at_paragraph_boundaries_near_equal_shares():
    runs = split_runs([10, 10, 10, 10, 10, 10, 10, 10], 4)
    np.testing.assert_array_equal(runs, [0, 0, 1, 1, 2, 2, 3, 3])
    with pytest.raises(ValueError, match="between 1 and"):
        split_runs([5, 5], 3)


def test_rsvp_timing_runs_do_not_overlap():
    onsets, tr_times, tr_runs = rsvp_timing(np.array([0, 0, 1]), word_duration=0.5, tr=2.0, lead_in=4.0, lead_out=2.0)
    np.testing.assert_allclose(onsets, [4.0, 4.5, 12.0])  # run 0 lasts ceil(7/2)=4 TRs = 8 s; run 1 starts at 8 + 4
    np.testing.assert_array_equal(tr_runs, [0, 0, 0, 0, 1, 1, 1, 1])


def test_annotations_mark_characters_dialogue_and_sentences(small_stimulus):
    a = small_stimulus.annotations
    assert len(a) == small_stimulus.n_words
    row = a[a.word.str.startswith("Bennet")].iloc[0]
    assert row.is_character and row.pos == "PROPN"
    first_quote = a.index[a.word.str.startswith('"')][0]
    assert a.in_dialogue[first_quote] and not a.in_dialogue[0]
    assert a.sentence_end[a.word == "wife."].all()
    # "said his lady to him one day," sits between two quotations and is narration
    said = a.index[a.word == "said"][0]
    assert not a.in_dialogue[said]


def test_max_words_truncates():
    stim = load_builtin_stimulus(max_words=600, annotate=False)
    assert stim.n_words == 600 and stim.annotations is None


def test_annotations_are_stored_once_and_read_back_by_the_next_run(tmp_path, monkeypatch):
    from brainattr.data import annotate

    monkeypatch.setenv("BRAINATTR_CACHE", str(tmp_path))
    words = "Mr. Darcy said nothing. Darcy looked at Elizabeth. Elizabeth laughed.".split()
    first = annotate.annotate_words(words)
    stored = list((tmp_path / "annotations").glob("*.parquet"))
    assert len(stored) == 1 and not list((tmp_path / "annotations").glob(".*"))  # no temporary left
    calls = []
    monkeypatch.setattr(annotate, "_annotate", lambda *a: calls.append(a) or first)
    pd.testing.assert_frame_equal(annotate.annotate_words(words), first)  # read back, spaCy not run
    assert calls == []
    annotate.annotate_words(words, characters=("Darcy",))  # other characters: another entry
    assert len(calls) == 1
