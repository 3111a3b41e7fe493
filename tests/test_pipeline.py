"""Tests for brainattr.pipeline on the tiny random model: chapter 2's steps, chapters 4-8's one-call loads."""
import numpy as np
import pandas as pd
import pytest
from brainattr import encoding, metrics, pipeline, trs
from brainattr.attribution import AttributionSettings, evenly_spaced, held_out_trs
from brainattr.features import extract_word_embeddings

pytestmark = pytest.mark.medium

KW = dict(context=12, pooling="last", inner_folds=3)


@pytest.fixture(scope="module")
def data():
    from brainattr.data import load_dataset

    return load_dataset("builtin", ["sub-01", "sub-02"], max_words=600, n_language_voxels=8, n_control_voxels=4)


def test_step_by_step_equals_encode_subjects(tiny_lm, data):
    """Chapter 2's walk through one layer gives exactly the held-out r of the one-call fit."""
    lm, ds, layer = tiny_lm, data[0], 2
    stim = ds.stimulus
    emb = extract_word_embeddings(lm, stim.words, [layer], context=KW["context"], pooling="last", progress=False)[0]
    assert emb.shape == (stim.n_words, lm.hidden_size)
    X = trs.tr_average(emb, stim.word_trs, stim.n_trs)
    Xz, _, _ = trs.zscore_runs(X, stim.tr_runs)
    Xd = trs.make_delayed(Xz, stim.tr_runs)
    keep = trs.trim_mask(stim.tr_runs)
    assert X.shape == (stim.n_trs, lm.hidden_size) and Xd.shape == (stim.n_trs, len(trs.DELAYS) * lm.hidden_size)
    Yk, _, _ = trs.zscore_runs(ds.responses[keep], stim.tr_runs[keep])
    fit = encoding.fit_encoding(X, ds.responses, stim.tr_runs, inner_folds=KW["inner_folds"], progress=False)
    pred = np.zeros(Yk.shape)
    for k, (_, test) in enumerate(trs.run_splits(stim.tr_runs, keep)):
        pred[test] = Xd[keep][test].astype(np.float64) @ fit.weights[k].astype(np.float64) + fit.intercepts[k]
    r = metrics.pearson_r(Yk, pred)
    one_call = encoding.encode_subjects(lm, data, layer, progress=False, **KW)[0]
    np.testing.assert_allclose(r, one_call.scores, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r, fit.scores, rtol=1e-4, atol=1e-5)


def test_alignment_scores_and_by_model(tiny_lm, data):
    scores, fits = pipeline.alignment_scores(tiny_lm, data, [0, 2, 4], progress=False, **KW)
    assert len(scores) == 3 * sum(ds.n_voxels for ds in data)
    assert set(scores.columns) == {"subject", "layer", "voxel", "r", "label", "voxels"}
    assert set(scores.voxels) == {"language ROI", "control"} and set(fits) == {(ds.subject, layer) for ds in data
                                                                                for layer in (0, 2, 4)}
    one = encoding.encode_subjects(tiny_lm, data, 2, progress=False, **KW)[1]
    np.testing.assert_array_equal(scores.query("subject == 'sub-02' and layer == 2").r.to_numpy(), one.scores)
    per_model = pipeline.alignment_by_model(["tiny-random"], data, 2, loaded={"tiny-random": (tiny_lm, fits)},
                                            progress=False, **KW)
    assert len(per_model) == 3 * len(data) and per_model.relative_depth.max() == 1.0
    lang = data[0].voxel_is_language
    expected = fits["sub-01", 4].scores[lang].mean()
    assert per_model.query("subject == 'sub-01' and layer == 4").r.item() == pytest.approx(expected)


@pytest.fixture(scope="module")
def chapter(tiny_lm, data):
    return pipeline.chapter_tables(data=data, lm=tiny_lm, layer_step=1, n_trs=3, progress=False, **KW)


