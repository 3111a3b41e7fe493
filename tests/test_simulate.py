"""Simulated subjects (brainattr.data.atlas, .simulate, .ground_truth): determinism, schema, exact ground truth."""
import numpy as np
import pytest

from brainattr.data import atlas
from brainattr.data import ground_truth as GT
from brainattr.data import simulate as S
from brainattr.data import load_builtin_stimulus, load_dataset
from brainattr.schema import DataError, Dataset
from brainattr.trs import word_tr_weights

SMALL = dict(n_language=120, n_control=60)


@pytest.fixture(scope="module")
def stim(small_stimulus):
    return small_stimulus  # 600 words, shared with the other test modules (conftest)


@pytest.fixture(scope="module")
def sim(stim):
    return S.simulate(stim, subject="sub-01", seed=0, **SMALL)


# ---------------------------------------------------------------------------- voxels

def test_sample_atlas_voxels_deterministic_inside_mask_and_labelled():
    from nilearn.datasets import load_mni152_brain_mask
    import nibabel as nib

    coords, labels, is_lang = atlas.sample_atlas_voxels(n_language=300, n_control=100, seed=3)
    coords2, labels2, _ = atlas.sample_atlas_voxels(n_language=300, n_control=100, seed=3)
    assert np.array_equal(coords, coords2) and np.array_equal(labels, labels2)
    assert not np.array_equal(coords, atlas.sample_atlas_voxels(300, 100, seed=4)[0])
    assert coords.shape == (400, 3) and is_lang.sum() == 300
    assert set(labels[is_lang]) == set(atlas.LANGUAGE_ROIS) and set(labels[~is_lang]) == {"control"}
    assert len(np.unique(coords, axis=0)) == 400

    mask = load_mni152_brain_mask(resolution=3)
    ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(mask.affine), coords)).astype(int)
    assert np.all(mask.get_fdata()[tuple(ijk.T)] > 0)

    table = atlas.voxel_table()
    assert (coords[is_lang, 0] < 0).all()  # language ROIs are left-hemisphere (MNI x < 0)
    homologues = set(atlas.LANGUAGE_ROIS.values()) | {n.replace("Left_", "Right_") for n in atlas.LANGUAGE_ROIS.values()}
    lang_xyz = table.loc[table["region"].isin(homologues), ["x", "y", "z"]].to_numpy()
    d = np.sqrt(((coords[~is_lang, None, :] - lang_xyz[None]) ** 2).sum(-1)).min(axis=1)
    assert d.min() >= atlas.CONTROL_MIN_DISTANCE


def test_roi_counts_cover_every_roi():
    counts = atlas.roi_voxel_counts()
    assert list(counts.index) == [*atlas.LANGUAGE_ROIS, "control"]
    assert (counts > 50).all()


# ---------------------------------------------------------------------------- drivers

def test_word_drivers(stim):
    drv = S.word_drivers(stim)
    assert list(drv) == list(S.DRIVER_GROUPS)
    assert all(len(df) == stim.n_words for df in drv.values())
    sem = drv["semantic"].to_numpy()
    ann = stim.annotations
    assert np.all(sem[~ann["is_content"].to_numpy()] == 0)
    lem = ann["lemma"].to_numpy()
    content = np.flatnonzero(ann["is_content"].to_numpy())
    i, j = next((i, j) for i in content for j in content if j > i and lem[i] == lem[j])
    assert np.array_equal(sem[i], sem[j])  # same lemma, same meaning
    assert np.allclose(drv["syntactic"].mean(), 0) and np.allclose(drv["discourse"].mean(), 0)
    # stable hash: the same on every machine and in every process
    assert S.stable_seed("lemma", "house") == 1187263257357730985


# ---------------------------------------------------------------------------- simulation

def test_deterministic_and_subject_specific(stim, sim):
    again = S.simulate(stim, subject="sub-01", seed=0, **SMALL)
    assert np.array_equal(again.dataset.responses, sim.dataset.responses)
    other = S.simulate(stim, subject="sub-02", seed=0, **SMALL)
    assert not np.array_equal(other.dataset.voxel_coords, sim.dataset.voxel_coords)
    assert not np.allclose(other.weights, sim.weights)


