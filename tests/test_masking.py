"""brainattr.masking: window evaluation with replaced words, the Appendix C check."""
import numpy as np
import pandas as pd
import pytest

from brainattr import attribution as A
from brainattr import masking as M
from brainattr.attribution.batch import TokenizedText
from test_attribution import LAYER, setup  # noqa: F401  (the tiny-model fixture)

pytestmark = pytest.mark.medium  # tiny language models (see conftest.py)


def test_unmasked_evaluation_equals_the_head_and_nwp_targets(setup):
    lm, ds, enc, _ = setup
    trs = enc.test_trs[1][[0, 3, 6]]
    pred, loss = M.evaluate_windows(lm, ds, enc, LAYER, trs, context=10)
    np.testing.assert_allclose(pred, A.predict_trs(lm, ds.stimulus, enc, LAYER, trs, context=10), atol=1e-5)
    tables, = A.compute_attributions(lm, [ds], [enc], LAYER, trs, A.AttributionSettings(context=10, tasks=("nwp",)),
                                     progress=False)
    ref = tables[("nwp", "gxi")].groupby("tr")["target"].first().loc[trs].to_numpy()
    np.testing.assert_allclose(loss, ref, rtol=1e-5)


def test_replacing_a_word_changes_only_windows_that_hold_it(setup):
    lm, ds, enc, _ = setup
    trs = enc.test_trs[1][[0, 6]]
    w0 = A.tr_window(ds.stimulus, enc, int(trs[0]), 10)
    last = w0.end - 1                       # the most recent word of the first window
    reps = {int(trs[0]): {last: "zebra"}, int(trs[1]): {}}
    pred, loss = M.evaluate_windows(lm, ds, enc, LAYER, trs, context=10, replacements=reps)
    base_pred, base_loss = M.evaluate_windows(lm, ds, enc, LAYER, trs, context=10)
    assert not np.allclose(pred[0], base_pred[0]) and loss[0] != base_loss[0]
    np.testing.assert_allclose(pred[1], base_pred[1], atol=1e-6)
    assert loss[1] == pytest.approx(base_loss[1], rel=1e-6)
    assert ds.stimulus.words[last] != "zebra"   # the dataset itself is untouched


def test_random_selection_helpers(setup):
    lm, ds, enc, _ = setup
    reps = M.random_replacements(ds.stimulus, {5: np.array([10, 11])}, seed=0)
    assert set(reps[5]) == {10, 11}
    assert all(w != ds.stimulus.words[i] and w in set(ds.stimulus.words) for i, w in reps[5].items())
    trs = enc.test_trs[1][[0, 3]]
    table = A.compute_attributions(lm, [ds], [enc], LAYER, trs, A.AttributionSettings(context=10, tasks=("ba",)),
                                   progress=False)[0][("ba", "gxi")]
    top = M.masked_words(table, 0.01)
    assert all(len(v) == 1 for v in top.values())    # 1 % of the attribution: the single largest word
    best = table.loc[table.groupby("tr")["abs_attribution"].idxmax()].set_index("tr")["word_index"]
    assert all(top[tr][0] == best[tr] for tr in top)
    rnd = M.random_words(table, {int(t): 3 for t in trs}, seed=1)
    for tr in trs:
        window = set(table[table.tr == tr].word_index)
        assert len(rnd[int(tr)]) == 3 and set(rnd[int(tr)]) <= window



@pytest.mark.parametrize("kind", ["bytelevel", "metaspace"])
def test_substitution_equals_retokenizing_the_altered_text(kind, small_stimulus):
    from dataclasses import replace

    from brainattr.lm import train_tiny_tokenizer

    tok = train_tiny_tokenizer(kind)
    lm = type("LM", (), {"tokenizer": tok})()
    text = TokenizedText(lm, small_stimulus)
    reps = {0: "Zebra-crossing,", 7: "extraordinarily", 8: "a", 300: "qu'il\"", len(small_stimulus.words) - 1: "end."}
    fast = M._substituted(text, reps, tok)
    words = small_stimulus.words.astype(object).copy()
    for i, w in reps.items():
        words[i] = w
    slow = TokenizedText(lm, replace(small_stimulus, words=np.asarray(words, dtype=str), annotations=None))
    np.testing.assert_array_equal(fast.token_ids, slow.token_ids)
    np.testing.assert_array_equal(fast.spans, slow.spans)
    assert M._substituted(text, {}, tok) is text


