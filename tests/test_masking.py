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
    # (the sweep runs each window alone, evaluate_windows pads a batch: equal up to float rounding)
    assert base.loc["nwp", "min"] == pytest.approx(loss.mean(), rel=1e-6)
    r = M.masked_scores(pred, ds, enc, trs, A.voxel_mask("all", ds, enc))
    assert base.loc["ba_r", "min"] == pytest.approx(r.mean(), abs=1e-6)
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


# ---------------------------------------------------------------- many maskings of one window, the paper's 1 %
def _block0_calls(lm):
    """The (batch, tokens) of every call of the first decoder block, and the hook's handle."""
    from brainattr.lm import decoder_layers

    calls = []
    handle = decoder_layers(lm.model)[0].register_forward_pre_hook(
        lambda m, args, kwargs: calls.append(tuple((args[0] if args else kwargs["hidden_states"]).shape[:2])),
        with_kwargs=True)
    return calls, handle


def test_reusing_the_unmasked_prefix_equals_full_passes(setup, monkeypatch):
    lm, ds, enc, _ = setup
    trs = enc.test_trs[1][[0, 3, 6]]
    windows = {int(t): A.tr_window(ds.stimulus, enc, int(t), 10) for t in trs}
    last = {tr: {w.end - 1: "zebra"} for tr, w in windows.items()}                    # the most recent word
    first = {tr: {w.start: "zebra"} for tr, w in windows.items()}                     # the oldest word
    some = {tr: {w.start + 3: "zebra", w.end - 2: "and"} for tr, w in windows.items()}
    variants = [{}, last, first, some, {int(trs[0]): {windows[int(trs[0])].end - 1: "zebra"}}]
    assert M._cache_keyword(lm.model) is not None                                      # the reuse path runs here
    pred, loss = M.evaluate_variants(lm, ds, [enc, enc], LAYER, trs, variants, context=10)
    ref_pred, ref_loss = M.evaluate_variants(lm, ds, [enc], LAYER, trs, variants, context=10, reuse_prefix=False)
    assert len(pred) == 2 and pred[0].shape == (len(variants), 3, enc.n_voxels) and loss.shape == (len(variants), 3)
    np.testing.assert_allclose(pred[0], ref_pred[0], atol=1e-5)
    np.testing.assert_allclose(pred[1], pred[0])                                       # both encodings read one pass
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    assert not np.allclose(pred[0][1], pred[0][0]) and not np.allclose(loss[2], loss[0])  # the maskings do change them
    np.testing.assert_allclose(pred[0][4, 1:], pred[0][0, 1:], atol=1e-6)              # TRs without a masked word
    monkeypatch.setattr(M, "_cache_keyword", lambda model: None)    # a model whose cache cannot be continued
    full_pred, full_loss = M.evaluate_variants(lm, ds, [enc], LAYER, trs, variants, context=10, batch_size=3)
    np.testing.assert_allclose(full_pred[0], ref_pred[0], atol=1e-5)
    np.testing.assert_allclose(full_loss, ref_loss, rtol=1e-5)
    one, one_loss = M.evaluate_windows(lm, ds, enc, LAYER, trs, context=10, replacements=some)
    np.testing.assert_allclose(one, ref_pred[0][3], atol=1e-6)
    np.testing.assert_allclose(one_loss, ref_loss[3], rtol=1e-6)


def test_masking_the_most_recent_word_runs_only_the_last_tokens(setup):
    lm, ds, enc, _ = setup
    trs = enc.test_trs[1][[0, 3, 6]]
    last = {int(t): {A.tr_window(ds.stimulus, enc, int(t), 10).end - 1: "zebra"} for t in trs}
    calls, handle = _block0_calls(lm)
    try:
        M.evaluate_variants(lm, ds, [enc], LAYER, trs, [{}, last], context=10)
    finally:
        handle.remove()
    assert len(calls) == 2 * len(trs) and all(b == 1 for b, _ in calls)   # per TR: the window, then its masking
    for (_, window), (_, masked) in zip(calls[::2], calls[1::2]):
        assert masked < window / 3, calls                                  # the masked word and the next word only


def test_sliding_window_models_run_every_masking_in_full():
    from brainattr.lm import make_tiny_model

    assert M._cache_keyword(make_tiny_model("gemma3").model) is None       # its cache drops keys beyond the window
    assert M._cache_keyword(make_tiny_model("mamba").model) is None        # a recurrent state, no keys to keep
    assert M._cache_keyword(make_tiny_model("qwen2").model) is not None


