"""brainattr.masking: window evaluation with replaced words, the Appendix C check."""
import numpy as np
import pytest

from brainattr import attribution as A
from brainattr import masking as M
from brainattr.attribution.batch import TokenizedText
from test_attribution import LAYER, setup  # noqa: F401  (the tiny-model fixture)


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


def test_masking_check_tables(setup):
    lm, ds, enc, _ = setup
    trs = enc.test_trs[1][:6]
    t, = A.compute_attributions(lm, [ds], [enc], LAYER, trs, A.AttributionSettings(context=10), progress=False)
    per_tr, per_voxel = M.masking_check(lm, ds, enc, LAYER, t[("ba", "gxi")], t[("nwp", "gxi")], context=10,
                                        voxel_set="all")
    assert set(per_tr.masking) == {"none", "top BA", "top NWP", "random"}
    assert (per_tr.query("masking == 'none'").n_masked == 0).all()
    assert (per_tr.query("masking != 'none'").n_masked >= 1).all()
    none = per_tr.query("masking == 'none'").set_index("tr").nwp_loss
    assert np.allclose(none.loc[trs].to_numpy(), t[("nwp", "gxi")].groupby("tr").target.first().loc[trs].to_numpy(),
                       rtol=1e-5)
    assert per_voxel.groupby("masking").size().nunique() == 1 and len(per_voxel) == 4 * ds.n_voxels


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