def test_chapter_tables_chooses_the_best_layers_and_attributes_them(tiny_lm, data, chapter):
    ch = chapter
    best, scores = encoding.best_layers(tiny_lm, data, 1, progress=False, **KW)
    assert ch.groups == best and ch.group_order == list(best) and ch.layer_scores == scores
    assert ch.middle == best["middle"]
    direct = pipeline.attribute_layers(tiny_lm, data, list(best.values()), AttributionSettings(context=12), n_trs=3,
                                       nwp_layer=best["middle"], inner_folds=3, progress=False)
    pd.testing.assert_frame_equal(ch.tables.drop(columns="layer_group"), direct)
    assert set(ch.tables.layer_group) == set(best)
    assert dict(zip(ch.tables.layer_group, ch.tables.layer)) == best
    assert (ch.gxi.method == "gxi").all() and len(ch.gxi) == len(ch.tables)
    assert ch.gxi.groupby(["subject", "layer", "task"]).tr.nunique().eq(3).all()
    assert str(ch) == f"tiny-random, layers {best}; 3 held-out TRs x 2 subjects, 12-word context"
    encs = ch.encodings(best["middle"])
    assert len(encs) == 2 and encs[0].n_voxels == data[0].n_voxels


def test_chapter_tables_with_given_layers_or_one_group(tiny_lm, data, chapter):
    given = pipeline.chapter_tables(data=data, lm=tiny_lm, layers=[1, 3], n_trs=3, progress=False, **KW)
    assert given.groups == {"layer 1": 1, "layer 3": 3} and given.layer_scores is None
    assert set(given.tables.layer_group) == {"layer 1", "layer 3"} and given.middle == 1
    middle = pipeline.chapter_tables(data=data, lm=tiny_lm, layer_step=1, groups=("middle",), n_trs=3,
                                     progress=False, **KW)
    assert middle.groups == {"middle": chapter.groups["middle"]}
    same = chapter.tables[chapter.tables.layer == chapter.middle].reset_index(drop=True)
    pd.testing.assert_frame_equal(middle.tables, same)
    # scoring layers 0, 2, 4 of the 4 blocks leaves the middle third without a scored layer
    with pytest.raises(ValueError, match="no scored layer of tiny-random falls in the middle group"):
        pipeline.chapter_tables(data=data, lm=tiny_lm, layer_step=2, groups=("middle",), progress=False, **KW)


def test_gxi_and_ig_reattributes_the_chapters_trs(chapter):
    ig = pipeline.gxi_and_ig(chapter, ig_trs=2, ig_steps=3, ig_baseline="zero")
    first = chapter.encodings(chapter.middle)[0]
    np.testing.assert_array_equal(ig.trs, evenly_spaced(held_out_trs(first, 0, 3), 2))
    assert ig.subject == "sub-01" and ig.layer == chapter.middle
    assert set(ig.tables) == {(t, m) for t in ("ba", "nwp") for m in ("gxi", "ig")}
    assert all(set(t.tr) == set(ig.trs) for t in ig.tables.values())
    # GxI on those TRs is the chapter's own GxI table (read from the store)
    mine = chapter.gxi.query("subject == 'sub-01' and layer == @chapter.middle and task == 'ba' and tr in @ig.trs")
    np.testing.assert_allclose(ig[("ba", "gxi")].attribution.to_numpy(), mine.attribution.to_numpy(), rtol=1e-5)
    agreement = pipeline.method_agreement(ig)
    assert list(agreement.columns) == ["task", "tr", "spearman", "iou_top10", "chance_top10"]
    assert len(agreement) == 2 * 2 and agreement.spearman.between(-1, 1).all()


def test_method_agreement_of_identical_tables_is_perfect():
    table = pd.DataFrame({"tr": [1] * 5 + [2] * 5, "word_index": list(range(5)) * 2, "position": list(range(5)) * 2,
                          "word": ["a"] * 10, "attribution": np.arange(1.0, 11.0),
                          "abs_attribution": np.arange(1.0, 11.0)})
    out = pipeline.method_agreement({("ba", "gxi"): table, ("ba", "ig"): table}, tasks=("ba",))
    np.testing.assert_allclose(out.spearman, 1.0)
    np.testing.assert_allclose(out.iou_top10, 1.0)


