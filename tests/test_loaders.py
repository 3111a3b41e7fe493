"""Real-data loaders, tested on tiny files written in the releases' exact formats (tests/_realdata_fixtures.py)."""
from __future__ import annotations

import sys
import warnings
from dataclasses import replace

import numpy as np
import pytest

import _realdata_fixtures as F
from brainattr import loaders
from brainattr.dataset import DataError, load_dataset


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


@pytest.fixture(scope="module")
def moth(tmp_path_factory):
    root = tmp_path_factory.mktemp("moth")
    return root, F.write_moth(root / "moth", subjects=("01", "02"))


# --------------------------------------------------------------------------------------------
# Harry Potter, CMU MATLAB release
# --------------------------------------------------------------------------------------------
def test_hp_mat_schema_timings_and_runs(hp_mat):
    root, data = hp_mat
    ds = loaders.load_hp(["sub-01", "sub-02"], data_home=root, layout="mat", annotate=False)
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

    ds = loaders.load_hp("sub-01", data_home=root, layout="mat", annotate=False)[0]
    _, tr_runs = F.hp_trs()
    for r in (1, 2, 3):
        want = scipy.signal.detrend(data[1][tr_runs == r], axis=0)
        np.testing.assert_allclose(ds.responses[tr_runs == r], want, atol=1e-5)


def test_hp_mat_coordinates_are_mni_via_the_release_matrix(hp_mat):
    root, _ = hp_mat
    ds = loaders.load_hp("sub-01", data_home=root, layout="mat", annotate=False)[0]
    ijk = F.hp_ijk()
    want = (F.HP_AFFINE @ np.c_[ijk, np.ones(len(ijk))].T).T[:, :3]  # 1-based indices, SPM convention
    np.testing.assert_allclose(ds.voxel_coords, want)
    np.testing.assert_allclose(ds.voxel_coords[0], [21.0, -27.0, 0.0])
    np.testing.assert_array_equal(ds.meta["voxel_ijk"], ijk)


def test_hp_mat_voxel_image_puts_values_at_the_voxels(hp_mat):
    import nibabel as nib
    from nilearn.datasets import load_mni152_brain_mask

    from brainattr.dataset import voxel_image

    root, _ = hp_mat
    ds = loaders.load_hp("sub-01", data_home=root, layout="mat", annotate=False)[0]
    values = np.arange(1, ds.n_voxels + 1, dtype=float)
    img = voxel_image(values, ds.voxel_coords)
    ref = load_mni152_brain_mask(resolution=3)
    ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(ref.affine), ds.voxel_coords)).astype(int)
    np.testing.assert_array_equal(img.get_fdata()[tuple(ijk.T)], values)


def test_hp_mat_aal_labels_give_the_language_set(hp_mat):
    root, _ = hp_mat
    ds = loaders.load_hp("sub-01", data_home=root, layout="mat", annotate=False)[0]
    names = ["Not_labelled"] + F.HP_ROI_NAMES
    aal = np.array([names[k] for k in F.HP_ROI_NUMS])
    lang = np.isin(aal, list(loaders.HP_AAL_LANGUAGE))
    np.testing.assert_array_equal(ds.voxel_is_language, lang)
    np.testing.assert_array_equal(ds.voxel_labels[lang], [loaders.HP_AAL_LANGUAGE[a] for a in aal[lang]])
    np.testing.assert_array_equal(ds.voxel_labels[~lang], aal[~lang])
    assert {"IFGtri", "STG", "AG"} <= set(ds.voxel_labels)


def test_hp_story_features_become_boolean_category_columns(hp_mat):
    root, _ = hp_mat
    ann = loaders.load_hp("sub-01", data_home=root, layout="mat", annotate=False)[0].stimulus.annotations
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
        ds = loaders.load_hp("sub-01", data_home=tmp_path, annotate=False)[0]
    assert "is_semantic" not in ds.stimulus.annotations


