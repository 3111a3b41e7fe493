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
