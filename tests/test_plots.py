"""Tests for brainattr.plots: each figure function draws tiny hand-made tables (Agg backend)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from brainattr import plots  # noqa: E402
from brainattr.analysis import CATEGORIES  # noqa: E402

GROUPS = {"early": 2, "middle": 5, "late": 8}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _attribution_table(trs=(10, 11, 12), n_words=6, seed=0):
    """An attribution table (the columns the metrics read) with ``n_words`` words per TR."""
    rng = np.random.default_rng(seed)
    rows = []
    for tr in trs:
        for k in range(n_words):
            a = rng.standard_normal()
            rows.append(dict(tr=tr, word_index=tr * 2 + k, position=n_words - 1 - k, word=f"w{k}", attribution=a,
                             abs_attribution=abs(a)))
    return pd.DataFrame(rows)


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _line_labels(ax):
    return [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]


# ------------------------------------------------------------------------------ word shading, brain map
def test_shade_words_escapes_and_scales():
    out = plots.shade_words(["a<b", "c"], [0.5, 1.0])
    assert out.count("<span") == 2 and "a&lt;b" in out
    assert "rgba(214,39,40,0.50)" in out and "rgba(214,39,40,1.00)" in out


def test_two_readings_has_one_column_per_task():
    ba = pd.DataFrame({"word": ["x", "y"], "weight": [0.2, 0.8]})
    nwp = pd.DataFrame({"word": ["x", "y"], "weight": [0.9, 0.1]})
    out = plots.two_readings(ba, nwp, caption="<p>TR 3</p>")
    assert out.startswith("<p>TR 3</p><table>") and out.count("<td") == 2 and out.count("<span") == 4
    assert "rgba(31,119,180,1.00)" in out and "rgba(214,39,40,1.00)" in out   # each column on its own scale


def test_voxel_image_and_glass_brain():
    coords = np.array([[-48.0, 20.0, 10.0], [-54.0, -30.0, 0.0], [30.0, -80.0, 30.0]])
    values = np.array([0.5, -0.2, 0.1])
    img = plots.voxel_image(values, coords)
    assert img.ndim == 3 and np.isclose(np.abs(img.get_fdata()).sum(), 0.8)
    display = plots.glass_brain(values, coords, title="three voxels")
    assert set(display.axes) == {"l", "z", "r"}


# ------------------------------------------------------------------------------ chapter 1
class _Stimulus:
    """What rsvp_timeline reads of a Stimulus: 3 runs of 40 words, 4 words per 2 s TR."""

    def __init__(self):
        n_words, n_trs = 120, 36
        self.word_runs = np.repeat([0, 1, 2], 40)
        self.word_onsets = np.concatenate([np.arange(40) * 0.5 + 10] * 3)
        self.words = np.array([f"w{i}" for i in range(n_words)])
        self.tr_runs = np.repeat([0, 1, 2], 12)
        self.tr_times = np.concatenate([np.arange(12) * 2.0] * 3)
        self.word_trs = np.concatenate([np.arange(40) // 4 + 12 * r for r in range(3)])
        self.n_trs = n_trs


def test_rsvp_timeline():
    fig = plots.rsvp_timeline(_Stimulus(), n_words=24)
    left, right = fig.axes
    assert len(left.texts) == 24 and left.get_title() == "RSVP: one word every 0.5 s"
    assert right.get_xlabel() == "words per TR" and sum(p.get_height() for p in right.patches) == 36


def test_chapter1_panels():
    ax = plots.pos_counts(pd.DataFrame({"pos": ["NOUN", "NOUN", "VERB", "DET"]}))
    assert sorted(p.get_height() for p in ax.patches) == [1, 1, 2] and ax.get_title() == "universal part of speech"
    meta = pd.DataFrame({"dominant driver": ["semantic", "syntactic", "semantic"], "window (words)": [3, 8, 12],
                         "true-signal r": [0.1, 0.3, 0.2]})
    fig = plots.simulated_voxels(meta)
    assert len(fig.axes) == 3 and fig.axes[0].get_title() == "dominant driver group"
    ax = plots.voxel_trace(np.arange(5.0), np.arange(5.0), np.arange(5.0) ** 2, title="best voxel")
    assert _line_labels(ax) == ["measured (signal + noise)", "planted clean signal"]
    ax = plots.planted_positions(pd.Series([0.5, 0.3, 0.2], index=[0, 1, 2]), n_trs=100)
    assert len(ax.patches) == 3 and "100 TRs" in ax.get_title()


# ------------------------------------------------------------------------------ chapter 2
def _per_subject():
    rows = [dict(subject=s, layer=layer, voxels=v, r=0.1 * layer / 8 * (v == "language ROI") + 0.01 * k)
            for k, s in enumerate(["sub-01", "sub-02"]) for layer in (0, 4, 8) for v in ("language ROI", "control")]
    return pd.DataFrame(rows)


def test_alignment_by_layer():
    ax = plots.alignment_by_layer(_per_subject(), "tiny")
    assert ax.get_title() == "tiny: brain alignment by layer (2 subjects, mean ± SE)"
    assert ax.get_ylabel() == "mean held-out r (BA)"
    assert _legend_texts(ax) == ["language ROI", "control"]
    # layer 0 (the input embeddings) is drawn apart and named, never joined to the blocks
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0\n(embeddings)", "4", "8"]
    joined = [line for line in ax.get_lines() if len(line.get_xdata()) > 1 and line.get_linestyle() == "-"
              and not np.allclose(np.asarray(line.get_ydata(), dtype=float), 0.0)]     # not the zero line
    assert joined and all(0 not in set(np.asarray(line.get_xdata(), dtype=float)) for line in joined)


def test_region_boxes_orders_regions_by_mean_r():
    scores = pd.DataFrame({"label": ["IFG", "IFG", "STG", "STG", "V1"], "r": [0.1, 0.2, 0.3, 0.4, 0.0],
                           "voxels": ["language ROI"] * 4 + ["control"]})
    ax = plots.region_boxes(scores, layer=4)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["STG", "IFG", "V1"]
    assert ax.get_title() == "BA per region at layer 4, all subjects"


def test_encoding_diagnostics():
    class Enc:
        alphas = np.array([[1.0, 10.0, 10.0]])
        alpha_grid = np.array([1.0, 10.0, 100.0])
        scores = np.array([0.1, 0.2, 0.05])

    fig = plots.encoding_diagnostics(Enc(), ceiling=np.array([0.2, 0.3, 0.1]), is_language=np.array([1, 1, 0]))
    left, right = fig.axes
    assert left.get_title() == "chosen ridge penalties (all folds, all voxels)"
    assert len(right.collections[0].get_offsets()) == 2 and right.get_xlabel() == "true-signal r (ceiling)"
    fig = plots.encoding_diagnostics(Enc())
    assert not fig.axes[1].collections   # no ceiling: the right panel stays empty


def test_alignment_by_depth():
    per_model = pd.DataFrame({"model": ["a"] * 4 + ["b"] * 4, "relative_depth": [0, 0.5, 1, 1] * 2,
                              "r": np.linspace(0, 0.1, 8)})
    ax = plots.alignment_by_depth(per_model)
    assert _legend_texts(ax) == ["a", "b"] and ax.get_xlabel() == "relative depth (layer / number of layers)"


# ------------------------------------------------------------------------------ chapter 3
def test_attribution_by_position():
    tables = {"ba": _attribution_table(seed=0), "nwp": _attribution_table(seed=1)}
    fig = plots.attribution_by_position(tables, example=11, subject="sub-01")
    left, right = fig.axes
    assert left.get_title() == "TR 11" and right.get_title() == "mean over 3 TRs, sub-01"
    assert _line_labels(left) == ["BA", "NWP"] and len(left.get_lines()[0].get_xdata()) == 6
    assert all(label.startswith(("BA (CoM", "NWP (CoM")) for label in _line_labels(right))


def test_ig_paths():
    alphas = np.array([0.0, 0.01, 0.1, 1.0])
    paths = {b: pd.DataFrame({"alpha": alphas, "ba": alphas + k, "nwp": alphas * 2}) for k, b in enumerate(["zero", "eos"])}
    fig = plots.ig_paths(paths, nodes=[0.05, 0.5], tr=7)
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "TR 7: BA target along the IG path"
    assert _line_labels(fig.axes[1]) == ["from the zero baseline", "from the eos baseline"]
    assert len(fig.axes[0].get_lines()[0].get_xdata()) == 3   # alpha = 0 left out of the log axis


def test_recovery_bars_ladder_and_noise_curve():
    idx = pd.MultiIndex.from_product([["BA (GxI)", "NWP (GxI)"], ["per_tr", "position_prior", "word_identity",
                                                                  "precision_at_k", "precision_at_k_prior"]],
                                     names=["source", "score"])
    scores = pd.DataFrame({"estimate": 0.3, "ci_low": 0.2, "ci_high": 0.4, "null": 0.05, "null_high": 0.1},
                          index=idx)
    fig = plots.recovery_bars(scores)
    assert [a.get_title() for a in fig.axes][1] == "word identity (position held fixed)"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["BA (GxI)", "NWP (GxI)"]
    ladder = pd.concat({r: scores.loc["BA (GxI)"] for r in ("i. oracle", "vi. pipeline")}, names=["rung"])
    ax = plots.ladder_bars(ladder)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["i. oracle", "vi. pipeline"]
    sweep = pd.DataFrame({"noise": [1.0, 5.0, 1.0, 5.0], "target": ["prediction"] * 2 + ["mse_measured"] * 2,
                          "mean_true_r": [0.6, 0.2] * 2, "held_out_r": 0.1, "estimate": [0.9, 0.8, 0.6, 0.3],
                          "ci_low": 0.0, "ci_high": 1.0})
    ax = plots.noise_curve(sweep)
    assert _line_labels(ax) == ["oracle LM, prediction", "oracle LM, mse measured"]   # no source: the oracle's
    lm = sweep.iloc[:2].assign(source="the LM (BA GxI)", target="mse_measured")
    ax = plots.noise_curve(pd.concat([sweep.assign(source="oracle LM"), lm], ignore_index=True))
    assert _line_labels(ax) == ["oracle LM, prediction", "oracle LM, mse measured", "the LM (BA GxI), mse measured"]


# ------------------------------------------------------------------------------ chapter 4
def _iou():
    rows = [dict(subject="sub-01", layer_group=lg, tr=tr, threshold=t, iou=0.1 + t / 2, random_iou=t / 3)
            for lg in GROUPS for tr in (1, 2) for t in (0.1, 0.5, 0.98)]
    return pd.DataFrame(rows)


def test_iou_lines_draws_each_group_and_the_paper_line():
    ax = plots.iou_lines(_iou(), "tiny", group_order=list(GROUPS), paper_iou=0.16)
    data_lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    assert len(data_lines) == 3 * 2                     # 3 layer groups x (BA vs NWP, random sets)
    assert any(np.allclose(line.get_ydata(), 0.16) for line in ax.get_lines())
    assert ax.texts[0].get_text() == "paper, t = 10 %: 0.16"
    assert ax.get_title() == "tiny: BA vs NWP important words (simulated subjects, mean ± SE over TRs)"
    plt.close("all")
    ax = plots.iou_lines(_iou(), "tiny", simulated=False)
    assert not ax.texts and "simulated" not in ax.get_title()


def test_iou_lines_draws_the_position_preserving_null_when_given():
    df = _iou().assign(position_null_iou=lambda d: d["random_iou"] + 0.01)
    ax = plots.iou_lines(df, "tiny", group_order=list(GROUPS))
    assert len([line for line in ax.get_lines() if len(line.get_xdata()) == 3]) == 3 * 3
    assert "position-preserving null (BA of TR i vs NWP of TR j)" in _legend_texts(ax)


def test_effect_intervals_numeric_and_categorical_x():
    est = pd.DataFrame({"t": [10, 60, 10, 60], "estimate": [0.1, 0.2, -0.1, 0.0], "ci_low": [0.0, 0.1, -0.3, -0.1],
                        "ci_high": [0.2, 0.3, 0.1, 0.1], "readout": ["NWP", "NWP", "NWP (logit lens)", "NWP (logit lens)"]})
    ax = plots.effect_intervals(est, "t", hue="readout", palette=plots.TASK_COLORS, ylabel="IoU − null", title="x")
    assert _legend_texts(ax) == ["NWP", "NWP (logit lens)"] and ax.get_ylabel() == "IoU − null"
    assert len(ax.containers) == 2                                  # one errorbar container per hue
    bars = ax.containers[0].lines[2][0].get_segments()              # the CI segments of the first hue
    np.testing.assert_allclose(sorted(seg[:, 1].min() for seg in bars), [0.0, 0.1])
    assert any(np.allclose(line.get_ydata(), 0.0) for line in ax.get_lines())    # the no-effect line
    plt.close("all")
    cat = pd.DataFrame({"layer_group": list(GROUPS), "estimate": [1.0, 2.0, 3.0], "ci_low": [0.5, 1.0, np.nan],
                        "ci_high": [1.5, 3.0, np.nan]})
    ax = plots.effect_intervals(cat, "layer_group", order=list(GROUPS)[::-1], ref=None)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(GROUPS)[::-1] and ax.get_legend() is None


def test_truth_iou_lines():
    df = pd.concat([_iou().assign(task="BA"), _iou().assign(task="NWP")], ignore_index=True)
    ax = plots.truth_iou_lines(df)
    assert "random sets" in _legend_texts(ax)
    assert ax.get_ylabel() == "IoU with the planted important words"


def _sizes():
    rows = [dict(subject="sub-01", layer_group=lg, task=task, tr=tr, threshold=t, n_important=1 + 10 * t + k)
            for lg in GROUPS for k, task in enumerate(["BA", "NWP"]) for tr in (1, 2) for t in (0.1, 0.5, 0.9)]
    return pd.DataFrame(rows)


def test_spread_panels_one_per_group():
    fig = plots.spread_panels(_sizes(), GROUPS)
    assert [ax.get_title() for ax in fig.axes] == ["early (layer 2)", "middle (layer 5)", "late (layer 8)"]
    assert all(len([line for line in ax.get_lines() if len(line.get_xdata()) == 3]) == 2 for ax in fig.axes)


def test_auc_boxes():
    auc = pd.DataFrame({"layer_group": list(GROUPS) * 4, "task": ["BA"] * 6 + ["NWP"] * 6, "auc": np.arange(12.0)})
    ax = plots.auc_boxes(auc, list(GROUPS))
    assert [t.get_text() for t in ax.get_xticklabels()] == list(GROUPS)
    assert _legend_texts(ax) == ["BA", "NWP"] and ax.get_ylabel() == "AUC of words needed"


# ------------------------------------------------------------------------------ chapter 5
def _shares(with_truth=False):
    marked = plots.MARKED + (["planted truth"] if with_truth else [])
    rows = [dict(threshold=t, category=c, marked_by=m, share=0.1 + 0.01 * k, subject="sub-01", layer_group=lg)
            for t in (0.1, 0.6) for c in CATEGORIES for k, m in enumerate(marked) for lg in ("early", "late")]
    return pd.DataFrame(rows)


def test_category_bars_by_threshold_with_truth():
    grid = plots.category_bars(_shares(with_truth=True), truth=True, title="tiny: words marked important")
    assert [ax.get_title() for ax in grid.axes.flat] == ["t = 10 %", "t = 60 %"]
    assert len(grid.axes.flat[0].patches) >= 3 * 4      # 3 categories x 4 hues
    assert grid.figure._suptitle.get_text() == "tiny: words marked important"
    assert grid.axes.flat[0].get_ylabel() == "share of the category's words"


def test_category_bars_by_layer_group_and_method_rows():
    grid = plots.category_bars(_shares(), col="layer_group", col_order=["early", "late"], height=3.2, ylabel="y")
    assert [ax.get_title() for ax in grid.axes.flat] == ["layer_group = early", "layer_group = late"]
    plt.close("all")
    two = pd.concat([_shares().assign(method="GXI"), _shares().assign(method="IG")], ignore_index=True)
    grid = plots.category_bars(two, col="t", row="method", errorbar=None)
    assert grid.axes.shape == (2, 2)


# ------------------------------------------------------------------------------ chapter 6
def test_position_profiles_with_the_logit_lens_per_group():
    rows = [dict(task=task, layer_group=lg, position=pos, share=0.2, **{"smoothed share": 0.2})
            for task, lg in [("BA", "middle"), ("NWP (logit lens)", "middle"), ("NWP", "any")] for pos in range(3)]
    ax = plots.position_profiles(pd.DataFrame(rows), {"middle": 5}, "tiny", context=16, threshold=10)
    assert sorted(_line_labels(ax)) == ["BA, middle (layer 5)", "NWP", "NWP (logit lens), middle (layer 5)"]


def test_position_profiles_and_bars():
    rows = []
    for task, lg in [("BA", "early"), ("BA", "middle"), ("BA", "late"), ("NWP", "any"), ("planted truth", "truth")]:
        for pos in range(5):
            rows.append(dict(task=task, layer_group=lg, position=pos, share=0.2, **{"smoothed share": 0.2 + pos / 100}))
    prof = pd.DataFrame(rows)
    ax = plots.position_profiles(prof, GROUPS, "tiny", context=16, threshold=10)
    assert sorted(_line_labels(ax)) == sorted(["BA, early (layer 2)", "BA, middle (layer 5)", "BA, late (layer 8)",
                                               "NWP", "planted truth"])
    assert ax.get_yscale() == "log" and ax.get_title() == "tiny: where the important words are (simulated subjects, 16-word context)"
    fig = plots.position_bars(prof, GROUPS)
    assert len(fig.axes) == 3 and all(len(a.patches) == 10 for a in fig.axes)   # BA + NWP, 5 positions each


def test_com_boxes():
    com = pd.DataFrame({"task": ["BA"] * 6 + ["NWP"] * 2, "layer_group": list(GROUPS) * 2 + ["any"] * 2,
                        "all words": np.arange(8.0)})
    ax = plots.com_boxes(com, list(GROUPS))
    assert [t.get_text() for t in ax.get_xticklabels()] == list(GROUPS) + ["any"]


def test_method_profiles():
    rows = [dict(method=m, task=t, position=p, CoM=3.0, **{"smoothed share": 0.1})
            for m in ("GXI", "IG") for t in ("BA", "NWP") for p in range(4)]
    ax = plots.method_profiles(pd.DataFrame(rows), title="2 TRs, sub-01, layer 5")
    styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
    assert styles == {"BA, GXI (CoM 3.0)": "-", "NWP, GXI (CoM 3.0)": "-", "BA, IG (CoM 3.0)": "--",
                      "NWP, IG (CoM 3.0)": "--"}


# ------------------------------------------------------------------------------ chapters 7, 8

def _sweep():
    rows = []
    for task in ("ba", "nwp"):
        for sel in (f"top {task.upper()}", "random same positions", "random anywhere"):
            for sign in ("abs", "pos"):
                for k in (1, 2, 7):
                    for target in ("nwp", "ba_r", "ba_mse"):
                        rel = -0.01 * k if sel.startswith("top") else 0.0
                        rows.append(dict(masked_task=task, selection=sel, sign=sign, k=k, target=target,
                                         relative=rel, rel_ci_low=rel - 0.01, rel_ci_high=rel + 0.01))
    return pd.DataFrame(rows)


def test_masking_sweep_panels():
    fig = plots.masking_sweep(_sweep(), sign="abs")
    assert len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["masking BA's top words (abs)", "masking NWP's top words (abs)"] * 2
    assert fig.axes[0].get_ylabel() == "NWP cross-entropy: % change" and fig.axes[2].get_ylabel() == \
        "BA r over the TRs: % change"
    assert _legend_texts(fig.axes[0]) == plots.SELECTION_ORDER
    top = fig.axes[0].containers[0].lines[0]                        # the top words' points, in %
    np.testing.assert_allclose(top.get_ydata(), [-1.0, -2.0, -7.0])


def test_condition_profiles():
    tables = pd.concat([_attribution_table(seed=s).assign(subject="sub-01", task=task, condition=cond)
                        for s, (cond, task) in enumerate([(c, t) for c in ("m, 16 words", "m, 32 words")
                                                          for t in ("ba", "nwp")])], ignore_index=True)
    ax = plots.condition_profiles(tables, threshold=50, title="two contexts")
    styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
    assert styles == {"BA, m, 16 words": "-", "NWP, m, 16 words": "-", "BA, m, 32 words": "--",
                      "NWP, m, 32 words": "--"}
    assert ax.get_ylabel() == "share of important words (t = 50 %)" and ax.get_yscale() == "log"


def test_functions_draw_on_given_axes():
    fig, ax = plt.subplots()
    assert plots.alignment_by_layer(_per_subject(), "tiny", ax=ax) is ax
    fig, axes = plt.subplots(1, 3)
    assert plots.spread_panels(_sizes(), GROUPS, axes=axes) is fig


# ------------------------------------------------------------------------------ chapters 4-6, one panel per model
def _iou_by_model():
    one = _iou().assign(position_null_iou=lambda d: d["random_iou"] + 0.01)
    two = one[one.layer_group == "middle"].assign(iou=lambda d: d["iou"] + 0.2)
    return pd.concat([one.assign(model="model-a"), two.assign(model="model-b")], ignore_index=True)


def test_pool_models_weighs_each_model_the_same():
    df = pd.DataFrame({"model": ["a"] * 3 + ["b"], "t": [1, 1, 2, 1], "v": [1.0, 3.0, 5.0, 10.0]})
    pooled = plots.pool_models(df, "v", ["t"])
    assert set(pooled.model) == {plots.ALL_MODELS}
    assert pooled.set_index(["source_model", "t"]).v.to_dict() == {("a", 1): 2.0, ("a", 2): 5.0, ("b", 1): 10.0}
    assert pooled.groupby("t").v.mean()[1] == 6.0           # (2 + 10) / 2, not (1 + 3 + 10) / 3


def test_iou_by_model_one_panel_per_model_and_the_pooled_one():
    fig = plots.iou_by_model(_iou_by_model(), model_order=["model-b", "model-a", "absent"], paper_iou=0.16)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["model-b (2 TRs)", "model-a (2 TRs)", "all models (2: mean over models, middle)"]
    b, a, pooled = fig.axes[:3]
    assert "position-preserving null" in _legend_texts(a) and "random sets of the same sizes" in _legend_texts(a)
    assert any(np.allclose(line.get_ydata(), 0.16) for line in a.get_lines())   # the paper's line
    assert [t.get_text() for t in a.get_legend().get_texts()][:3] == ["early", "middle", "late"]  # by depth
    assert "the paper, t = 10 %: 0.16" in _legend_texts(pooled) and "the paper, t = 10 %: 0.16" not in _legend_texts(a)
    mean = next(line for line in pooled.get_lines() if line.get_label() == "BA vs NWP, mean over models")
    # the group both have (middle): model-a's, model-b's (+0.2); pooled: the mean of the two
    np.testing.assert_allclose(mean.get_ydata(), (0.1 + np.array([0.1, 0.5, 0.98]) / 2) + 0.1)
    assert {line.get_label() for line in pooled.get_lines()} >= {"model-a", "model-b"}
    with pytest.raises(ValueError, match="none of the models"):
        plots.iou_by_model(_iou_by_model(), model_order=["other"])


def test_model_grid_wraps_and_hides_the_unused_panels():
    fig, axes = plots.model_grid(7, ncols=3)
    assert len(axes) == 7 and len(fig.axes) == 9 and sum(ax.get_visible() for ax in fig.axes) == 7
    plt.close("all")
    fig, axes = plots.model_grid(2, ncols=3)
    assert len(fig.axes) == 2                                  # one row of 2, not 3
    with pytest.raises(ValueError, match="3 panels need 3 axes"):
        plots.model_grid(3, axes=axes)


def test_position_profiles_by_model_lines_per_model_and_pooled():
    rows = []
    for model, shift, lgs in (("model-a", 0.0, ["early", "late"]), ("model-b", 0.1, ["late"])):
        for task, lg in [("BA", g) for g in lgs] + [("NWP", "any"), ("planted truth", "truth")]:
            rows += [dict(model=model, task=task, layer_group=lg, position=p, **{"smoothed share": 0.1 + shift})
                     for p in range(4)]
    groups = {"model-a": {"early": 2, "late": 8}, "model-b": {"late": 12}}
    fig = plots.position_profiles_by_model(pd.DataFrame(rows), groups, context=16, threshold=10)
    a, b, pooled = fig.axes
    assert a.get_title() == "model-a (layers: early 2, late 8)" and b.get_title() == "model-b (layers: late 12)"
    assert _line_labels(a) == ["BA, early", "BA, late", "NWP", "planted truth"]   # tasks, then groups by depth
    assert a.get_yscale() == "log" and pooled.get_legend() is not None and a.get_legend() is None
    lines = {line.get_label(): line for line in pooled.get_lines()}
    np.testing.assert_allclose(lines["BA, late"].get_ydata(), 0.15)   # (0.1 + 0.2) / 2: each model weighs the same
    assert "BA, early" not in lines                                   # only model-a has an early group
    assert lines["BA, late"].get_linestyle() == "--" and a.get_lines()[0].get_linestyle() == "-"  # early -, late --


def test_category_bars_one_row_per_model_and_pooled():
    shares = pd.concat([_shares().assign(model=m) for m in ("model-a", "model-b")], ignore_index=True)
    pooled = plots.pool_models(shares, "share", ["threshold", "category", "marked_by"])
    order = ["model-a", "model-b", plots.ALL_MODELS]
    grid = plots.category_bars(pd.concat([shares, pooled], ignore_index=True), row="model", row_order=order)
    assert grid.axes.shape == (3, 2)
    assert [ax.get_title() for ax in grid.axes[:, 0]] == [f"{m} | t = 10 %" for m in order]


def test_pooled_panels_keep_what_every_model_has():
    df = pd.DataFrame({"model": ["a", "a", "b"], "layer_group": ["early", "middle", "middle"], "v": [1.0, 3.0, 5.0]})
    pooled = plots.pool_models(df, "v", [], common="layer_group")
    assert pooled.set_index("source_model").v.to_dict() == {"a": 3.0, "b": 5.0}      # a's early row left out
    none_shared = df.assign(layer_group=["x", "x", "y"])
    assert plots.pool_models(none_shared, "v", [], common="layer_group").v.tolist() == [2.0, 5.0]
    fig = plots.iou_by_model(_iou_by_model())                                         # model-b: middle only
    assert fig.axes[2].get_title() == "all models (2: mean over models, middle)"
    rows = [dict(model=m, task=t, layer_group=lg, position=p, **{"smoothed share": 0.1})
            for m, lines in (("a", [("BA", "middle"), ("NWP (logit lens)", "middle"), ("NWP", "any")]),
                             ("b", [("BA", "middle"), ("NWP", "any")])) for t, lg in lines for p in range(3)]
    fig = plots.position_profiles_by_model(pd.DataFrame(rows), {"a": {"middle": 5}, "b": {"middle": 9}}, 16, 10)
    assert _line_labels(fig.axes[2]) == ["BA, middle", "NWP"]                         # no lens line from a alone