# --------------------------------------------------------------------------------------------
# Harry Potter, preprocessed NumPy release (trimmed)
# --------------------------------------------------------------------------------------------
def test_hp_npy_trimmed_rows_go_back_on_the_full_grid(hp_npy):
    from brainattr.features import TRIM, trim_mask

    root, data = hp_npy
    ds = loaders.load_hp(["F", "sub-02"], data_home=root, annotate=False)  # auto layout: the NumPy release
    assert [d.meta["layout"] for d in ds] == ["npy", "npy"]
    assert [d.meta["source_subject"] for d in ds] == ["F", "H"]
    stim = ds[0].stimulus
    unmeasured = loaders.unmeasured_trs(ds[0])
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
    loaders.check_trim(ds[0], TRIM)
    with pytest.raises(DataError, match="already removed"):
        loaders.check_trim(ds[0], (10, 5))


def test_hp_npy_timings_rois_and_missing_coordinates(hp_npy):
    root, _ = hp_npy
    ds = loaders.load_hp("sub-01", data_home=root, layout="npy", annotate=False)[0]
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
        loaders.load_hp("F", data_home=root, annotate=False)


def test_max_words_keeps_every_run_and_the_trim_alignment(hp_npy):
    from brainattr.features import TRIM, trim_mask

    root, _ = hp_npy
    full = loaders.load_hp("F", data_home=root, annotate=False)[0]
    ds = loaders.load_hp("F", data_home=root, annotate=False, max_words=100)[0]
    stim = ds.stimulus
    assert stim.n_words < full.stimulus.n_words and stim.n_trs < full.stimulus.n_trs
    assert set(np.unique(stim.tr_runs)) == set(range(F.HP_N_RUNS))
    assert np.bincount(stim.word_runs).min() >= np.ceil(100 / F.HP_N_RUNS)
    assert np.bincount(stim.tr_runs).min() >= loaders.MIN_RUN_TRS
    assert ds.responses.shape == (stim.n_trs, F.HP_N_VOX)
    # the start of each run is unchanged, so the filled rows are still exactly the ones TRIM drops at the start
    assert not (loaders.unmeasured_trs(ds) & trim_mask(stim.tr_runs, TRIM)).any()
    assert loaders.unmeasured_trs(ds).sum() == 20 * F.HP_N_RUNS
    np.testing.assert_allclose(ds.responses[:5], full.responses[:5])
    assert len(stim.annotations) == stim.n_words


# --------------------------------------------------------------------------------------------
# load_dataset dispatch, data location, subjects
# --------------------------------------------------------------------------------------------
def test_load_dataset_ignores_builtin_arguments_and_reads_brainattr_data(hp_mat, monkeypatch):
    root, _ = hp_mat
    monkeypatch.setenv(loaders.DATA_ENV, str(root))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for the built-in-only arguments
        ds = load_dataset("hp", ["sub-02"], max_words=None, n_language_voxels=3, n_control_voxels=2, seed=7)
    assert ds[0].name == "hp" and ds[0].meta["layout"] == "mat" and ds[0].subject == "sub-02"
    ann = ds[0].stimulus.annotations  # spaCy columns, as the built-in stimulus has
    assert {"pos", "is_content", "is_character", "is_semantic", "is_syntactic", "is_discourse"} <= set(ann.columns)
    assert ann.loc[ann.word == "Harry", "is_character"].all()
    assert len(load_dataset("hp-mat", 2, data_home=root)) == 2


def test_unknown_subjects_are_errors(hp_mat):
    root, _ = hp_mat
    with pytest.raises(DataError, match="sub-01 ... sub-08"):
        loaders.load_hp(["sub-09"], data_home=root, annotate=False)
    with pytest.raises(DataError, match="sub-01"):
        loaders.load_moth(["subject-x"], data_home=root, annotate=False)


# --------------------------------------------------------------------------------------------
# Missing files: one error that says what to put where and where to get it
# --------------------------------------------------------------------------------------------
def test_hp_missing_everything_names_both_layouts_and_sources(tmp_path, monkeypatch):
    monkeypatch.setenv(loaders.DATA_ENV, str(tmp_path / "data"))
    with pytest.raises(DataError) as err:
        load_dataset("hp", ["sub-01", "sub-03"])
    msg = str(err.value)
    for part in (str(tmp_path / "data" / "hp" / "subject_1.mat"), "subject_3.mat", "data_subject_F.npy",
                 "data_subject_I.npy", "time_words_fmri.npy", "story_features.mat", loaders.HP_CMU_URL,
                 loaders.HP_DRIVE_URL, "BRAINATTR_DATA", "python -m brainattr download hp"):
        assert part in msg, part


