"""Harry Potter loaders (brainattr.data.harry_potter), tested on tiny files in the releases' exact formats."""
from __future__ import annotations

import numpy as np
import pytest

import _realdata_fixtures as F
import brainattr.data as D
from brainattr.data import harry_potter as hp
from brainattr.schema import DataError


# Written once per module and only read; a test that changes files writes its own copy (*_fresh).
@pytest.fixture(scope="module")
def hp_mat(tmp_path_factory):
    root = tmp_path_factory.mktemp("hp_mat")
    data = {k: F.write_hp_mat(root / "hp", k, seed=k) for k in (1, 2)}
    F.write_story_features(root / "hp")
    return root, data


def _write_hp_npy(root):
    data = F.write_hp_npy(root / "hp", letters=("F", "H"))
    F.write_story_features(root / "hp")
    return root, data


@pytest.fixture(scope="module")
def hp_npy(tmp_path_factory):
    return _write_hp_npy(tmp_path_factory.mktemp("hp_npy"))


@pytest.fixture
def hp_npy_fresh(tmp_path):
    return _write_hp_npy(tmp_path)


# --------------------------------------------------------------------------------------------
# Harry Potter, CMU MATLAB release
# --------------------------------------------------------------------------------------------
def test_hp_mat_schema_timings_and_runs(hp_mat):
    root, data = hp_mat
    ds = D.load_hp(["sub-01", "sub-02"], data_home=root, layout="mat", annotate=False)
    words, onsets, runs = F.hp_words()
    tr_times, tr_runs = F.hp_trs()
    assert [d.subject for d in ds] == ["sub-01", "sub-02"]
    assert [d.meta["source_subject"] for d in ds] == ["subject_1", "subject_2"]
    stim = ds[0].stimulus
    assert ds[1].stimulus is stim  # one shared stimulus: encode_subjects fits the subjects together
    np.testing.assert_array_equal(stim.words, words)
    np.testing.assert_allclose(stim.word_onsets, onsets)
    np.testing.assert_array_equal(stim.word_runs, runs)
    np.testing.assert_allclose(stim.tr_times, tr_times)
    np.testing.assert_array_equal(stim.tr_runs, tr_runs - 1)
    assert stim.tr == 2.0
    # first word of each run at 20 s into the run: TR 10 of the run, 4 words per TR
    first = [np.flatnonzero(runs == r)[0] for r in range(F.HP_N_RUNS)]
    np.testing.assert_array_equal(stim.word_trs[first], [10, 70, 130])
    assert np.bincount(stim.word_trs[stim.word_trs < 70]).max() == 4
    assert ds[0].responses.shape == (len(tr_times), F.HP_N_VOX) and ds[0].responses.dtype == np.float32
    assert ds[0].meta["unmeasured_trs"] == () and ds[0].meta["trim"] == (20, 15)


def test_hp_mat_responses_are_detrended_per_run(hp_mat):
    root, data = hp_mat
    import scipy.signal

    ds = D.load_hp("sub-01", data_home=root, layout="mat", annotate=False)[0]
    _, tr_runs = F.hp_trs()
    for r in (1, 2, 3):
        want = scipy.signal.detrend(data[1][tr_runs == r], axis=0)
        np.testing.assert_allclose(ds.responses[tr_runs == r], want, atol=1e-5)


def test_hp_mat_coordinates_are_mni_via_the_release_matrix(hp_mat):
    root, _ = hp_mat
    ds = D.load_hp("sub-01", data_home=root, layout="mat", annotate=False)[0]
    ijk = F.hp_ijk()
    want = (F.HP_AFFINE @ np.c_[ijk, np.ones(len(ijk))].T).T[:, :3]  # 1-based indices, SPM convention
    np.testing.assert_allclose(ds.voxel_coords, want)
    np.testing.assert_allclose(ds.voxel_coords[0], [21.0, -27.0, 0.0])
    np.testing.assert_array_equal(ds.meta["voxel_ijk"], ijk)


def test_hp_mat_voxel_image_puts_values_at_the_voxels(hp_mat):
    import nibabel as nib
    from nilearn.datasets import load_mni152_brain_mask

    from brainattr.plots import voxel_image

    root, _ = hp_mat
    ds = D.load_hp("sub-01", data_home=root, layout="mat", annotate=False)[0]
    values = np.arange(1, ds.n_voxels + 1, dtype=float)
    img = voxel_image(values, ds.voxel_coords)
    ref = load_mni152_brain_mask(resolution=3)
    ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(ref.affine), ds.voxel_coords)).astype(int)
    np.testing.assert_array_equal(img.get_fdata()[tuple(ijk.T)], values)