def test_dataset_schema(stim, sim):
    ds = sim.dataset
    assert isinstance(ds, Dataset) and ds.name == "builtin" and ds.subject == "sub-01"
    n = SMALL["n_language"] + SMALL["n_control"]
    assert ds.responses.shape == (stim.n_trs, n) and ds.responses.dtype == np.float32
    assert ds.voxel_is_language.sum() == SMALL["n_language"]
    assert set(ds.voxel_labels[ds.voxel_is_language]) <= set(atlas.LANGUAGE_ROIS)
    m = ds.meta
    assert m["simulation"]["noise"] == 5.0
    for key in ("voxel_window", "voxel_dominant_group", "voxel_signal_sd", "voxel_true_r", "voxel_region"):
        assert m[key].shape == (n,)
    assert m["voxel_group_weights"].shape == (n, 3)
    lang = ds.voxel_is_language
    plant = m["voxel_plant"]
    assert plant.dtype == bool and plant[lang].sum() == round(0.05 * SMALL["n_language"]) and not plant[~lang].any()
    mixed = lang & ~plant
    assert np.allclose(m["voxel_group_weights"][mixed].sum(1), 1) and np.all(m["voxel_group_weights"][~mixed] == 0)
    assert set(m["voxel_dominant_group"][mixed]) == set(S.DRIVER_GROUPS)
    assert set(m["voxel_dominant_group"][plant]) == {"plant"} and set(m["voxel_window"][plant]) == {1}
    assert m["voxel_window"][lang].min() >= 1 and m["voxel_window"].max() <= 20
    assert np.all(sim.clean[:, ~lang] == 0)
    subs = load_dataset("builtin", 2, max_words=stim.n_words, n_language_voxels=SMALL["n_language"],
                        n_control_voxels=SMALL["n_control"])
    assert [d.subject for d in subs] == ["sub-01", "sub-02"]
    assert np.array_equal(subs[0].responses, ds.responses)


def test_hrf_matrix_matches_fine_grid_convolution(stim, sim):
    """H @ s equals impulses on a 0.1 s grid convolved with nilearn's Glover HRF, sampled mid-TR."""
    from nilearn.glm.first_level import glover_hrf

    v = 0
    s = S._integrate(sim.drivers @ sim.weights[:, [v]], sim.kernels[:, [v]], stim.word_runs)[:, 0]
    hrf = glover_hrf(1.0, oversampling=10, time_length=32.0)
    expected = np.zeros(stim.n_trs)
    for run in np.unique(stim.tr_runs):  # runs are separate scans
        w, t = stim.word_runs == run, np.flatnonzero(stim.tr_runs == run)
        grid = np.zeros(int(round((stim.tr_times[t[-1]] + stim.tr) * 10)) + 1)
        np.add.at(grid, np.rint(stim.word_onsets[w] * 10).astype(int), s[w])
        bold = np.convolve(grid, hrf)[: grid.size]
        expected[t] = bold[np.rint((stim.tr_times[t] + stim.tr / 2) * 10).astype(int)]
    assert np.allclose(sim.clean[:, v], expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())


def test_snr_language_vs_control():
    stim = load_builtin_stimulus(max_words=2400)
    sim = S.simulate(stim, subject="sub-03", n_language=300, n_control=100)
    ds, lang = sim.dataset, sim.dataset.voxel_is_language
    r = GT.true_signal_correlation(sim)[lang]
    assert np.allclose(r, ds.meta["voxel_true_r"][lang], atol=1e-5)
    a, noise = ds.meta["voxel_signal_sd"][lang], ds.meta["simulation"]["noise"]
    expected = a / np.sqrt(a**2 + noise**2)
    assert abs(r.mean() - expected.mean()) < 0.03
    assert np.corrcoef(r, expected)[0, 1] > 0.9  # the voxels meant to be good are good
    assert 0.15 < r.mean() < 0.35 and r.max() > 0.5
    # control voxels carry none of the drivers, HRF-convolved at TR level
    X = S.hrf_sampling_matrix(stim) @ sim.drivers
    X = X[:, X.std(0) > 0]
    Y = ds.responses[:, ~lang].astype(float)
    Xz, Yz = (X - X.mean(0)) / X.std(0), (Y - Y.mean(0)) / Y.std(0)
    rc = Xz.T @ Yz / len(Y)
    assert np.abs(rc).mean() < 0.06 and np.abs(rc).max() < 0.3


# ---------------------------------------------------------------------------- ground truth

def test_contributions_sum_to_clean_signal(stim, sim):
    trs = np.arange(stim.n_trs)
    vox = np.r_[0:20, SMALL["n_language"]:SMALL["n_language"] + 5]  # language and control voxels
    c = GT.true_contributions(sim, trs, vox)
    assert c.values.shape == (trs.size, c.word_index.shape[1], vox.size)
    assert np.allclose(c.values.sum(axis=1), sim.clean[:, vox], rtol=0, atol=1e-10 * np.abs(sim.clean).max())
    assert np.all(c.values[..., -5:] == 0)  # control voxels
    assert np.all(c.values[c.word_index < 0] == 0)
    assert np.all((c.position >= 0) == (c.word_index >= 0))