def test_hp_missing_one_subject_lists_just_that_file(hp_mat):
    root, _ = hp_mat
    with pytest.raises(DataError) as err:
        loaders.load_hp(["sub-01", "sub-04"], data_home=root, layout="mat", annotate=False)
    msg = str(err.value)
    assert "missing 1 file(s)" in msg and "subject_4.mat" in msg and "subject_1.mat\n" not in msg


def test_hp_npy_missing_a_timing_file_is_named(hp_npy_fresh):
    root, _ = hp_npy_fresh
    (root / "hp" / "fMRI" / "time_words_fmri.npy").unlink()
    with pytest.raises(DataError, match="time_words_fmri.npy") as err:
        loaders.load_hp("F", data_home=root, annotate=False)
    assert "missing 1 file(s)" in str(err.value)


def test_moth_missing_everything_names_responses_textgrids_and_sources(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("moth", ["sub-01"], data_home=tmp_path)
    msg = str(err.value)
    for part in ("subject01_reading_fmri_data_trn.hdf", "subject01_reading_fmri_data_val.hdf",
                 "story_11.TextGrid", loaders.MOTH_GIN_URL, "ds003020", "python -m brainattr download moth"):
        assert part in msg, part


def test_moth_missing_textgrid_is_named(tmp_path):
    root = tmp_path
    F.write_moth(root / "moth", subjects=("01",))
    (root / "moth" / "textgrids" / "avatar.TextGrid").unlink()
    with pytest.raises(DataError, match="missing 1 file\\(s\\)") as err:
        loaders.load_moth("sub-01", data_home=root, annotate=False)
    assert "story_02.TextGrid" in str(err.value)


# --------------------------------------------------------------------------------------------
# Moth Radio Hour (reading)
# --------------------------------------------------------------------------------------------
def test_moth_runs_are_stories_with_textgrid_timings(moth):
    root, written = moth
    ds = loaders.load_moth(["sub-01", "sub-02"], data_home=root, annotate=False)
    stim = ds[0].stimulus
    assert ds[1].stimulus is stim and stim.tr == loaders.MOTH_TR
    n = F.MOTH_STORY_TRS
    np.testing.assert_array_equal(np.bincount(stim.tr_runs), [n["story_01"], n["story_02"], n["story_11"]])
    starts = loaders.MOTH_TR * np.cumsum([0, n["story_01"], n["story_02"]])
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
    ds = loaders.load_moth("sub-01", data_home=root, annotate=False)[0]
    np.testing.assert_array_equal(ds.voxel_labels, ["Broca", "Broca", "AC", "AC", "pSTS", "cortex", "cortex", "cortex"])
    np.testing.assert_array_equal(ds.voxel_is_language, [1, 1, 0, 1, 1, 0, 0, 0])
    assert np.isnan(ds.voxel_coords).all()
    ev = loaders.explainable_variance(ds)
    reps = written["01"]["story_11"][:, 10:-10]
    np.testing.assert_allclose(ev, loaders.noise_ceiling(reps), rtol=1e-5)
    assert ev[0] == pytest.approx(1.0)  # voxel 0 repeats exactly
    assert ev[0] > ev[2:].max() > ev[2:].min() > ev[1]  # voxel 1 is independent noise in each repeat
    assert loaders.explainable_variance(ds.select_voxels(ds.voxel_is_language)) is not None  # follows the voxels
    np.testing.assert_allclose(loaders.explainable_variance(ds.select_voxels(ds.voxel_is_language)),
                               ev[ds.voxel_is_language])
    assert loaders.explainable_variance(replace(ds, meta={})) is None  # datasets without repeats (HP, built-in)


def test_noise_ceiling_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    reps = rng.standard_normal((3, 6, 2))
    z = (reps - reps.mean(1, keepdims=True)) / reps.std(1, keepdims=True)
    for v in range(2):
        mean_var = np.mean([np.var(z[r, :, v], ddof=1) for r in range(3)])
        var_mean = np.var(z[:, :, v].mean(0), ddof=1)
        ev = var_mean / mean_var
        assert loaders.noise_ceiling(reps)[v] == pytest.approx(ev - (1 - ev) / 2)
        assert loaders.noise_ceiling(reps, bias_correction=False)[v] == pytest.approx(ev)


def test_noise_ceiling_is_one_for_identical_repeats_and_near_zero_for_noise():
    rng = np.random.default_rng(1)
    signal = rng.standard_normal((1, 3000, 4))
    np.testing.assert_allclose(loaders.noise_ceiling(np.repeat(signal, 2, axis=0)), 1.0)
    np.testing.assert_allclose(loaders.noise_ceiling(np.repeat(signal, 2, axis=0) * [[[1]], [[3]]]), 1.0)
    assert np.abs(loaders.noise_ceiling(rng.standard_normal((2, 3000, 4)))).max() < 0.1
    half = signal + rng.standard_normal((2, 3000, 4))  # signal variance = noise variance: explainable 0.5
    np.testing.assert_allclose(loaders.noise_ceiling(half), 0.5, atol=0.06)
    with pytest.raises(DataError, match="n_repeats >= 2"):
        loaders.noise_ceiling(signal)


# --------------------------------------------------------------------------------------------
# TextGrid parsing
# --------------------------------------------------------------------------------------------
def test_textgrid_long_and_short_formats_read_alike(tmp_path):
    (tmp_path / "long.TextGrid").write_text(F.textgrid_text("story_11"))
    (tmp_path / "short.TextGrid").write_bytes(F.textgrid_text("story_11", short=True).encode("utf-16"))
    long, short = loaders.read_textgrid(tmp_path / "long.TextGrid"), loaders.read_textgrid(tmp_path / "short.TextGrid")
    assert list(long) == list(short) == ["phone", "word"]
    assert long["phone"].text[0] == 'a "quoted" phone'
    for a, b in zip(long.values(), short.values()):
        np.testing.assert_allclose(a[["start", "end"]], b[["start", "end"]])
        assert list(a.text) == list(b.text)
    words, onsets = loaders.textgrid_words(tmp_path / "short.TextGrid")
    np.testing.assert_array_equal(words, F.MOTH_WORDS["story_11"])
    np.testing.assert_allclose(onsets, F.moth_word_times("story_11"))
    (tmp_path / "bad.TextGrid").write_text("not a textgrid")
    with pytest.raises(DataError, match="not a readable Praat TextGrid"):
        loaders.read_textgrid(tmp_path / "bad.TextGrid")


# --------------------------------------------------------------------------------------------
# Download (never run here: no network in tests)
# --------------------------------------------------------------------------------------------
def test_download_list_and_a_clear_error_without_pooch(tmp_path, monkeypatch, capsys):
    hp = loaders.download_list("hp")
    assert [rel for _, rel in hp][:2] == ["hp/subject_1.mat", "hp/subject_2.mat"] and len(hp) == 9
    assert hp[0][0] == [loaders.HP_CMU_URL + "subject_1.mat"]
    moth = dict((rel, urls) for urls, rel in loaders.download_list("moth", ["sub-01"]))
    assert moth["moth/responses/subject01_reading_fmri_data_val.hdf"] == [
        loaders.MOTH_GIN_URL + "/raw/master/responses/subject01_reading_fmri_data_val.hdf"]
    assert moth["moth/textgrids/story_11.TextGrid"] == [loaders.MOTH_TEXTGRID_URL + "wheretheressmoke.TextGrid"]
    monkeypatch.setitem(sys.modules, "pooch", None)  # as if pooch were not installed
    with pytest.raises(DataError, match="pip install 'pooch"):
        loaders.download("hp", data_home=tmp_path)
    from brainattr.cli import main

    assert main(["download", "moth", "--data-home", str(tmp_path)]) == 1
    assert "pooch" in capsys.readouterr().err