# ---------------------------------------------------------------- the fair sweep (masking_sweep)
def _synthetic_table(n_trs=6, n_words=20, step=4, top_positions=None):
    """TR i's window holds words 4i .. 4i+19 (position 0 = the last); its largest attribution is at
    ``top_positions[i]`` (default: position i)."""
    rows = []
    for i in range(n_trs):
        idx = np.arange(step * i, step * i + n_words)
        pos = idx[-1] - idx
        attr = np.where(pos == (i if top_positions is None else top_positions[i]), 5.0, 0.01 * (pos + 1))
        rows.append(pd.DataFrame({"tr": 100 + i, "word_index": idx, "position": pos, "attribution": attr,
                                  "abs_attribution": np.abs(attr)}))
    return pd.concat(rows, ignore_index=True)


def _positions(table, selected):
    ends = table.groupby("tr").word_index.max() + 1
    return {tr: ends[tr] - 1 - np.asarray(idx) for tr, idx in selected.items()}


def test_top_k_words_by_sign(setup):
    lm, ds, enc, _ = setup
    trs = enc.test_trs[1][[0, 3, 5]]
    table = A.compute_attributions(lm, [ds], [enc], LAYER, trs, A.AttributionSettings(context=10, tasks=("ba",)),
                                   progress=False)[0][("ba", "gxi")]
    one = M.top_k_words(table, 1)
    assert {tr: list(v) for tr, v in one.items()} == {tr: list(v) for tr, v in M.masked_words(table, 0.01).items()}
    for sign, check in (("abs", lambda a: True), ("pos", lambda a: a > 0), ("neg", lambda a: a < 0)):
        top = M.top_k_words(table, 4, sign)
        assert set(top) == set(int(t) for t in trs)
        for tr, idx in top.items():
            g = table[table.tr == tr].set_index("word_index").attribution
            a = g.loc[idx].to_numpy()
            key = {"abs": np.abs, "pos": lambda x: x, "neg": lambda x: -x}[sign]
            assert all(check(x) for x in a) and np.all(np.diff(key(a)) <= 0)       # the sign, strongest first
            rest = key(g.drop(idx).to_numpy())
            assert len(idx) == 4 and key(a).min() >= rest.max()                    # nothing stronger left out
    with pytest.raises(ValueError, match="unknown sign 'up'"):
        M.top_k_words(table, 1, "up")


def test_same_position_control_keeps_the_positions_and_changes_the_tr():
    table = _synthetic_table()
    top = M.top_k_words(table, 1)
    assert {tr: int(p[0]) for tr, p in _positions(table, top).items()} == {100 + i: i for i in range(6)}
    for seed in range(5):
        ctrl = M.same_position_words(table, top, seed=seed)
        pos = {tr: int(p[0]) for tr, p in _positions(table, ctrl).items()}
        assert sorted(pos.values()) == list(range(6))                  # the masked words' positions, all of them
        assert all(pos[100 + i] != i for i in range(6))                # ... each taken from another TR
    # k words: the positions of the k words, rank for rank, from the partner TR
    top3 = M.top_k_words(table, 3)
    ctrl = M.same_position_words(table, top3, seed=1)
    own, got = _positions(table, top3), _positions(table, ctrl)
    assert all(len(v) == 3 for v in ctrl.values())
    assert sorted(map(tuple, own.values())) == sorted(map(tuple, got.values()))
    for tr, idx in ctrl.items():
        assert set(idx) <= set(table[table.tr == tr].word_index)


