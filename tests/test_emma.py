"""The second built-in dataset (brainattr.data.emma): Emma stories, Moth-reading design, App. D."""
import importlib.resources
from pathlib import Path

import numpy as np
import pytest
from _scripts import load_script

from brainattr.data import load_dataset
from brainattr.data.emma import (
    EMMA_REPEATED_STORY,
    EMMA_STORIES,
    EMMA_TEXT,
    MIN_WORDS_PER_STORY,
    load_emma,
    load_emma_stimulus,
    load_emma_stories,
    speech_durations,
    speech_timing,
    syllable_count,
)
from brainattr.schema import DataError
from brainattr.trs import TRIM, trim_mask

REPO = Path(__file__).resolve().parents[1]


def test_syllables_from_the_pronouncing_dictionary_and_for_words_it_lacks():
    assert [syllable_count(w) for w in ("the", "Emma,", "comfortable", "disposition;", "twenty-one")] == [1, 2, 4, 4, 3]
    assert syllable_count("“Woodhouse’s”") == 2      # curly quotes and the possessive
    assert syllable_count("blorptastic") == 3         # not in the dictionary: vowel groups
    assert syllable_count("--") == 1                  # no letters: still shown for one syllable's time


def test_speech_durations_grow_with_syllables_and_pause_after_punctuation():
    d = speech_durations(["cat", "cat,", "cat.", 'cat."', "comfortable"])
    np.testing.assert_allclose(d, [0.30, 0.40, 0.55, 0.55, 0.12 + 4 * 0.18])


def test_speech_timing_one_scan_per_run_silence_around_the_words():
    onsets, tr_times, tr_runs = speech_timing([0.5, 0.5, 1.0, 0.5], [0, 0, 1, 1], tr=2.0, lead_in=4.0, lead_out=6.0,
                                              min_run_trs=1)
    # run 0: words at 4.0, 4.5, then 6 s of silence: ceil(11 / 2) = 6 TRs; run 1 starts at 12 s
    np.testing.assert_allclose(onsets, [4.0, 4.5, 16.0, 17.0])
    assert np.bincount(tr_runs).tolist() == [6, 6] and tr_times[6] == 12.0
    # a short run is padded with whole TRs of silence before its words: its last word keeps lead_out after it
    onsets, tr_times, tr_runs = speech_timing([0.5, 0.5], [0, 0], tr=2.0, lead_in=4.0, lead_out=6.0, min_run_trs=10)
    assert tr_runs.size == 10 and onsets[0] == 4.0 + 2.0 * 4
    assert 20.0 - (onsets[-1] + 0.5) >= 6.0


def test_the_shipped_text_holds_eleven_stories_of_at_least_a_thousand_words():
    text = importlib.resources.files("brainattr.data").joinpath(EMMA_TEXT).read_text(encoding="utf-8")
    headers = [line for line in text.splitlines() if line.startswith("# ")]
    assert headers == [f"# Chapter {k}" for k in range(1, EMMA_STORIES + 1)]
    stories = load_emma_stories(1000)
    assert len(stories) == EMMA_STORIES and all(len(s) == 1000 for s in stories)
    assert stories[0][:2] == ["Emma", "Woodhouse,"]


@pytest.mark.parametrize("n", [MIN_WORDS_PER_STORY - 1, 5000])
def test_words_per_story_out_of_range_is_an_error_naming_the_range(n):
    with pytest.raises(DataError, match=f"words_per_story={n}: the Emma stories need between {MIN_WORDS_PER_STORY}"):
        load_emma_stories(n)


def test_max_words_too_small_is_an_error_naming_the_fix():
    with pytest.raises(DataError, match=f"max_words=300 leaves 28 words per Emma story.*max_words >= "
                                        f"{MIN_WORDS_PER_STORY * EMMA_STORIES}"):
        load_emma(max_words=300)


def test_stimulus_design_eleven_runs_moth_tr_words_in_the_kept_trs():
    stim = load_emma_stimulus(MIN_WORDS_PER_STORY, annotate=False)
    assert stim.n_words == MIN_WORDS_PER_STORY * EMMA_STORIES and stim.tr == 2.0045
    assert np.unique(stim.tr_runs).tolist() == list(range(EMMA_STORIES))
    keep = trim_mask(stim.tr_runs, TRIM)
    word_trs = stim.word_trs
    for run in range(EMMA_STORIES):
        kept = np.flatnonzero(keep & (stim.tr_runs == run))
        assert kept.size >= 10
        # every kept TR reads words in its delay TRs, and none reads the story's last word
        last = word_trs[stim.word_runs == run].max()
        assert word_trs[stim.word_runs == run].min() <= kept[0] - 1 and last > kept[-1] - 1
    rate = 1 / speech_durations(stim.words).mean()
    assert 2.0 < rate < 3.2  # words per second: a speaking rate