def test_hp_mat_aal_labels_give_the_language_set(hp_mat):
    root, _ = hp_mat
    ds = D.load_hp("sub-01", data_home=root, layout="mat", annotate=False)[0]
    names = ["Not_labelled"] + F.HP_ROI_NAMES
    aal = np.array([names[k] for k in F.HP_ROI_NUMS])
    lang = np.isin(aal, list(hp.HP_AAL_LANGUAGE))
    np.testing.assert_array_equal(ds.voxel_is_language, lang)
    np.testing.assert_array_equal(ds.voxel_labels[lang], [hp.HP_AAL_LANGUAGE[a] for a in aal[lang]])
    np.testing.assert_array_equal(ds.voxel_labels[~lang], aal[~lang])
    assert {"IFGtri", "STG", "AG"} <= set(ds.voxel_labels)


def test_hp_story_features_become_boolean_category_columns(hp_mat):
    root, _ = hp_mat
    ann = D.load_hp("sub-01", data_home=root, layout="mat", annotate=False)[0].stimulus.annotations
    feats = F.hp_feature_values()

    def has(ftype, cols=None):
        names, values = feats[ftype]
        cols = [i for i, n in enumerate(names) if "sticky" not in n] or list(range(len(names)))
        return np.any(values[:, cols] != 0, axis=1)

    np.testing.assert_array_equal(ann["is_semantic"], has("NNSE"))
    np.testing.assert_array_equal(ann["is_syntactic"], has("Part_of_speech") | has("Dependency_role"))
    discourse = has("Speech") | has("Motion") | has("Emotion") | has("Verbs") | has("Characters")
    np.testing.assert_array_equal(ann["is_discourse"], discourse)
    assert 0 < ann["is_discourse"].mean() < 1  # the always-on 'speak_sticky' column was skipped
    assert ann["is_semantic"].dtype == bool and ann["hp_Visual"].any()
    both = ann["is_semantic"] & ann["is_syntactic"]
    assert both.any() and (ann["is_semantic"] & ~ann["is_syntactic"]).any()  # categories overlap, not exclusive
    np.testing.assert_array_equal(ann["is_format_mark"], [w == "+" or "@" in w for w in F.hp_words()[0]])


def test_hp_without_story_features_warns_and_still_loads(tmp_path):
    F.write_hp_mat(tmp_path / "hp", 1)
    with pytest.warns(UserWarning, match="story_features.mat"):
        ds = D.load_hp("sub-01", data_home=tmp_path, annotate=False)[0]
    assert "is_semantic" not in ds.stimulus.annotations


# --------------------------------------------------------------------------------------------
# Harry Potter, preprocessed NumPy release (trimmed)
# --------------------------------------------------------------------------------------------
def test_hp_npy_trimmed_rows_go_back_on_the_full_grid(hp_npy):
    from brainattr.trs import TRIM, trim_mask

    root, data = hp_npy
    ds = D.load_hp(["F", "sub-02"], data_home=root, annotate=False)  # auto layout: the NumPy release
    assert [d.meta["layout"] for d in ds] == ["npy", "npy"]
    assert [d.meta["source_subject"] for d in ds] == ["F", "H"]
    stim = ds[0].stimulus
    unmeasured = D.unmeasured_trs(ds[0])
    # exactly the release's trim, and exactly what the pipeline's own trim removes: nothing twice
    np.testing.assert_array_equal(~unmeasured, trim_mask(stim.tr_runs, (20, 15)))
    np.testing.assert_array_equal(~unmeasured, trim_mask(stim.tr_runs, TRIM))
    np.testing.assert_allclose(ds[0].responses[~unmeasured], data["F"])
    np.testing.assert_allclose(ds[1].responses[~unmeasured], data["H"])
    for r in range(F.HP_N_RUNS):  # filled rows hold the run mean of the measured rows
        in_run = stim.tr_runs == r
        np.testing.assert_allclose(ds[0].responses[in_run & unmeasured],
                                   np.broadcast_to(ds[0].responses[in_run & ~unmeasured].mean(0),
                                                   (35, F.HP_N_VOX)), rtol=1e-5)
    D.check_trim(ds[0], TRIM)
    with pytest.raises(DataError, match="already removed"):
        D.check_trim(ds[0], (10, 5))