def test_share_of_each_window_in_words():
    table = _synthetic_table(n_trs=3, n_words=20)
    assert M.share_k(table, 0.1) == {100: 2, 101: 2, 102: 2}
    assert M.share_k(table, 0.01) == {100: 1, 101: 1, 102: 1}                     # at least one word
    long = pd.DataFrame({"tr": 5, "word_index": np.arange(700), "position": np.arange(700)[::-1],
                         "attribution": 1.0})
    assert M.share_k(long, M.PAPER_SHARE) == {5: 7}                               # 0.01 x 700 is 7, not 8
    assert M.share_k(long.iloc[:656], M.PAPER_SHARE) == {5: 7}                    # 6.56 words: 7
    for bad in (0, 1, 2, -0.5, 7):
        with pytest.raises(ValueError, match="share must be a fraction in"):
            M.share_k(table, bad)
    per_tr = {100: 1, 101: 3}
    top = M.top_k_words(table, per_tr)
    assert {tr: len(v) for tr, v in top.items()} == {100: 1, 101: 3, 102: 0}


def test_plans_of_a_share_mask_that_share_of_each_window():
    ba = _synthetic_table(n_trs=6, n_words=40)
    short = ba[~((ba.tr == 100) & (ba.position >= 15))]                         # TR 100's window: 15 words
    plans = M.masking_plans(short, short, ks=(0.1, 2), signs=("abs",))
    share_plans = [p for p in plans if p["share"] == 0.1]
    assert len(share_plans) == 2 * 3 and all(p["k"] == 4 for p in share_plans)   # k: the count of a full window
    assert all(np.isnan(p["share"]) and p["k"] == 2 for p in plans if p not in share_plans)
    for p in share_plans:
        sel, _ = p["draws"][0]
        assert {tr: len(v) for tr, v in sel.items()} == {100: 2, **{100 + i: 4 for i in range(1, 6)}}
    for bad in (0, 1.5, -1):
        with pytest.raises(ValueError, match="neither a number of words"):
            M.masking_plans(short, short, ks=(bad,))


def test_sweep_over_several_subjects_averages_them(setup):
    lm, ds, enc, _ = setup
    trs = enc.test_trs[1][:6]
    t, = A.compute_attributions(lm, [ds], [enc], LAYER, trs, A.AttributionSettings(context=10), progress=False)
    kw = dict(ks=(1, 0.1), signs=("abs",), context=10, voxel_set="all", n_boot=100)
    one = M.masking_sweep(lm, ds, enc, LAYER, t[("ba", "gxi")], t[("nwp", "gxi")], **kw)
    two = M.masking_sweep(lm, [ds, ds], [enc, enc], LAYER, [t[("ba", "gxi")]] * 2, t[("nwp", "gxi")], **kw)
    assert (one.n_subjects == 1).all() and (two.n_subjects == 2).all()
    cols = ["baseline", "value", "effect", "ci_low", "ci_high", "relative", "n_masked"]
    np.testing.assert_allclose(two[cols].to_numpy(float), one[cols].to_numpy(float), rtol=1e-9)   # twice the same
    assert set(one.share.dropna()) == {0.1}
    with pytest.raises(ValueError, match="one encoding and one BA table per dataset"):
        M.masking_sweep(lm, [ds, ds], [enc], LAYER, [t[("ba", "gxi")]] * 2, t[("nwp", "gxi")], **kw)


def test_masking_by_sign_panels():
    import matplotlib

    matplotlib.use("Agg")
    from brainattr.plots.masking import masking_by_sign

    rows = []
    for task in ("ba", "nwp"):
        for sign, shift in (("abs", 0.0), ("pos", -0.05), ("neg", 0.05)):
            for sel, rel in ((f"top {task.upper()}", 0.2), ("random same positions", 0.1), ("random anywhere", 0.0)):
                for target in ("nwp", "ba_r"):
                    r = rel + shift
                    rows.append(dict(masked_task=task, selection=sel, sign=sign, target=target, relative=r,
                                     rel_ci_low=r - 0.01, rel_ci_high=r + 0.01))
    fig = masking_by_sign(pd.DataFrame(rows), title="640 words")
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == ["640 words: masking BA's top words",
                                                   "640 words: masking NWP's top words"] * 2
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["magnitude", "most positive", "most negative"]
    top = ax.containers[0].lines[0]                                  # the top words' points, in %
    np.testing.assert_allclose(top.get_ydata(), [20.0, 15.0, 25.0])
    assert ax.get_ylabel() == "NWP cross-entropy: % change"