def test_condition_tables_and_comparison(tiny_lm, data):
    settings = AttributionSettings(pooling="last")
    main, cost = pipeline.condition_tables(tiny_lm, data, 12, n_trs=3, inner_folds=3, settings=settings)
    other, _ = pipeline.condition_tables(tiny_lm, data, 24, label="long", stride=8, n_trs=3, inner_folds=3,
                                         settings=settings)
    assert set(main.condition) == {"tiny-random, 12 words"} and set(other.condition) == {"long"}
    assert cost["layer"] == tiny_lm.n_layers // 2 and cost["context"] == 12
    assert set(cost) == {"condition", "model", "layer", "context", "language_r", "encoding_s", "attribution_s"}
    assert main.groupby(["subject", "task"]).tr.nunique().eq(3).all()
    enc = encoding.encode_subjects(tiny_lm, data, cost["layer"], context=12, inner_folds=3, progress=False)
    assert cost["language_r"] == pytest.approx(np.mean([e.scores[d.voxel_is_language].mean()
                                                        for d, e in zip(data, enc)]))
    table = pipeline.compare_conditions(pd.concat([main, other], ignore_index=True), threshold=0.1)
    assert list(table.index) == ["long", "tiny-random, 12 words"]
    assert list(table.columns) == ["iou", "chance", "CoM BA", "CoM NWP"]
    assert table.iou.between(0, 1).all() and (table["CoM NWP"] >= 0).all()


