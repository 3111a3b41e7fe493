"""Brain maps (brainattr.plots.marker_map, brain_maps) and per-region attribution (brainattr.voxel_maps)."""
from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from brainattr import plots, voxel_maps  # noqa: E402
from brainattr.schema import Dataset, Stimulus  # noqa: E402

COORDS = np.array([[-48.0, 20.0, 10.0], [-54.0, -30.0, 0.0], [30.0, -80.0, 30.0], [40.0, -20.0, 50.0]])


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _toy_dataset(labels=("AG", "AG", "TP", "control"), language=(True, True, True, False)):
    n_trs = 8
    stim = Stimulus(name="toy", words=np.array(["a"]), word_onsets=np.array([0.0]), word_runs=np.zeros(1, int),
                    tr_times=2.0 * np.arange(n_trs), tr_runs=np.zeros(n_trs, int), tr=2.0)
    return Dataset(stimulus=stim, subject="sub-01", responses=np.random.default_rng(0).standard_normal((n_trs, 4)),
                   voxel_coords=COORDS, voxel_labels=np.array(labels), voxel_is_language=np.array(language))


# ------------------------------------------------------------------------------ plots
def test_marker_map_draws_one_marker_per_finite_value_in_each_view():
    display = plots.marker_map(np.array([0.1, np.nan, 0.3, 0.2]), COORDS, title="r")
    assert set(display.axes) == {"l", "z", "r"}
    # the top view shows every marker; the lateral views only their own hemisphere's
    sizes = {k: sum(len(c.get_offsets()) for c in ax.ax.collections) for k, ax in display.axes.items()}
    assert sizes["z"] == 3


def test_marker_map_rejects_shapes_that_disagree_and_maps_without_values():
    with pytest.raises(ValueError, match=r"values must have shape \(n_voxels,\)"):
        plots.marker_map(np.zeros(3), COORDS)
    with pytest.raises(ValueError, match="nothing to draw"):
        plots.marker_map(np.full(4, np.nan), COORDS)


def test_marker_map_draws_a_constant_map():
    display = plots.marker_map(np.ones(4), COORDS)
    assert sum(len(c.get_offsets()) for c in display.axes["z"].ax.collections) == 4


def test_brain_maps_one_row_per_map():
    fig = plots.brain_maps({"a": np.arange(4.0), "b": np.array([1.0, 2.0, np.nan, 0.5])}, COORDS,
                           cmaps={"b": "magma"})
    titles = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "a" in titles and "b" in titles
    assert len(fig.axes) >= 2 * 3  # three glass-brain views per map (plus colour bars)


# ------------------------------------------------------------------------------ voxel_maps
def test_label_masks_language_first_and_min_voxels():
    ds = _toy_dataset()
    masks = voxel_maps.label_masks(ds)
    assert list(masks) == ["AG", "TP", "control"]
    assert masks["AG"].tolist() == [True, True, False, False]
    assert list(voxel_maps.label_masks(ds, min_voxels=2)) == ["AG"]
    with pytest.raises(ValueError, match=r"labels \['IFGtri'\] are not voxel labels"):
        voxel_maps.label_masks(ds, labels=["IFGtri"])


def test_to_voxels_paints_each_regions_value_and_leaves_others_nan():
    out = voxel_maps.to_voxels(pd.Series({"AG": 2.0, "control": -1.0}), _toy_dataset())
    np.testing.assert_array_equal(out[[0, 1, 3]], [2.0, 2.0, -1.0])
    assert np.isnan(out[2])


def _table(label, weights_by_tr, n_voxels=3):
    """A per-region attribution table: ``weights_by_tr[tr]`` are the attributions at positions 0, 1, ..."""
    rows = []
    for tr, weights in weights_by_tr.items():
        n = len(weights)
        for pos, a in enumerate(weights):
            rows.append(dict(label=label, n_voxels=n_voxels, method="gxi", tr=tr, fold=0, word_index=tr * 10 + n - 1 - pos,
                             position=pos, word=f"w{pos}", attribution=a, abs_attribution=abs(a), target=1.0,
                             baseline_target=np.nan))
    return pd.DataFrame(rows)


def test_label_measures_centre_of_mass_and_overlap_with_nwp():
    near = _table("AG", {1: [1.0, 0.0, 0.0, 0.0], 2: [0.0, 1.0, 0.0, 0.0]})   # all weight at positions 0, then 1
    far = _table("TP", {1: [0.0, 0.0, 0.0, -2.0], 2: [0.0, 0.0, 1.0, 1.0]}, n_voxels=5)
    nwp = _table("nwp", {1: [1.0, 0.0, 0.0, 0.0], 2: [1.0, 0.0, 0.0, 0.0]}).drop(columns=["label", "n_voxels"])
    m = voxel_maps.label_measures(pd.concat([near, far]), nwp, threshold=0.5)
    assert list(m.index) == ["AG", "TP"] and m.loc["TP", "n_voxels"] == 5
    np.testing.assert_allclose(m["com"], [0.5, (3.0 + 2.5) / 2])
    np.testing.assert_allclose(m["iou"], [0.5, 0.0])   # AG shares NWP's word at TR 1 only
    assert (m["n_trs"] == 2).all() and "random_iou" in m


@pytest.mark.medium
def test_region_attributions_weighted_by_voxel_share_add_up_to_the_language_sets(tiny_lm):
    """BA's target over the language set is the voxel-weighted mean of its regions' targets, so, the
    gradient being linear, the regions' attributions weighted by their voxel shares sum to the set's."""
    from brainattr.attribution import AttributionSettings, attribute, held_out_trs
    from brainattr.data import load_dataset
    from brainattr.encoding import encode_subjects

    ds, = load_dataset("builtin", ["sub-01"], max_words=600, n_language_voxels=20, n_control_voxels=10)
    enc, = encode_subjects(tiny_lm, [ds], 2, context=16, inner_folds=3, progress=False)
    trs = held_out_trs(enc, None, 2)
    settings = AttributionSettings(context=16, tasks=("ba",))
    by_region = voxel_maps.attribute_by_label(tiny_lm, ds, enc, 2, trs, settings)
    assert set(by_region.label) == set(ds.voxel_labels)
    whole, = attribute(tiny_lm, [ds], [enc], 2, settings, trs=trs, progress=False)
    whole = whole[("ba", "gxi")].to_pandas().set_index(["tr", "word_index"])["attribution"]
    lang = by_region[by_region.label != "control"]
    weighted = (lang.attribution * lang.n_voxels / ds.voxel_is_language.sum()).groupby([lang.tr, lang.word_index]).sum()
    np.testing.assert_allclose(weighted.loc[whole.index], whole, rtol=1e-3, atol=1e-6 * np.abs(whole).max())
    # the control region is attributed too, and differs from any language region
    ctrl = by_region[by_region.label == "control"].set_index(["tr", "word_index"])["attribution"]
    assert not np.allclose(ctrl.loc[whole.index], whole)
    # a region table is the same as attributing a copy of the subject whose language set is that region
    ag = replace(ds, voxel_is_language=ds.voxel_labels == "AG")
    direct, = attribute(tiny_lm, [ag], [enc], 2, settings, trs=trs, progress=False)
    np.testing.assert_allclose(by_region[by_region.label == "AG"].attribution.to_numpy(),
                               direct[("ba", "gxi")].to_pandas().attribution.to_numpy())
