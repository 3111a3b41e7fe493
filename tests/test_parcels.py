"""Parcel-wise data: voxels averaged within Harvard-Oxford parcels (brainattr.data.parcels)."""
import numpy as np
import pytest

from brainattr.data import load_dataset, parcellate, split_parcels
from brainattr.data.parcels import MAX_DISTANCE, parcel_average_matrix, parcel_members, parcel_of_voxels
from brainattr.schema import DataError, Dataset, Stimulus


def _stimulus(n_trs=12):
    return Stimulus(name="toy", words=np.array(["a", "b"]), word_onsets=np.array([0.0, 2.0]),
                    word_runs=np.zeros(2, int), tr_times=2.0 * np.arange(n_trs), tr_runs=np.zeros(n_trs, int), tr=2.0)


@pytest.fixture(scope="module")
def atlas_voxels():
    """Coordinates of atlas voxels of two parcels: 3 in the left angular gyrus, 2 in the right occipital pole."""
    from brainattr.data import voxel_table  # the table takes ~5 s to build in a fresh cache

    table = voxel_table()
    ag = table.loc[table.region == "Left_Angular_Gyrus", ["x", "y", "z"]].to_numpy()[:3]
    occ = table.loc[table.region == "Right_Occipital_Pole", ["x", "y", "z"]].to_numpy()[:2]
    return ag, occ


def _dataset(coords, seed=0, meta=None):
    rng = np.random.default_rng(seed)
    n = len(coords)
    return Dataset(stimulus=_stimulus(), subject="sub-01", responses=rng.standard_normal((12, n)),
                   voxel_coords=coords, voxel_labels=np.array(["x"] * n), voxel_is_language=np.zeros(n, bool),
                   name="toy", meta=meta or {})