def test_masking_plans_replace_k_words_at_matched_positions(setup):
    lm, ds, enc, _ = setup
    trs = enc.test_trs[1][:6]
    t, = A.compute_attributions(lm, [ds], [enc], LAYER, trs, A.AttributionSettings(context=10), progress=False)
    plans = M.masking_plans(t[("ba", "gxi")], t[("nwp", "gxi")], ks=(1, 3), signs=("abs", "neg"), n_draws=2)
    assert len(plans) == 2 * 2 * 2 * 3
    assert {p["selection"] for p in plans} == set(M.SELECTIONS)
    for p in plans:
        assert len(p["draws"]) == 2
        for selected, rep_seed in p["draws"]:
            sizes = {tr: len(v) for tr, v in selected.items()}
            assert set(sizes) == set(int(x) for x in trs)
            if p["sign"] == "abs":
                assert set(sizes.values()) == {p["k"]}                 # k words per TR
            reps = M.random_replacements(ds.stimulus, selected, seed=list(rep_seed))
            for tr, idx in selected.items():
                assert sorted(reps[tr]) == sorted(int(i) for i in idx)  # exactly those words are replaced
                assert all(ds.stimulus.words[i] != w for i, w in reps[tr].items())
    for p in plans:
        if p["selection"] == "random same positions" and p["sign"] == "abs":   # equal sizes: exact
            top, = [q for q in plans if q["selection"].startswith("top") and
                    all(q[c] == p[c] for c in ("masked_task", "sign", "k"))]
            table = t[(p["masked_task"], "gxi")]
            for (ctrl, _), (sel, _) in zip(p["draws"], top["draws"]):
                own, got = _positions(table, sel), _positions(table, ctrl)
                assert sorted(np.concatenate(list(own.values()))) == sorted(np.concatenate(list(got.values())))


def test_blocks_of_non_overlapping_windows_and_bootstrap_counts():
    table = _synthetic_table(n_trs=12)                                 # windows of 20 words, 4 words apart
    blocks = M.tr_blocks(table)
    assert list(blocks) == [0] * 5 + [1] * 5 + [2] * 2
    span = table.groupby("tr").word_index.agg(["min", "max"])
    for a in blocks.index:
        for b in blocks.index:
            if blocks[b] - blocks[a] >= 2:                              # two blocks apart: no shared word
                assert span.loc[a, "max"] < span.loc[b, "min"]
    counts = M.bootstrap_counts(blocks.to_numpy(), n_boot=200, seed=0)
    assert counts.shape == (201, 12) and (counts[0] == 1).all()
    assert (counts[:, :5] == counts[:, [0]]).all() and (counts[:, 5:10] == counts[:, [5]]).all()
    block_draws = counts[1:, [0, 5, 10]]
    np.testing.assert_array_equal(block_draws.sum(1), 3)              # as many blocks as there are, with replacement
    assert M.bootstrap_counts(np.arange(4), n_boot=5).shape == (6, 4)


def test_sweep_table_and_its_unmasked_baselines(setup):
    lm, ds, enc, _ = setup
    trs = enc.test_trs[1][:8]
    t, = A.compute_attributions(lm, [ds], [enc], LAYER, trs, A.AttributionSettings(context=10), progress=False)
    out, per_tr = M.masking_sweep(lm, ds, enc, LAYER, t[("ba", "gxi")], t[("nwp", "gxi")], ks=(1, 2),
                                  signs=("abs", "pos"), context=10, voxel_set="all", n_boot=100,
                                  return_per_tr=True)
    assert list(out.columns) == list(M._SWEEP_COLUMNS)
    assert len(out) == 2 * 3 * 2 * 2 * 3 and set(out.target) == set(M.TARGETS)
    assert (out.n_trs == 8).all() and (out.n_blocks >= 1).all()
    assert ((out.ci_low <= out.effect + 1e-12) & (out.effect <= out.ci_high + 1e-12)).all()
    pred, loss = M.evaluate_windows(lm, ds, enc, LAYER, trs, context=10)
    base = out.groupby("target").baseline.agg(["min", "max"])
    assert base["min"].equals(base["max"])                              # one unmasked evaluation for every row
    assert base.loc["nwp", "min"] == pytest.approx(loss.mean(), rel=1e-9)
    r = M.masked_scores(pred, ds, enc, trs, A.voxel_mask("all", ds, enc))
    assert base.loc["ba_r", "min"] == pytest.approx(r.mean(), abs=1e-9)
    top = out[(out.selection == "top BA") & (out.sign == "abs") & (out.k == 2) & (out.target == "nwp")].iloc[0]
    rows = per_tr[(per_tr.selection == "top BA") & (per_tr.sign == "abs") & (per_tr.k == 2)]
    none = per_tr[per_tr.selection == "none"]
    assert top.effect == pytest.approx(rows.nwp.mean() - none.nwp.mean(), rel=1e-9)