def test_hp_npy_timings_rois_and_missing_coordinates(hp_npy):
    root, _ = hp_npy
    ds = D.load_hp("sub-01", data_home=root, layout="npy", annotate=False)[0]
    words, onsets, runs = F.hp_words()
    np.testing.assert_array_equal(ds.stimulus.words, words)
    np.testing.assert_allclose(ds.stimulus.word_onsets, onsets)
    np.testing.assert_array_equal(ds.stimulus.word_runs, runs)
    np.testing.assert_array_equal(ds.voxel_is_language, np.arange(F.HP_N_VOX) < 5)
    np.testing.assert_array_equal(ds.voxel_labels[:6], ["IFG", "IFG", "PostTemp", "PostTemp", "PostTemp", "other"])
    assert ds.voxel_coords.shape == (F.HP_N_VOX, 3) and np.isnan(ds.voxel_coords).all()
    assert "is_discourse" in ds.stimulus.annotations


def test_hp_npy_with_the_wrong_number_of_rows_is_an_error(hp_npy_fresh):
    root, _ = hp_npy_fresh
    np.save(root / "hp" / "fMRI" / "data_subject_F.npy", np.zeros((50, 3)))
    with pytest.raises(DataError, match="minus 20 \\+ 15 per run"):
        D.load_hp("F", data_home=root, annotate=False)


def test_max_words_keeps_every_run_and_the_trim_alignment(hp_npy):
    from brainattr.trs import TRIM, trim_mask

    root, _ = hp_npy
    full = D.load_hp("F", data_home=root, annotate=False)[0]
    ds = D.load_hp("F", data_home=root, annotate=False, max_words=100)[0]
    stim = ds.stimulus
    assert stim.n_words < full.stimulus.n_words and stim.n_trs < full.stimulus.n_trs
    assert set(np.unique(stim.tr_runs)) == set(range(F.HP_N_RUNS))
    assert np.bincount(stim.word_runs).min() >= np.ceil(100 / F.HP_N_RUNS)
    assert np.bincount(stim.tr_runs).min() >= D.MIN_RUN_TRS
    assert ds.responses.shape == (stim.n_trs, F.HP_N_VOX)
    # the start of each run is unchanged, so the filled rows are still exactly the ones TRIM drops at the start
    assert not (D.unmeasured_trs(ds) & trim_mask(stim.tr_runs, TRIM)).any()
    assert D.unmeasured_trs(ds).sum() == 20 * F.HP_N_RUNS
    np.testing.assert_allclose(ds.responses[:5], full.responses[:5])
    assert len(stim.annotations) == stim.n_words


def test_unknown_hp_subjects_are_errors(hp_mat):
    root, _ = hp_mat
    with pytest.raises(DataError, match="sub-01 ... sub-08"):
        D.load_hp(["sub-09"], data_home=root, annotate=False)


# --------------------------------------------------------------------------------------------
# Missing files: one error that says what to put where and where to get it
# --------------------------------------------------------------------------------------------
def test_hp_missing_everything_names_both_layouts_and_sources(tmp_path, monkeypatch):
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path / "data"))
    with pytest.raises(DataError) as err:
        D.load_dataset("hp", ["sub-01", "sub-03"])
    msg = str(err.value)
    for part in (str(tmp_path / "data" / "hp" / "subject_1.mat"), "subject_3.mat", "data_subject_F.npy",
                 "data_subject_I.npy", "time_words_fmri.npy", "story_features.mat", hp.HP_CMU_URL,
                 hp.HP_DRIVE_URL, "BRAINATTR_DATA", "python -m brainattr download hp"):
        assert part in msg, part


def test_hp_missing_one_subject_lists_just_that_file(hp_mat):
    root, _ = hp_mat
    with pytest.raises(DataError) as err:
        D.load_hp(["sub-01", "sub-04"], data_home=root, layout="mat", annotate=False)
    msg = str(err.value)
    assert "missing 1 file(s)" in msg and "subject_4.mat" in msg and "subject_1.mat\n" not in msg


def test_hp_npy_missing_a_timing_file_is_named(hp_npy_fresh):
    root, _ = hp_npy_fresh
    (root / "hp" / "fMRI" / "time_words_fmri.npy").unlink()
    with pytest.raises(DataError, match="time_words_fmri.npy") as err:
        D.load_hp("F", data_home=root, annotate=False)
    assert "missing 1 file(s)" in str(err.value)