@pytest.mark.medium
def test_parcellate_averages_each_parcels_voxels(atlas_voxels):
    ag, occ = atlas_voxels
    outside = np.array([[0.0, 0.0, 200.0]])  # far from every atlas voxel: no parcel
    coords = np.vstack([occ[:1], ag, outside, occ[1:]])  # parcels interleaved, language last in input order
    ds = _dataset(coords, meta={"per_voxel": np.arange(6.0), "kept": "yes"})
    par = parcellate(ds)
    assert par.name == "toy@harvard-oxford" and par.n_voxels == 2
    assert list(par.voxel_labels) == ["AG", "Right_Occipital_Pole"]  # language ROIs first, short label
    assert list(par.voxel_is_language) == [True, False]
    np.testing.assert_allclose(par.responses[:, 0], ds.responses[:, 1:4].mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(par.responses[:, 1], ds.responses[:, [0, 5]].mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(par.voxel_coords, [ag.mean(axis=0), occ.mean(axis=0)])
    assert list(par.meta["parcel_n_voxels"]) == [3, 2] and par.meta["unparcelled_voxels"] == 1
    np.testing.assert_allclose(par.meta["parcel_voxels"]["AG"], ag)
    assert par.meta["kept"] == "yes" and "per_voxel" not in par.meta and par.meta["dropped_meta"] == ("per_voxel",)
    # select_voxels keeps the per-parcel counts in step with the parcels
    assert list(par.select_voxels(np.array([False, True])).meta["parcel_n_voxels"]) == [2]


@pytest.mark.medium
def test_min_voxels_drops_small_parcels(atlas_voxels):
    ag, occ = atlas_voxels
    par = parcellate(_dataset(np.vstack([ag, occ])), min_voxels=3)
    assert list(par.voxel_labels) == ["AG"]


@pytest.mark.medium
def test_voxels_off_the_atlas_get_no_parcel(atlas_voxels):
    ag, _ = atlas_voxels
    near = ag[0] + [MAX_DISTANCE * 0.9, 0, 0]
    far = ag[0] + [0, 0, 60.0 + 200]
    regions = parcel_of_voxels(np.array([near, far]))
    assert regions[0] != "" and regions[1] == ""


@pytest.mark.medium
def test_no_voxel_in_any_parcel_is_an_error_naming_the_fix():
    with pytest.raises(DataError, match="none of its 2 voxels falls in a harvard-oxford parcel.*MNI millimetres"):
        parcellate(_dataset(np.array([[500.0, 0.0, 0.0], [0.0, 500.0, 0.0]])))


def test_voxels_without_coordinates_are_an_error_naming_the_dataset_and_the_fix():
    ds = _dataset(np.array([[np.nan, np.nan, np.nan], [0.0, 0.0, 0.0]]))
    with pytest.raises(DataError, match=r"'toy' subject sub-01: 1 voxel\(s\) have no MNI coordinates.*'hp'"):
        parcellate(ds)


def test_parcel_average_matrix_means_and_skips_unassigned():
    A = parcel_average_matrix(np.array([1, 0, 1, -1, 1]), 2).toarray()
    np.testing.assert_allclose(A, [[0, 1 / 3], [1, 0], [0, 1 / 3], [0, 0], [0, 1 / 3]])


def test_dataset_names_carry_the_parcellation():
    assert split_parcels("builtin") == ("builtin", None)
    assert split_parcels("builtin@harvard-oxford") == ("builtin", "harvard-oxford")
    assert split_parcels("hp", "harvard-oxford") == ("hp", "harvard-oxford")
    with pytest.raises(DataError, match="unknown parcellation 'schaefer'.*harvard-oxford"):
        split_parcels("builtin@schaefer")
    with pytest.raises(DataError, match="give one"):
        split_parcels("builtin@harvard-oxford", "other")
    with pytest.raises(DataError, match="unknown parcellation"):
        load_dataset("builtin", parcels="aal")


@pytest.mark.medium
def test_load_dataset_parcels_every_subject_of_the_builtin_data():
    kw = dict(max_words=600, n_language_voxels=40, n_control_voxels=20)
    voxels = load_dataset("builtin", ["sub-01", "sub-02"], **kw)
    parcels = load_dataset("builtin@harvard-oxford", ["sub-01", "sub-02"], **kw)
    assert [p.name for p in parcels] == ["builtin@harvard-oxford"] * 2
    for v, p in zip(voxels, parcels):
        assert p.voxel_is_language.sum() == 9  # the 9 language ROIs, each one parcel
        assert p.n_voxels < v.n_voxels and p.meta["parcel_n_voxels"].sum() == v.n_voxels
        # what the ground truth needs travels along, under a key that does not claim a voxel-level simulation
        assert p.meta["parcel_source_simulation"] == v.meta["simulation"] and "simulation" not in p.meta
        lang = v.voxel_labels == "AG"
        np.testing.assert_allclose(p.responses[:, list(p.voxel_labels).index("AG")],
                                   v.responses[:, lang].mean(axis=1), rtol=1e-5, atol=1e-6)


@pytest.mark.medium
def test_parcel_members_rebuild_the_parcels_from_the_voxel_recording(atlas_voxels):
    ag, occ = atlas_voxels
    coords = np.vstack([occ[:1], [[0.0, 0.0, 200.0]], ag, occ[1:]])
    ds = _dataset(coords)
    par = parcellate(ds).select_voxels(np.array([False, True]))  # keep the occipital parcel only
    columns, average = parcel_members(par, ds.voxel_coords)
    assert columns.tolist() == [0, 5]
    np.testing.assert_allclose(ds.responses[:, columns] @ average.toarray(), par.responses, rtol=1e-6)
    with pytest.raises(DataError, match="not in the given recording"):
        parcel_members(par, ds.voxel_coords[:3])
    with pytest.raises(DataError, match="not a parcel Dataset"):
        parcel_members(ds, ds.voxel_coords)


# ---------------------------------------------------------------- the planted truth of parcels
@pytest.fixture(scope="module")
def parcel_sim(small_stimulus):
    """A tiny simulated subject (voxel level) and its Harvard-Oxford parcel Dataset."""
    from brainattr.data import simulate as S

    sim = S.simulate(small_stimulus, subject="sub-01", seed=0, n_language=40, n_control=20)
    return sim, parcellate(sim.dataset)


def _members_by_hand(voxels, parcels):
    """Voxel columns of each parcel, from the atlas regions (not through parcel_members)."""
    from brainattr.data import LANGUAGE_ROIS

    regions = parcel_of_voxels(voxels.voxel_coords)       # short language-ROI labels name their region
    return [np.flatnonzero(regions == LANGUAGE_ROIS.get(str(label), str(label))) for label in parcels.voxel_labels]


def test_parcel_ground_truth_is_the_mean_of_the_member_voxels_truth(parcel_sim):
    from brainattr.data import (ParcelSimulatedSubject, as_simulated, has_ground_truth, true_contributions,
                                true_contributions_table, true_signal_correlation, true_word_importance)

    sim, par = parcel_sim
    members = _members_by_hand(sim.dataset, par)
    assert any(m.size > 1 for m in members)          # some parcel averages several voxels

    def by_hand(x):
        return np.stack([x[..., m].mean(axis=-1) for m in members], axis=-1)

    psim = as_simulated(par)
    assert isinstance(psim, ParcelSimulatedSubject) and psim.n_voxels == par.n_voxels
    np.testing.assert_allclose(psim.clean, by_hand(sim.clean), rtol=1e-10, atol=1e-12)
    trs = np.array([40, 41, 90])
    voxel_truth = true_contributions(sim, trs)
    parcel_truth = true_contributions(par, trs)
    np.testing.assert_array_equal(parcel_truth.word_index, voxel_truth.word_index)
    np.testing.assert_allclose(parcel_truth.values, by_hand(voxel_truth.values), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(parcel_truth.values.sum(axis=1), psim.clean[trs], rtol=1e-8, atol=1e-10)
    lang = np.flatnonzero(par.voxel_is_language)
    imp = true_word_importance(par, trs, lang)
    np.testing.assert_allclose(imp.values, np.linalg.norm(by_hand(voxel_truth.values)[..., lang], axis=-1),
                               rtol=1e-10, atol=1e-12)
    # the chapters' table: signed sum over the language parcels, each in units of its response's sd
    table = true_contributions_table(par, trs, how="sum", units="response_sd")
    sd = par.responses[:, lang].astype(np.float64).std(axis=0)
    expected = (by_hand(voxel_truth.values)[..., lang] / sd).sum(axis=-1)
    np.testing.assert_allclose(table["contribution"], expected[voxel_truth.word_index >= 0], rtol=1e-8, atol=1e-12)
    # subsets of parcels line up column for column; the measured parcels are the clean ones plus noise
    some = par.select_voxels(np.arange(par.n_voxels) % 2 == 1)
    np.testing.assert_allclose(true_contributions(some, trs).values, parcel_truth.values[..., 1::2], rtol=1e-10,
                               atol=1e-12)
    assert np.nanmean(true_signal_correlation(par)[lang]) > 0.1
    assert has_ground_truth(par) and has_ground_truth(sim.dataset) and has_ground_truth(sim)
    real = Dataset(stimulus=par.stimulus, subject="x", responses=par.responses, voxel_coords=par.voxel_coords,
                   voxel_labels=par.voxel_labels, voxel_is_language=par.voxel_is_language, name="hp")
    assert not has_ground_truth(real)
    with pytest.raises(DataError, match="real data have no planted truth"):
        as_simulated(real)


def test_the_oracle_and_the_noise_rescaling_work_on_parcels(parcel_sim):
    from brainattr.data import as_simulated
    from brainattr.oracle import oracle_features, with_noise

    sim, par = parcel_sim
    clean = as_simulated(par).clean
    quiet = with_noise(par, 0.0)
    np.testing.assert_allclose(quiet.responses, clean, rtol=1e-5, atol=1e-5)
    louder = with_noise(par, 2 * sim.params["noise"])
    np.testing.assert_allclose(louder.responses - clean, 2 * (par.responses - clean), rtol=1e-4, atol=1e-4)
    assert oracle_features(par).shape == (par.stimulus.n_trs, sim.drivers.shape[1])


def test_chapter_3_targets_on_parcels_have_no_sparse_plant_view(parcel_sim):
    from brainattr.pipeline import ground_truth_targets, has_plant

    sim, par = parcel_sim
    assert has_plant(sim.dataset) and not has_plant(par)   # a parcel averages the plant voxels with others
    (kind, targets, encodings, _), (_, measured, _, gxa) = ground_truth_targets([par], ["the encoding model"])
    assert len(targets) == 1 and targets[0].meta["target"] == "clean" and encodings == ["the encoding model"]
    assert kind == "clean" and len(measured) == 1 and measured[0] is par and gxa.methods == ("gxa",)
    np.testing.assert_allclose(targets[0].responses, sim.clean @ parcel_average(sim, par), rtol=1e-5, atol=1e-6)


def parcel_average(sim, par):
    """(n_voxels, n_parcels) averaging matrix of ``par`` over ``sim``'s voxels, by hand."""
    A = np.zeros((sim.n_voxels, par.n_voxels))
    for p, m in enumerate(_members_by_hand(sim.dataset, par)):
        A[m, p] = 1.0 / m.size
    return A
