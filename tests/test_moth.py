"""Moth Radio Hour loader (brainattr.data.moth), tested on tiny files in the release's exact formats."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import _realdata_fixtures as F
import brainattr.data as D
from brainattr.data.moth import MOTH_GIN_URL, MOTH_TR
from brainattr.metrics import noise_ceiling
from brainattr.schema import DataError


@pytest.fixture(scope="module")
def moth(tmp_path_factory):
    root = tmp_path_factory.mktemp("moth")
    return root, F.write_moth(root / "moth", subjects=("01", "02"))


# --------------------------------------------------------------------------------------------
# Moth Radio Hour (reading)
# --------------------------------------------------------------------------------------------
def test_moth_runs_are_stories_with_textgrid_timings(moth):
    root, written = moth
    ds = D.load_moth(["sub-01", "sub-02"], data_home=root, annotate=False)
    stim = ds[0].stimulus
    assert ds[1].stimulus is stim and stim.tr == MOTH_TR
    n = F.MOTH_STORY_TRS
    np.testing.assert_array_equal(np.bincount(stim.tr_runs), [n["story_01"], n["story_02"], n["story_11"]])
    starts = MOTH_TR * np.cumsum([0, n["story_01"], n["story_02"]])
    np.testing.assert_allclose(stim.tr_times[[0, n["story_01"], n["story_01"] + n["story_02"]]], starts)
    for run, story in enumerate(("story_01", "story_02", "story_11")):
        in_run = stim.word_runs == run
        np.testing.assert_array_equal(stim.words[in_run], F.MOTH_WORDS[story])  # silences and {BR} dropped
        np.testing.assert_allclose(stim.word_onsets[in_run], starts[run] + 10.0 + F.moth_word_times(story))
    assert list(stim.annotations["story"].unique()) == ["story_01", "story_02", "story_11"]
    # the validation story's responses are the mean of its two repeats
    val = stim.tr_runs == 2
    np.testing.assert_allclose(ds[0].responses[val], written["01"]["story_11"].mean(0), atol=1e-6)
    np.testing.assert_allclose(ds[1].responses[stim.tr_runs == 0], written["02"]["story_01"], atol=1e-6)


def test_moth_rois_and_explainable_variance(moth):
    root, written = moth
    ds = D.load_moth("sub-01", data_home=root, annotate=False)[0]
    np.testing.assert_array_equal(ds.voxel_labels, ["Broca", "Broca", "AC", "AC", "pSTS", "cortex", "cortex", "cortex"])
    np.testing.assert_array_equal(ds.voxel_is_language, [1, 1, 0, 1, 1, 0, 0, 0])
    assert np.isnan(ds.voxel_coords).all()
    ev = D.explainable_variance(ds)
    reps = written["01"]["story_11"][:, 10:-10]
    np.testing.assert_allclose(ev, noise_ceiling(reps), rtol=1e-5)
    assert ev[0] == pytest.approx(1.0)  # voxel 0 repeats exactly
    assert ev[0] > ev[2:].max() > ev[2:].min() > ev[1]  # voxel 1 is independent noise in each repeat
    assert D.explainable_variance(ds.select_voxels(ds.voxel_is_language)) is not None  # follows the voxels
    np.testing.assert_allclose(D.explainable_variance(ds.select_voxels(ds.voxel_is_language)),
                               ev[ds.voxel_is_language])
    assert D.explainable_variance(replace(ds, meta={})) is None  # datasets without repeats (HP, built-in)


def test_unknown_moth_subjects_are_errors(tmp_path):
    with pytest.raises(DataError, match="sub-01"):
        D.load_moth(["subject-x"], data_home=tmp_path, annotate=False)


# --------------------------------------------------------------------------------------------
# Missing files: one error that says what to put where and where to get it
# --------------------------------------------------------------------------------------------
def test_moth_missing_everything_names_responses_textgrids_and_sources(tmp_path):
    with pytest.raises(DataError) as err:
        D.load_dataset("moth", ["sub-01"], data_home=tmp_path)
    msg = str(err.value)
    for part in ("subject01_reading_fmri_data_trn.hdf", "subject01_reading_fmri_data_val.hdf",
                 "story_11.TextGrid", MOTH_GIN_URL, "ds003020", "python -m brainattr download moth"):
        assert part in msg, part


def test_moth_missing_textgrid_is_named(tmp_path):
    root = tmp_path
    F.write_moth(root / "moth", subjects=("01",))
    (root / "moth" / "textgrids" / "avatar.TextGrid").unlink()
    with pytest.raises(DataError, match="missing 1 file\\(s\\)") as err:
        D.load_moth("sub-01", data_home=root, annotate=False)
    assert "story_02.TextGrid" in str(err.value)