@pytest.mark.medium
def test_load_emma_simulated_subjects_with_a_repeated_story_and_a_noise_ceiling():
    data = load_dataset("emma", ["sub-01", "sub-02"], max_words=1100, n_language_voxels=30, n_control_voxels=15,
                        noise=0.5)
    assert [d.name for d in data] == ["emma", "emma"] and data[0].stimulus is data[1].stimulus
    ds = data[0]
    assert ds.stimulus.annotations["story"].iloc[-1] == f"Chapter {EMMA_STORIES}"
    assert ds.meta["repeated_story"] == EMMA_REPEATED_STORY and ds.meta["n_repeats"] == 2
    ev = ds.meta["explainable_variance"]
    assert ev.shape == (ds.n_voxels,)
    # low noise: the language voxels' signal repeats, the control voxels' noise does not
    assert np.nanmean(ev[ds.voxel_is_language]) > 0.5 and abs(np.nanmean(ev[~ds.voxel_is_language])) < 0.2
    assert not np.allclose(data[0].responses, data[1].responses[:, : ds.n_voxels])


def test_emma_parcels_get_the_noise_ceiling_of_their_averaged_repeats():
    """App. D on parcels (emma@harvard-oxford): each parcel's ceiling comes from the mean of its voxels' repeats."""
    from brainattr.data.parcels import parcel_members
    from brainattr.metrics import noise_ceiling

    voxels, = load_dataset("emma", ["sub-01"], max_words=1100, n_language_voxels=60, n_control_voxels=20, noise=0.5)
    parcels, = load_dataset("emma@harvard-oxford", ["sub-01"], max_words=1100, n_language_voxels=60,
                            n_control_voxels=20, noise=0.5)
    ev = parcels.meta["explainable_variance"]
    assert ev.shape == (parcels.n_voxels,) and "explainable_variance" not in parcels.meta["dropped_meta"]
    columns, average = parcel_members(parcels, voxels.voxel_coords)
    by_hand = np.einsum("vrt,vp->rtp", voxels.meta["repeat_responses"][columns].astype(np.float64), average.toarray())
    start, stop = voxels.meta["noise_ceiling_rows"]
    np.testing.assert_allclose(ev, noise_ceiling(by_hand[:, start:stop]), rtol=1e-4)
    assert np.nanmean(ev[parcels.voxel_is_language]) > 0.5


@pytest.mark.medium
def test_emma_subjects_keep_their_ground_truth():
    from brainattr.data import as_simulated

    ds, = load_emma(["sub-01"], max_words=1100, n_language_voxels=20, n_control_voxels=10, noise=0.5)
    sim = as_simulated(ds)
    np.testing.assert_array_equal(sim.dataset.voxel_coords, ds.voxel_coords)
    once = ds.stimulus.tr_runs != EMMA_REPEATED_STORY  # the repeated story holds the mean of two repeats
    np.testing.assert_allclose(sim.dataset.responses[once], ds.responses[once], rtol=1e-5)
    lang = ds.voxel_is_language
    r = [np.corrcoef(sim.clean[:, v], ds.responses[:, v])[0, 1] for v in np.flatnonzero(lang)]
    assert np.mean(r) > 0.5


def _extract_script():
    return load_script("scripts/extract_stimulus.py")


def test_extract_script_cuts_chapters_into_stories_of_whole_paragraphs():
    script = _extract_script()
    lines = ["EMMA", "", "VOLUME I", "", "CHAPTER I", "", "One two", "three.", "", "Four five six.", "",
             "CHAPTER II", "", "Seven _eight_ nine ten.", "", "VOLUME II", "CHAPTER I", "Eleven."]
    assert script.chapter_paragraphs(lines) == [["One two three.", "Four five six."], ["Seven eight nine ten."],
                                                ["Eleven."]]
    assert script.chapter_openings(lines, 2, 3) == [["One two three."], ["Seven eight nine ten."]]
    with pytest.raises(ValueError, match="chapter 2 has 4 words"):
        script.chapter_openings(lines, 2, 5)
    # the built-in text's layout ("Chapter 1") is read the same way
    assert script.first_chapters(["Title", "Chapter 1", "", "a b", "", "Chapter 2", "c"], 3) == (["a b", "c"], 2)