def test_condition_layer_is_the_middle_of_chapter_2s_grid(tiny_lm, data):
    """With ``layer_step`` the control uses a layer chapter 2 scored (its features and fits are stored)."""
    step = 1 if tiny_lm.n_layers < 4 else 3
    grid = encoding.layer_grid(tiny_lm.n_layers, step)
    _, cost = pipeline.condition_tables(tiny_lm, data[:1], 12, n_trs=1, inner_folds=2, layer_step=step)
    assert cost["layer"] == grid[len(grid) // 2] and cost["layer"] in grid


# ------------------------------------------------------------------------------ chapters 4-7: the right unit
def test_logit_lens_tables_attribute_nwp_at_each_layer(tiny_lm, chapter):
    lens = pipeline.logit_lens_tables(chapter)
    assert set(lens.task) == {pipeline.LENS_TASK} and list(lens.columns) == list(chapter.tables.columns)
    assert dict(zip(lens.layer_group, lens.layer)) == chapter.groups
    gxi = chapter.gxi
    assert lens.groupby(["subject", "layer"]).tr.nunique().eq(3).all()
    assert set(lens.tr) == set(gxi.tr)
    # read out at the last block, the logit lens is the whole model's next-word loss
    last = pipeline.chapter_tables(data=chapter.data, lm=tiny_lm, layers=[tiny_lm.n_layers], n_trs=3,
                                   progress=False, **KW)
    at_last = pipeline.logit_lens_tables(last)
    final = last.gxi[last.gxi.task == "nwp"]
    np.testing.assert_allclose(at_last.attribution.to_numpy(), final.attribution.to_numpy(), rtol=1e-4, atol=1e-7)


def test_block_means_average_per_tr_then_over_independent_blocks():
    rng = np.random.default_rng(0)
    trs_ = np.arange(0, 200, 10)
    per_tr = pd.DataFrame({"tr": np.repeat(trs_, 2), "subject": ["a", "b"] * trs_.size,
                           "x": rng.normal(1.0, 0.1, 2 * trs_.size), "y": 2.0})
    out = pipeline.block_means(per_tr, ["x"], span=5, ratios={"x / y": ("x", "y")}).set_index("quantity")
    assert list(out.columns) == pipeline.BLOCK_COLUMNS[1:]
    mean_per_tr = per_tr.groupby("tr").x.mean()
    assert out.loc["x", "estimate"] == pytest.approx(mean_per_tr.mean())
    assert out.loc["x", "n_blocks"] == trs_.size and out.loc["x", "ci_low"] < 1.0 < out.loc["x", "ci_high"]
    assert out.loc["x / y", "estimate"] == pytest.approx(mean_per_tr.mean() / 2)
    # a span wider than the spacing leaves TRs out: fewer, independent blocks
    wide = pipeline.block_means(per_tr, ["x"], span=25).iloc[0]
    assert wide["n_blocks"] == 7 and wide["n_trs"] == 7
    by = pipeline.block_means(per_tr.assign(g=per_tr.tr % 20), ["x"], span=1, by=["g"])
    assert list(by.g) == [0, 10] and by.n_blocks.tolist() == [10, 10]


def test_iou_against_nulls_keeps_positions(chapter):
    thresholds = [0.1, 0.5, 0.98]
    per_tr, summary = pipeline.iou_against_nulls(chapter.gxi, thresholds)
    assert list(summary.threshold) == thresholds and (summary.n_blocks >= 1).all()
    assert {"iou", "random_iou", "position_null_iou", "difference"} <= set(per_tr.columns)
    g = chapter.gxi[(chapter.gxi.subject == "sub-01") & (chapter.gxi.layer_group == chapter.group_order[0])]
    from brainattr.analysis import overlap

    direct = overlap(g[g.task == "ba"], g[g.task == "nwp"], thresholds)
    mine = per_tr[(per_tr.subject == "sub-01") & (per_tr.layer_group == chapter.group_order[0])]
    merged = mine.merge(direct, on=["tr", "threshold"], suffixes=("", "_direct"))
    np.testing.assert_allclose(merged.iou, merged.iou_direct)
    np.testing.assert_allclose(merged.random_iou, merged.random_iou_direct)
    text = per_tr.groupby(["threshold", "tr"]).iou.mean().groupby("threshold").mean()
    np.testing.assert_allclose(summary.set_index("threshold").iou, text)


def test_category_marks_per_tr_agree_with_the_pooled_shares():
    from brainattr.analysis import category_shares

    rng = np.random.default_rng(1)
    rows = [dict(tr=tr, word_index=tr + k, position=5 - k, word="w", attribution=rng.normal(),
                 abs_attribution=0.0) for tr in (10, 20) for k in range(6)]
    ba = pd.DataFrame(rows).assign(abs_attribution=lambda d: d.attribution.abs())
    nwp = ba.assign(attribution=rng.normal(size=len(ba))).assign(abs_attribution=lambda d: d.attribution.abs())
    cats = pd.DataFrame({"semantic": np.arange(40) % 2 == 0, "syntactic": np.arange(40) % 2 == 1,
                         "discourse": np.arange(40) % 3 == 0})
    marks = pipeline.category_marks(ba, nwp, cats, [0.5])
    pooled = category_shares(ba, nwp, cats, [0.5]).set_index(["category", "marked_by"])
    for cat in cats.columns:
        m = marks[marks.category == cat]
        weights = m.n_words / m.n_words.sum()       # the pooled share is the word-weighted mean
        for column, label in (("both", "both"), ("BA only", "BA only"), ("NWP only", "NWP only")):
            assert (weights * m[column]).sum() == pytest.approx(100 * pooled.loc[(cat, label), "share"])
        np.testing.assert_allclose(m["BA marks"], m["BA only"] + m["both"])


def test_position_summary_by_hand():
    # one TR of 10 words; all the weight on positions 0 and 9
    w = np.zeros(10)
    w[[0, 9]] = [3.0, 1.0]
    table = pd.DataFrame({"tr": 5, "word_index": np.arange(10)[::-1], "position": np.arange(10), "word": "w",
                          "attribution": w, "abs_attribution": w})
    out = pipeline.position_summary(table, threshold=0.9, edge=2).iloc[0]
    assert out.n_words == 10 and out.recent == 50.0 and out.oldest == 50.0 and out.even == 20.0
    assert out.com == pytest.approx(9 * 1 / 4) and out.com_important == pytest.approx(9 / 4)


def test_masking_effects_sweeps_magnitude_and_sign(tiny_lm, data, chapter):
    layer = chapter.middle
    g = chapter.gxi[(chapter.gxi.subject == "sub-01") & (chapter.gxi.layer == layer)]
    trs_ = np.unique(g.tr)[:2]
    out = pipeline.masking_effects(tiny_lm, data[0], chapter.encodings(layer)[0], layer, g[g.task == "ba"],
                                   g[g.task == "nwp"], trs_, ks=[1, 2], signed_ks=[1], context=12, n_boot=20)
    assert set(out.sign) == {"abs", "pos", "neg"}
    assert sorted(out[out.sign == "abs"].k.unique()) == [1, 2] and set(out[out.sign != "abs"].k) == {1}
    assert (out.n_trs == 2).all() and set(out.target) == {"nwp", "ba_r", "ba_mse"}


def test_masking_effects_are_read_from_the_cache_and_keyed_by_what_is_masked(tiny_lm, data, chapter, monkeypatch,
                                                                           tmp_path):
    from brainattr import masking
    from brainattr.cache import read_stage_log

    monkeypatch.setenv("BRAINATTR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BRAINATTR_STAGE_LOG", str(tmp_path / "stages.jsonl"))
    layer = chapter.middle
    g = chapter.gxi[(chapter.gxi.subject == "sub-01") & (chapter.gxi.layer == layer)]
    ba, nwp = g[g.task == "ba"], g[g.task == "nwp"]
    trs_ = np.unique(g.tr)[:2]
    kw = dict(ks=[1], signed_ks=[], context=12, n_boot=20)
    first = pipeline.masking_effects(tiny_lm, data[0], chapter.encodings(layer)[0], layer, ba, nwp, trs_, **kw)
    assert len(list((tmp_path / "cache" / "masking").glob("*.parquet"))) == 1
    assert [r["stage"] for r in read_stage_log(tmp_path / "stages.jsonl")].count("masking") == 1
    monkeypatch.setattr(masking, "masking_sweep", lambda *a, **k: pytest.fail("computed again"))
    again = pipeline.masking_effects(tiny_lm, data[0], chapter.encodings(layer)[0], layer, ba.iloc[::-1], nwp,
                                     trs_[::-1], **kw)                  # rows in another order: the same masking
    pd.testing.assert_frame_equal(again, first)
    for changed in (dict(kw, ks=[2]), dict(kw, seed=1)):                 # another masking is not read from it
        with pytest.raises(pytest.fail.Exception, match="computed again"):
            pipeline.masking_effects(tiny_lm, data[0], chapter.encodings(layer)[0], layer, ba, nwp, trs_, **changed)
    other = ba.assign(attribution=ba.attribution[::-1].to_numpy())      # other scores rank other words
    with pytest.raises(pytest.fail.Exception, match="computed again"):
        pipeline.masking_effects(tiny_lm, data[0], chapter.encodings(layer)[0], layer, other, nwp, trs_, **kw)


def test_lm_noise_sweep_refits_the_lm_at_each_level_and_scores_ba_and_the_plant(tiny_lm, data, chapter):
    from brainattr.data import load_dataset
    from brainattr.oracle import with_noise

    ds, = load_dataset("builtin", ["sub-01"], max_words=600, n_language_voxels=40, n_control_voxels=4)
    assert pipeline.has_plant(ds)                                     # 2 sparse-plant voxels
    layer, trs_ = chapter.middle, np.unique(chapter.gxi.tr)
    settings = AttributionSettings(context=12)
    out = pipeline.lm_noise_sweep(tiny_lm, ds, layer, trs_, [0.5, ds.meta["simulation"]["noise"]], settings,
                                  inner_folds=3, n_boot=20)
    assert list(out.noise) == [0.5, ds.meta["simulation"]["noise"]] and (out.source == "the LM (BA GxI)").all()
    assert out.mean_true_r.iloc[0] > out.mean_true_r.iloc[1]          # less noise: the voxels follow their signal
    low, = encoding.encode_subjects(tiny_lm, [with_noise(ds, 0.5)], layer, progress=False, **KW)
    assert out.held_out_r.iloc[0] == pytest.approx(low.scores[ds.voxel_is_language].mean())   # refitted there
    assert out.precision_at_k.notna().all() and out.precision_prior.notna().all()   # the plant is scored too
    default, = encoding.encode_subjects(tiny_lm, [ds], layer, progress=False, **KW)
    assert out.held_out_r.iloc[1] == pytest.approx(default.scores[ds.voxel_is_language].mean())


def test_verdict_table_reads_the_papers_side_and_applies_the_one_rule():
    from brainattr import stats

    rows = [("iou-t10", dict(estimate=0.12, ci_low=0.08, ci_high=0.17, n_blocks=40), 0.02),
            ("iou-t10", dict(estimate=0.05, ci_low=0.03, ci_high=0.07), 0.02, "outside the range, above the null"),
            ("spread-early", pd.Series(dict(mean_difference=-1.0, ci_low=-2.0, ci_high=0.5)), 0.0, "straddles 0"),
            ("iou-t98", dict(estimate=0.9, ci_low=0.85, ci_high=0.95), 0.6),
            ("qwen-canonical", {}, None)]
    out = pipeline.verdict_table(rows)
    assert list(out.columns) == pipeline.VERDICT_COLUMNS
    assert out.verdict.tolist() == ["reproduced", "same direction", "not reproduced", "reproduced", "not comparable"]
    assert out.loc[0, "claim"] == "IoU of BA and NWP sets at t = 10 %" and out.loc[1, "claim"].startswith("outside")
    assert (out.loc[0, "paper_low"], out.loc[0, "paper_high"]) == (0.16, 0.16) and out.loc[0, "n_blocks"] == 40
    assert out.loc[2, "direction"] == "less" and out.loc[2, "estimate"] == -1.0 and np.isnan(out.loc[2, "paper_low"])
    assert out.loc[0, "null used"] == "position-preserving chance IoU"
    for _, r in out.iterrows():         # every verdict is the one rule's
        low = None if np.isnan(r.paper_low) else r.paper_low
        high = None if np.isnan(r.paper_high) else r.paper_high
        assert r.verdict == stats.verdict(r.estimate, r.ci_low, r.ci_high, low, high,
                                          null=0.0 if np.isnan(r["null"]) else r["null"], direction=r.direction or None)
    text = pipeline.verdict_summary(out)
    assert text.count("\n") == len(out) - 1 and "**straddles 0**: not reproduced" in text
    assert "the paper: 0.16." in text and "the paper: > 0.8." in text


def test_verdicts_reach_the_figures_index_through_the_stage_log(tmp_path, monkeypatch):
    from brainattr.book import pages

    log = tmp_path / pages.STAGE_LOG
    monkeypatch.setenv("BRAINATTR_STAGE_LOG", str(log))
    monkeypatch.setenv("BRAINATTR_NOTEBOOK", "04_important_words")
    pipeline.verdict_table([("iou-t10", dict(estimate=0.12, ci_low=0.08, ci_high=0.17), 0.02),
                            ("qwen-canonical", {}, None)])
    table = pages.verdicts_markdown(tmp_path).splitlines()
    assert len(table) == 4 and table[0].startswith("| Chapter | Claim |")
    assert "`iou-t10`" in table[2] and "0.12 [0.08, 0.17]" in table[2] and "**reproduced**" in table[2]
    assert "**not comparable**" in table[3] and "04_important_words" in table[3]
    # verdicts are not stages: the compute page's table of stage costs ignores them
    assert "verdict" not in pages.stages_markdown(tmp_path)
    assert "No verdict was recorded" in pages.verdicts_markdown(tmp_path / "empty")


def test_chapter_tables_by_model_primary_first_others_on_fewer_trs_and_groups(tiny_lm, data, chapter):
    chs = pipeline.chapter_tables_by_model(["tiny-random-falcon", "tiny-random"], model="tiny-random", data=data,
                                           lm=tiny_lm, layer_step=1, n_trs=3, other_n_trs=2, other_groups=["middle"],
                                           progress=False, **KW)
    assert list(chs) == ["tiny-random", "tiny-random-falcon"]          # the primary first, no repeat
    main, other = chs["tiny-random"], chs["tiny-random-falcon"]
    assert main.lm is tiny_lm and other.data is data                   # subjects loaded once
    pd.testing.assert_frame_equal(main.tables, chapter.tables)         # the primary as chapter_tables alone
    assert list(other.groups) == ["middle"] and other.gxi.tr.nunique() == 2 and other.lm.name == "tiny-random-falcon"
    long = pipeline.model_tables(chs)
    assert list(long.model.cat.categories) == ["tiny-random", "tiny-random-falcon"]
    assert set(long.task) == {"ba", "nwp", pipeline.LENS_TASK}
    assert long.groupby("model", observed=True).tr.nunique().to_dict() == {"tiny-random": 3, "tiny-random-falcon": 2}
    # given layers are the primary's: the other model keeps its best layers
    given = pipeline.chapter_tables_by_model(["tiny-random", "tiny-random-falcon"], data=data, layers=[1], n_trs=2,
                                             layer_step=1, groups=("middle",), progress=False, **KW)
    assert given["tiny-random"].groups == {"layer 1": 1} and list(given["tiny-random-falcon"].groups) == ["middle"]
    assert not pipeline.model_tables(given, logit_lens=False).task.eq(pipeline.LENS_TASK).any()
    only_main = pipeline.model_tables(given, logit_lens=["tiny-random"])
    assert set(only_main[only_main.task == pipeline.LENS_TASK].model) == {"tiny-random"}
    with pytest.raises(ValueError, match="not among the models"):
        pipeline.model_tables(given, logit_lens=["gpt-2"])
    with pytest.raises(ValueError, match="needs at least one model"):
        pipeline.chapter_tables_by_model([], data=data)