def test_evaluate_windows_reads_nwp_through_the_logit_lens(setup):
    lm, ds, enc, _ = setup
    trs = enc.test_trs[1][[0, 3, 6]]
    _, loss = M.evaluate_windows(lm, ds, enc, LAYER, trs, context=10, nwp_readout="logit_lens")
    tables, = A.compute_attributions(lm, [ds], [enc], LAYER, trs, A.AttributionSettings(
        context=10, tasks=("nwp",), nwp_readout="logit_lens"), progress=False)
    ref = tables[("nwp", "gxi")].groupby("tr")["target"].first().loc[trs].to_numpy()
    np.testing.assert_allclose(loss, ref, rtol=1e-5)
    _, final = M.evaluate_windows(lm, ds, enc, LAYER, trs, context=10)
    assert not np.allclose(loss, final)


@pytest.fixture(scope="module")
def planted(tiny_lm, small_stimulus):
    """A brain planted on the embedding layer: each voxel reads the previous TR's words (delay 1), so
    at layer 0 only the delay TRs' words can move the prediction, and the encoder fits it well."""
    from brainattr.encoding import fit_encoding
    from brainattr.features import stimulus_tr_features
    from brainattr.schema import Dataset

    stim = small_stimulus
    feats = stimulus_tr_features(tiny_lm, stim, [0], context=stim.n_words, cache=False, progress=False)[0]
    rng = np.random.default_rng(0)
    Y = np.vstack([np.zeros((1, feats.shape[1])), feats[:-1]]) @ rng.standard_normal((feats.shape[1], 8))
    Y = Y + 0.2 * Y.std() * rng.standard_normal(Y.shape)
    ds = Dataset(stimulus=stim, subject="sub-01", responses=Y, voxel_coords=np.zeros((8, 3)),
                 voxel_labels=np.array(["lang"] * 8), voxel_is_language=np.ones(8, bool), name="planted")
    enc = fit_encoding(feats, Y, stim.tr_runs, trim=(0, 0), gap=0, inner_folds=3, progress=False)
    return ds, enc


def test_planted_top_words_hurt_more_than_random_words(tiny_lm, planted):
    ds, enc = planted
    assert enc.scores.mean() > 0.6
    trs = [t for t in np.concatenate([t[8:-8:3] for t in enc.test_trs]) if A.tr_window(ds.stimulus, enc, t, 30)]
    t, = A.compute_attributions(tiny_lm, [ds], [enc], 0, trs, A.AttributionSettings(context=30, voxel_set="all"),
                                progress=False)
    ba, nwp = t[("ba", "gxi")], t[("nwp", "gxi")]
    # at layer 0 only the delay words (last tokens) carry BA attribution; the context's 30 words none
    assert (ba.groupby("tr").apply(lambda g: (g.abs_attribution > 0).sum(), include_groups=False) <= 20).all()
    out = M.masking_sweep(tiny_lm, ds, enc, 0, ba, nwp, ks=(2,), signs=("abs",), tasks=("ba",), context=30,
                          voxel_set="all", n_boot=300)
    row = out.set_index(["selection", "target"])
    top, rand = row.loc[("top BA", "ba_mse")], row.loc[("random anywhere", "ba_mse")]
    assert top.ci_low > 0 and top.ci_low > rand.ci_high, out       # masking the top words raises the error more
    assert row.loc[("top BA", "ba_r")].ci_high < row.loc[("random anywhere", "ba_r")].ci_low


def test_sweep_takes_given_blocks_and_leaves_out_trs(setup):
    from brainattr import stats

    lm, ds, enc, _ = setup
    trs = enc.test_trs[1][:8]
    t, = A.compute_attributions(lm, [ds], [enc], LAYER, trs, A.AttributionSettings(context=10), progress=False)
    ids = stats.independent_blocks(trs, t[("ba", "gxi")])
    kw = dict(ks=(1,), signs=("abs",), tasks=("ba",), context=10, voxel_set="all", n_boot=50)
    out = M.masking_sweep(lm, ds, enc, LAYER, t[("ba", "gxi")], t[("nwp", "gxi")], blocks=dict(zip(trs, ids)), **kw)
    assert (out.n_trs == (ids >= 0).sum()).all() and (out.n_blocks == ids.max() + 1).all()
    with pytest.raises(ValueError, match="unknown blocks 'runs'"):
        M.masking_sweep(lm, ds, enc, LAYER, t[("ba", "gxi")], t[("nwp", "gxi")], blocks="runs", **kw)