def _summary(share=np.nan, n_blocks=10, k=7):
    """A masking summary by magnitude: the top words' and the controls' relative changes, with CIs."""
    rel = {("nwp", "top NWP", "nwp"): (1.2, 0.9, 1.5), ("nwp", "random same positions", "nwp"): (0.8, 0.6, 1.0),
           ("ba", "top BA", "ba_r"): (-0.3, -0.5, -0.1), ("ba", "random same positions", "ba_r"): (-0.2, -0.4, 0.0)}
    rows = [dict(masked_task=t, selection=sel, sign="abs", k=k, target=tgt, relative=r, rel_ci_low=lo, rel_ci_high=hi,
                 n_blocks=n_blocks, share=share) for (t, sel, tgt), (r, lo, hi) in rel.items()]
    return pd.DataFrame(rows)


def test_masking_verdict_rows_and_control_gaps():
    from brainattr import pipeline

    both = pd.concat([_summary(), _summary(share=0.01)], ignore_index=True)
    rows = pipeline.masking_verdict_rows(both, k=0.01, label="640 words: ")
    (nwp_id, nwp, nwp_null, nwp_label), (ba_id, ba, ba_null, ba_label) = rows
    assert (nwp_id, ba_id) == ("masking-nwp-ce", "masking-ba-r")
    assert nwp == pytest.approx({"estimate": 2.2, "ci_low": 1.9, "ci_high": 2.5, "n_blocks": 10}) and nwp_null == 1.8
    assert ba == pytest.approx({"estimate": -30, "ci_low": -50, "ci_high": -10, "n_blocks": 10}) and ba_null == -20
    assert nwp_label == "640 words: top 1 % NWP words: NWP loss / unmasked"
    assert pipeline.masking_verdict_rows(both, k=7)[0][3] == "top 7 NWP words: NWP loss / unmasked"
    table = pipeline.verdict_table(rows)
    assert list(table.verdict) == ["reproduced", "not reproduced"]      # CI reaches 2; BA's CI holds the control
    gaps = pipeline.masking_control_gaps(_summary()).set_index("task")
    assert gaps.loc["NWP", "beyond_control"] and not gaps.loc["BA", "beyond_control"]
    assert gaps.loc["NWP", "top"] == pytest.approx(120) and gaps.loc["BA", "control"] == pytest.approx(-20)
    no_ci = _summary().assign(rel_ci_low=np.nan, rel_ci_high=np.nan)
    assert pipeline.masking_control_gaps(no_ci).beyond_control.isna().all()
    assert set(pipeline.verdict_table(pipeline.masking_verdict_rows(no_ci)).verdict) == {"not comparable"}
    with pytest.raises(ValueError, match="no rows by magnitude at k = 4"):
        pipeline.masking_verdict_rows(both, k=4)


def test_too_few_blocks_give_no_ci(setup):
    lm, ds, enc, _ = setup
    trs = enc.test_trs[1][:6]
    t, = A.compute_attributions(lm, [ds], [enc], LAYER, trs, A.AttributionSettings(context=10), progress=False)
    kw = dict(ks=(1,), signs=("abs",), tasks=("nwp",), context=10, voxel_set="all", n_boot=50, blocks="trs")
    out = M.masking_sweep(lm, ds, enc, LAYER, t[("ba", "gxi")], t[("nwp", "gxi")], **kw)
    n = int(out.n_blocks.iloc[0])
    assert n == 6 and out.ci_low.notna().all()
    out = M.masking_sweep(lm, ds, enc, LAYER, t[("ba", "gxi")], t[("nwp", "gxi")], min_blocks=n + 1, **kw)
    assert out.ci_low.isna().all() and out.rel_ci_high.isna().all() and out.effect.notna().all()


@pytest.mark.parametrize("arch", ["llama", "gemma", "qwen2", "falcon-classic", "zamba2"])
def test_a_kept_prefix_continues_exactly_in_every_family(arch):
    import torch
    from transformers import DynamicCache

    from brainattr.lm import make_tiny_model

    lm = make_tiny_model(arch)
    keyword = M._cache_keyword(lm.model)
    if keyword is None:                                     # Zamba2: every masking runs in full
        assert arch == "zamba2"
        return
    emb = lm.model.get_input_embeddings()(torch.randint(5, 100, (1, 12), generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        cache = DynamicCache()
        M._forward(lm.model, 2, emb, cache=cache, keyword=keyword)
        assert M._continuable(cache)
        states, final = M._forward(lm.model, 2, emb[:, 5:], cache=M._cache_prefix(cache, 5), keyword=keyword)
        ref_states, ref_final = M._forward(lm.model, 2, emb)
        lens, _ = M._forward(lm.model, 2, emb[:, 5:], cache=M._cache_prefix(cache, 5), keyword=keyword, final=False)
    torch.testing.assert_close(states, ref_states[:, 5:], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(final, ref_final[:, 5:], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(lens, ref_states[:, 5:], atol=1e-5, rtol=1e-4)