def test_contributions_are_causal_and_end_with_the_hrf(stim, sim):
    c = GT.true_contributions(sim, None, np.arange(10))
    tau = stim.tr_times + stim.tr / 2
    window = sim.dataset.meta["voxel_window"][:10]
    t, k, v = np.nonzero(c.values)
    j = c.word_index[t, k]
    assert np.all(tau[t] > stim.word_onsets[j])  # nothing before the word is shown
    last = np.minimum(j + window[v] - 1, stim.n_words - 1)  # last word whose integration includes j
    assert np.all(tau[t] - stim.word_onsets[last] < 32.0)  # nothing after the HRF support
    assert np.all(stim.word_runs[j] == stim.tr_runs[t])
    # and every word that is shown does contribute somewhere
    assert np.isin(np.arange(stim.n_words), j).all()


def test_importance_and_table(stim, sim):
    trs = np.array([40, 41, 120])
    lang = sim.dataset.voxel_is_language
    c = GT.true_contributions(sim, trs, lang)
    imp = GT.true_word_importance(sim, trs)  # controls add nothing to the norm
    assert imp.values.shape == c.word_index.shape
    assert np.allclose(imp.values, np.linalg.norm(c.values, axis=2))
    table = GT.true_contributions_table(sim, trs)
    assert list(table.columns) == ["tr", "word_index", "word", "position", "contribution"]
    assert len(table) == (c.word_index >= 0).sum()
    assert (table["word"] == stim.words[table["word_index"]]).all()
    assert np.allclose(table["contribution"], imp.values[imp.word_index >= 0])
    summed = GT.true_contributions_table(sim, trs, how="sum").groupby("tr")["contribution"].sum()
    assert np.allclose(summed.to_numpy(), sim.clean[trs][:, lang].sum(axis=1))


def test_the_sparse_plant_reads_per_tr_word_averages_at_the_encoders_delays(stim, sim):
    P = S.plant_sampling_matrix(stim).toarray()
    avg = word_tr_weights(stim, "average")
    t = np.flatnonzero(stim.tr_runs == stim.tr_runs[0])[10]          # a TR of the first run, with words
    words = avg[t] > 0
    gains = []
    for d in (1, 2, 3, 4):                                             # d TRs later: the TR's word average, times g_d
        ratio = P[t + d][words] / avg[t][words]
        np.testing.assert_allclose(ratio, ratio[0])
        gains.append(ratio[0])
        others = np.flatnonzero(P[t + d])
        assert set(stim.word_trs[others]) <= {t + d - k for k in (1, 2, 3, 4)}   # nothing past the 4 delays
    assert max(gains) == pytest.approx(1.0) and min(gains) > 0.1       # the HRF at 2-8 s, its peak scaled to 1
    plant = sim.dataset.meta["voxel_plant"]
    assert plant.any() and sim.planted_columns.tolist() == plant.tolist()
    drive = sim.drivers @ sim.weights
    np.testing.assert_allclose(sim.clean[:, plant], P @ drive[:, plant], rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="plant_delays"):
        S.simulate(stim, plant_delays=[-1], **SMALL)
    with pytest.raises(ValueError, match="reach no part of the HRF"):
        S.plant_sampling_matrix(stim, delays=[40])


def test_ground_truth_from_a_dataset_with_dropped_voxels(sim):
    ds = sim.dataset.select_voxels(np.arange(sim.n_voxels) % 3 == 0)
    c_ds = GT.true_contributions(ds, [50, 60])
    c_sim = GT.true_contributions(sim, [50, 60], np.arange(0, sim.n_voxels, 3))
    assert np.allclose(c_ds.values, c_sim.values)


# ---------------------------------------------------------------------------- bad input

def test_errors(stim):
    bare = load_builtin_stimulus(max_words=200, annotate=False)
    with pytest.raises(DataError, match="annotate=True"):
        S.simulated_dataset(bare)
    with pytest.raises(ValueError, match="n_language"):
        S.simulate(stim, n_language=10**6)
    with pytest.raises(ValueError, match="noise"):
        S.simulate(stim, noise=0)
    real = Dataset(stimulus=stim, subject="x", responses=np.zeros((stim.n_trs, 2)), voxel_coords=np.zeros((2, 3)),
                   voxel_labels=["a", "b"], voxel_is_language=[True, False], name="hp")
    with pytest.raises(DataError, match="simulated"):
        GT.true_contributions(real, [0])
