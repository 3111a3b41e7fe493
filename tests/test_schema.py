import numpy as np
import pytest

from brainattr.schema import DataError, Dataset, Stimulus, assign_words_to_trs, drop_bad_voxels


def make_stimulus(**changes):
    kw = dict(name="toy", words=["a", "b", "c", "d"], word_onsets=[0.0, 0.5, 2.0, 2.5], word_runs=[0, 0, 1, 1],
              tr_times=[0.0, 1.0, 2.0, 3.0], tr_runs=[0, 0, 1, 1], tr=1.0)
    kw.update(changes)
    return Stimulus(**kw)


def test_words_are_binned_into_the_tr_that_contains_their_onset():
    stim = make_stimulus()
    np.testing.assert_array_equal(stim.word_trs, [0, 0, 2, 2])
    np.testing.assert_array_equal(stim.tr_words(2), [2, 3])
    assert stim.tr_words(1).size == 0


def test_fingerprint_changes_with_words_and_timing():
    assert make_stimulus().fingerprint == make_stimulus().fingerprint
    assert make_stimulus().fingerprint != make_stimulus(words=["a", "b", "c", "e"]).fingerprint
    assert make_stimulus().fingerprint != make_stimulus(word_onsets=[0.0, 0.6, 2.0, 2.5]).fingerprint


def test_word_outside_its_runs_trs_is_an_error_that_names_the_clock():
    # word 3 says run 0 but its onset lies in a TR of run 1: the timings do not line up
    with pytest.raises(DataError, match="same clock"):
        make_stimulus(word_runs=[0, 0, 1, 0])
    # onsets in milliseconds: far past the last TR
    with pytest.raises(DataError, match="fall outside every TR"):
        make_stimulus(word_onsets=[0.0, 500.0, 2000.0, 2500.0])


def test_mismatched_lengths_and_unsorted_times_are_errors():
    with pytest.raises(DataError, match="one value per word"):
        make_stimulus(word_runs=[0, 0, 1])
    with pytest.raises(DataError, match="strictly increasing"):
        make_stimulus(tr_times=[0.0, 1.0, 1.0, 3.0])


def test_assign_words_to_trs_marks_gaps():
    trs = assign_words_to_trs(np.array([0.5, 5.0]), np.array([0, 0]), np.array([0.0, 1.0]), np.array([0, 0]), 1.0)
    np.testing.assert_array_equal(trs, [0, -1])


def make_dataset(responses):
    n_vox = responses.shape[1]
    return Dataset(stimulus=make_stimulus(), subject="s1", responses=responses, voxel_coords=np.zeros((n_vox, 3)),
                   voxel_labels=["x"] * n_vox, voxel_is_language=np.ones(n_vox, bool))


def test_responses_must_have_one_row_per_tr():
    with pytest.raises(DataError, match=r"\(n_trs, n_voxels\)"):
        make_dataset(np.zeros((3, 2)))


def test_nan_and_constant_voxels_are_excluded_with_a_counted_warning():
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((4, 5))
    Y[1, 0] = np.nan
    Y[:, 3] = 2.0
    ds = make_dataset(Y)
    with pytest.warns(UserWarning, match=r"excluded 2 of 5 voxels \(1 with NaN/inf, 1 with zero variance\)"):
        clean = drop_bad_voxels(ds)
    assert clean.n_voxels == 3
    assert clean.meta["excluded_voxels"] == {"nonfinite": 1, "zero_variance": 1}
    np.testing.assert_array_equal(clean.responses, Y[:, [1, 2, 4]].astype(np.float32))
    assert drop_bad_voxels(clean) is clean


def test_all_bad_voxels_is_an_error():
    with pytest.raises(DataError, match="all 2 voxels"):
        drop_bad_voxels(make_dataset(np.ones((4, 2))))


def test_select_voxels_subsets_per_voxel_meta():
    Y = np.random.default_rng(1).standard_normal((4, 3))
    ds = make_dataset(Y)
    ds = Dataset(**{**ds.__dict__, "meta": {"window": np.array([5, 6, 7]), "seed": 3}})
    sub = ds.select_voxels([True, False, True])
    np.testing.assert_array_equal(sub.meta["window"], [5, 7])
    assert sub.meta["seed"] == 3 and sub.n_voxels == 2
