"""brainattr.stats on small hand-made data whose answers are known; each test can also fail."""
import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from brainattr import analysis as An
from brainattr import stats as St

WORDS_PER_TR = 4
WINDOW = 96  # words: 24 TRs of 4 words, the newest word in TR t - 1


def window(t):
    """Stimulus word indices of target TR t's window: the 96 words shown in TRs t-24 .. t-1."""
    return np.arange(WORDS_PER_TR * t - WINDOW, WORDS_PER_TR * t)


def table(trs, weight):
    """An attribution table; ``weight(t, word_index, position)`` gives each window word's score."""
    rows = []
    for t in trs:
        words = window(t)
        for k, w in enumerate(words):
            pos = len(words) - 1 - k
            a = float(weight(t, int(w), pos))
            rows.append(dict(tr=int(t), fold=0, word_index=int(w), position=pos, word=f"w{w}", attribution=a,
                             abs_attribution=abs(a), target=1.0, baseline_target=np.nan))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# window_span, independent_blocks
# --------------------------------------------------------------------------------------------
def test_window_span_from_word_trs_and_from_the_table():
    word_trs = np.arange(WORDS_PER_TR * 200) // WORDS_PER_TR
    t = table(range(30, 100, 7), lambda *_: 1.0)
    # windows of i < j are disjoint iff j - i >= 24
    assert St.window_span(t, word_trs) == 24
    dense = table(range(30, 80), lambda *_: 1.0)
    assert St.window_span(dense) == 24
    # on TRs 7 apart, the largest overlapping distance is 21 (28 is disjoint): exact for these TRs
    assert St.window_span(t) == 22
    # windows that never overlap
    assert St.window_span(table([30, 60, 90], lambda *_: 1.0)) == 1


def test_independent_blocks_thin_and_buffer():
    trs = np.arange(0, 63, 7)                                   # 0, 7, ..., 56
    assert St.independent_blocks(trs, 24).tolist() == [0, -1, -1, -1, 1, -1, -1, -1, 2]
    assert St.independent_blocks(trs, 24, block_length=24).tolist() == [0, 0, 0, 0, -1, -1, -1, 1, 1]
    # no buffer: consecutive stretches, nothing left out
    assert St.independent_blocks(trs, 24, block_length=24, buffer=False).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2]
    # any order, repeats: ids follow the TR
    assert St.independent_blocks([56, 0, 0, 28], 24).tolist() == [2, 0, 0, 1]
    # a table as span
    t = table(range(30, 100), lambda *_: 1.0)
    assert St.independent_blocks([30, 40, 54], t).tolist() == [0, -1, 1]
    with pytest.raises(ValueError, match="at least 1"):
        St.independent_blocks(trs, 0)


@pytest.mark.parametrize("block_length", [1, 5, 24])
def test_blocks_share_no_word_and_thinning_keeps_the_most_trs(block_length):
    rng = np.random.default_rng(1)
    for _ in range(30):
        trs = np.sort(rng.choice(np.arange(30, 200), size=rng.integers(2, 25), replace=False))
        ids = St.independent_blocks(trs, 24, block_length)
        for (i, bi), (j, bj) in itertools.combinations(zip(trs, ids), 2):
            if bi >= 0 and bj >= 0 and bi != bj:
                assert not np.intersect1d(window(i), window(j)).size  # windows share no word
                assert abs(i - j) >= 24
        if block_length == 1 and len(trs) <= 12:  # greedy = the largest set of TRs pairwise >= 24 apart
            best = max(len(s) for r in range(1, len(trs) + 1) for s in itertools.combinations(trs, r)
                       if all(b - a >= 24 for a, b in zip(s, s[1:])))
            assert (ids >= 0).sum() == best


# --------------------------------------------------------------------------------------------
# paired_difference, subject_level_test, bh
# --------------------------------------------------------------------------------------------
def test_paired_difference_by_hand():
    res = St.paired_difference([1, 2, 3, 4, 9], [0, 0, 0, 0, np.nan], [0, 0, 1, 1, 2])
    assert res["n_units"] == 4 and res["n_blocks"] == 2                  # the NaN pair is dropped
    assert res["mean_difference"] == pytest.approx(2.5)                  # block means 1.5 and 3.5
    assert res["mean_a"] - res["mean_b"] == pytest.approx(2.5)
    # sign patterns of (1.5, 3.5): |means| 2.5, 1, 1, 2.5 -> p = 2/4, the floor with 2 blocks
    assert res["exact"] and res["p"] == pytest.approx(0.5) and res["p_min"] == pytest.approx(0.5)
    assert res["effect_size"] == pytest.approx(2.5 / np.std([1.5, 3.5], ddof=1))
    assert 1.5 <= res["ci_low"] <= res["ci_high"] <= 3.5
    one = St.paired_difference([1, 2], [0, 0], [0, -1])                   # block -1 is left out
    assert one["n_blocks"] == 1 and one["p"] == 1.0 and np.isnan(one["ci_low"])
    assert np.isnan(St.paired_difference([], [], [])["p"])
    with pytest.raises(ValueError, match="one length"):
        St.paired_difference([1, 2], [1], [0, 0])


def test_paired_difference_detects_a_planted_effect_and_not_a_null():
    rng = np.random.default_rng(0)
    blocks = np.repeat(np.arange(12), 4)
    b = rng.normal(0, 1, 48)
    planted = St.paired_difference(b + 1 + rng.normal(0, 0.3, 48), b, blocks)
    assert planted["exact"] and planted["p"] == pytest.approx(2 / 2 ** 12)
    assert 0.7 < planted["ci_low"] < 1 < planted["ci_high"] < 1.3
    assert planted["effect_ci_low"] > 1
    null = St.paired_difference(rng.normal(0, 1, 48), rng.normal(0, 1, 48), blocks)
    assert null["p"] > 0.05 and null["ci_low"] < 0 < null["ci_high"]
    # many blocks: Monte Carlo
    mc = St.paired_difference(rng.normal(1, 1, 40), np.zeros(40), np.arange(40), n_resamples=999)
    assert not mc["exact"] and mc["p_min"] == pytest.approx(1 / 1000) and mc["p"] == pytest.approx(1 / 1000)


def test_ratio_of_means_by_hand_and_its_interval():
    res = St.ratio_of_means([2, 4, 6, 8], [1, 1, 2, 2], [0, 0, 1, 1])
    assert res["n_blocks"] == 2 and res["mean_a"] == pytest.approx(5) and res["mean_b"] == pytest.approx(1.5)
    assert res["ratio"] == pytest.approx(5 / 1.5)                      # block means (3, 7) / (1, 2)
    assert 3.0 <= res["ci_low"] <= res["ci_high"] <= 3.5              # resamples: 3, 7/2, or 10/3
    rng = np.random.default_rng(0)
    b = rng.uniform(0.5, 1.5, 60)
    planted = St.ratio_of_means(2 * b * rng.uniform(0.9, 1.1, 60), b, np.arange(60))
    assert 1.9 < planted["ci_low"] < planted["ratio"] < planted["ci_high"] < 2.1 and planted["p"] < 0.01
    one = St.ratio_of_means([1, 2], [1, 1], [0, 0])
    assert one["ratio"] == pytest.approx(1.5) and np.isnan(one["ci_low"])
    assert np.isnan(St.ratio_of_means([1.0], [0.0], [0])["ratio"])    # no positive denominator


def test_blocks_not_trs_are_the_unit():
    """Copies of a unit add no evidence: 3 blocks of 100 identical TRs cannot give p < 0.25, where a TR-level
    t test calls the same data overwhelmingly significant; and on dependent null data the TR-level test's
    false-positive rate is far above 5 % while the block test's is not."""
    d = np.repeat([0.9, 1.1, 1.0], 100) + np.random.default_rng(0).normal(0, 0.01, 300)
    blocks = np.repeat([0, 1, 2], 100)
    assert scipy.stats.ttest_1samp(d, 0).pvalue < 1e-100
    res = St.paired_difference(d, np.zeros(300), blocks)
    assert res["p"] == pytest.approx(0.25) and res["p_min"] == pytest.approx(0.25)

    rng = np.random.default_rng(3)
    trs = np.arange(0, 288, 6)                          # 48 TRs, 6 apart; dependence reaches 24 TRs
    ids = St.independent_blocks(trs, 24)
    naive = block = 0
    for _ in range(200):
        shared = rng.normal(0, 1, 13)[trs // 24] + rng.normal(0, 0.2, trs.size)   # null: mean 0, dependent
        naive += scipy.stats.ttest_1samp(shared, 0).pvalue < 0.05
        block += St.paired_difference(shared, np.zeros(trs.size), ids, n_resamples=500)["p"] < 0.05
    assert naive / 200 > 0.25 and block / 200 < 0.1


def test_subject_level_test():
    res = St.subject_level_test({"s1": 1.0, "s2": 2.0, "s3": 3.0})
    ref = scipy.stats.ttest_1samp([1, 2, 3], 0)
    assert res["n_subjects"] == 3 and res["mean"] == pytest.approx(2)
    assert res["t"] == pytest.approx(ref.statistic) and res["p"] == pytest.approx(ref.pvalue)
    assert res["p_signflip"] == pytest.approx(0.25) and res["p_signflip_min"] == pytest.approx(0.25)
    half = scipy.stats.t.ppf(0.975, 2) * 1 / np.sqrt(3)
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((2 - half, 2 + half))
    # against another null value
    shifted = St.subject_level_test(pd.Series([1.0, 2.0, 3.0]), null=2.0)
    assert shifted["t"] == pytest.approx(0) and shifted["p"] == pytest.approx(1) and shifted["mean"] == 2
    # a planted effect over 8 subjects is found; a null one is not
    rng = np.random.default_rng(0)
    assert St.subject_level_test(rng.normal(1, 0.3, 8))["p_signflip"] == pytest.approx(2 / 256)
    null = St.subject_level_test([0.3, -0.8, 1.1, -0.2, -0.5, 0.9, -1.2, 0.4])
    assert null["p"] > 0.5 and null["p_signflip"] > 0.5 and null["ci_low"] < 0 < null["ci_high"]
    assert np.isnan(St.subject_level_test([1.0])["p"]) and St.subject_level_test([1.0])["mean"] == 1


def test_bh_over_exactly_the_family():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    expected = np.minimum.accumulate((np.sort(p) * 4 / np.arange(1, 5))[::-1])[::-1]
    np.testing.assert_allclose(St.bh(p)[np.argsort(p)], expected)
    with_nan = St.bh(pd.Series([0.01, np.nan, 0.04, 0.03, 0.5], index=list("abcde")))
    assert list(with_nan.index) == list("abcde") and np.isnan(with_nan["b"])
    np.testing.assert_allclose(with_nan.drop("b").to_numpy(), St.bh(p))   # the NaN is not in the family
    assert St.bh([0.04])[0] == pytest.approx(0.04)                           # a family of one: unchanged


# --------------------------------------------------------------------------------------------
# compare_auc_blocks (Fig. 3)
# --------------------------------------------------------------------------------------------
def _auc_table(n_subjects=4, seed=0, drift=None):
    rng = np.random.default_rng(seed)
    trs = np.arange(30, 318, 6)                                   # 48 TRs; 12 independent blocks at span 24
    nwp = rng.normal(10, 2, trs.size)                             # NWP: the same for every subject
    drift = rng.normal(0, 1, 12) if drift is None else np.asarray(drift, dtype=float)
    text = drift[(trs - 30) // 24]                                # slowly varying, shared by the text
    rows = []
    for s in range(n_subjects):
        for group, shift in (("early", 0.0), ("late", 2.0)):
            ba = nwp + shift + text + rng.normal(0, 0.5, trs.size)
            rows += [dict(subject=f"sub-0{s + 1}", layer_group=group, task="ba", tr=t, auc=v) for t, v in zip(trs, ba)]
            rows += [dict(subject=f"sub-0{s + 1}", layer_group=group, task="nwp", tr=t, auc=v)
                     for t, v in zip(trs, nwp)]
    return pd.DataFrame(rows)


def test_compare_auc_blocks_finds_the_planted_group_only():
    auc = _auc_table()
    out = St.compare_auc_blocks(auc, span=24, n_resamples=2000)
    assert len(out) == 2 * (4 + 1 + 1)
    assert set(out.level) == set(St.AUC_LEVELS)
    late, early = out[out.layer_group == "late"], out[out.layer_group == "early"]
    within = late[late.level == "within subject"]
    assert (within.n_blocks == 12).all() and (within.n_units == 12).all() and (within.ci_low > 1).all()
    assert (within.p_bh < 0.01).all()
    assert late.query("level == 'over subjects'").p.item() < 0.001
    assert late.query("level == 'over subjects'").p_min.item() == pytest.approx(2 / 16)
    text_late = late.query("level == 'over text blocks'")
    assert text_late.p.item() < 0.01 and text_late.mean_difference.item() == pytest.approx(
        within.mean_difference.mean(), abs=1e-9)
    # no planted difference: the text-level test does not fire; CIs hold 0
    text_early = early.query("level == 'over text blocks'")
    assert text_early.p.item() > 0.05 and text_early.ci_low.item() < 0 < text_early.ci_high.item()
    # BH within each level over the rows of that level only
    for level in St.AUC_LEVELS:
        rows = out[out.level == level]
        np.testing.assert_allclose(rows.p_bh, St.bh(rows.p.to_numpy()))
    assert {"mean_ba", "mean_nwp", "p_signflip"} <= set(out.columns)


def _tr_level_t_tests(auc):
    """The test the book used to run: a paired t test across TRs per (layer group, subject), BH over all."""
    wide = auc.pivot_table(index=["layer_group", "subject", "tr"], columns="task", values="auc").reset_index()
    rows = [dict(layer_group=g, subject=s, n=len(d), p=scipy.stats.ttest_rel(d["ba"], d["nwp"]).pvalue)
            for (g, s), d in wide.groupby(["layer_group", "subject"])]
    out = pd.DataFrame(rows)
    out["p_bh"] = scipy.stats.false_discovery_control(out["p"].to_numpy(), method="bh")
    return out


def test_compare_auc_blocks_is_stricter_than_the_tr_level_test():
    """A text drift that lasts a window (24 TRs) and is shared by every subject, with NWP identical across
    subjects, and no planted BA - NWP difference: the TR-level paired t test (the one the book used to run) calls the
    early group significant in every subject; the block tests do not. The subject-level test does too:
    it treats the text as fixed, and the drift's mean over this text is not 0 (hence the third level)."""
    drift = np.tile([2.2, -0.6], 6)                  # 12 stretches of 24 TRs: mean 0.8, SD 1.5
    auc = _auc_table(seed=5, drift=drift)
    old = _tr_level_t_tests(auc)
    new = St.compare_auc_blocks(auc, span=24, n_resamples=2000)
    early_old = old[old.layer_group == "early"]
    early_new = new[new.layer_group == "early"].set_index("level")
    assert (early_old.n == 48).all() and (early_old.p_bh < 0.01).all()
    assert (early_new.loc["within subject", "n_units"] == 12).all()
    assert (early_new.loc["within subject", "p_bh"] > 0.05).all()
    assert early_new.loc["over text blocks", "p"] > 0.05
    assert early_new.loc["over subjects", "p"] < 0.01


# --------------------------------------------------------------------------------------------
# position_preserving_iou (Fig. 2)
# --------------------------------------------------------------------------------------------
TRS = np.arange(30, 390, 6)  # 60 TRs, 15 independent blocks


def _tables(shared_words, seed=0):
    """BA and NWP tables whose weights decay with position; ``shared_words``: key words heavy in both."""
    rng = np.random.default_rng(seed)
    n_words = WORDS_PER_TR * 400
    key = (rng.random(n_words) < 0.08) * 6.0 if shared_words else np.zeros(n_words)
    noise = {task: rng.lognormal(0, 0.7, (400, WINDOW)) for task in ("ba", "nwp")}

    def weight(task):
        return lambda t, w, p: np.exp(-p / 6) * noise[task][t, p] + key[w] * np.exp(-p / 40)

    return table(TRS, weight("ba")), table(TRS, weight("nwp"))


def test_position_null_matches_position_only_agreement():
    """Both tasks follow the same positional profile and nothing else: the observed IoU beats the uniform
    chance level, but not the position-preserving null."""
    ba, nwp = _tables(shared_words=False, seed=1)
    out = St.position_preserving_iou(ba, nwp, thresholds=[0.3, 0.6], n_resamples=2000)
    assert (out.observed_iou > 1.3 * out.uniform_null_iou).all()         # position alone beats uniform chance
    assert (out.p > 0.05).all() and (out.ci_low < 0).all() and (out.ci_high > 0).all()
    assert (out.ratio - 1).abs().max() < 0.15
    assert (out.n_blocks == 15).all() and (out.n_trs == 60).all()


def test_position_null_detects_shared_words():
    ba, nwp = _tables(shared_words=True)
    out = St.position_preserving_iou(ba, nwp, thresholds=[0.3, 0.6], n_resamples=2000)
    assert (out.p < 0.001).all() and (out.ci_low > 0).all() and (out.ratio > 1.2).all()


def test_position_iou_semantics_and_partners():
    ba, nwp = _tables(shared_words=True, seed=1)
    out, per_tr = St.position_preserving_iou(ba, nwp, thresholds=[0.1, 0.5], n_resamples=500, return_per_tr=True)
    # same TR: the IoU by position is the word IoU of analysis.overlap, and the uniform chance is its random_iou
    ref = An.overlap(ba, nwp, [0.1, 0.5]).set_index(["threshold", "tr"])
    mine = per_tr.set_index(["threshold", "tr"]).loc[ref.index]
    np.testing.assert_allclose(mine.observed_iou, ref.iou)
    np.testing.assert_allclose(mine.uniform_null_iou, ref.random_iou)
    # partners: every TR whose window shares no word (|i - j| >= 24: all but 7 in the middle)
    middle = per_tr[(per_tr.threshold == 0.1) & (per_tr.tr == TRS[30])]
    assert middle.n_null_pairs.item() == len(TRS) - 7
    # the null by hand for one TR
    imp_ba, imp_nwp = An.important_words(ba, [0.5]), An.important_words(nwp, [0.5])
    i = TRS[30]
    pos_i = set(imp_ba[imp_ba.tr == i].position)
    ious = []
    for j in TRS[np.abs(TRS - i) >= 24]:
        pos_j = set(imp_nwp[imp_nwp.tr == j].position)
        ious.append(len(pos_i & pos_j) / len(pos_i | pos_j))
    got = per_tr[(per_tr.threshold == 0.5) & (per_tr.tr == i)].position_null_iou.item()
    assert got == pytest.approx(np.mean(ious))
    # a sample of partners
    few = St.position_preserving_iou(ba, nwp, thresholds=[0.5], n_pairs=5, n_resamples=500)
    assert few.n_null_pairs.item() == 5
    # TRs with no partner are left out
    close = St.position_preserving_iou(ba[ba.tr.isin(TRS[:3])], nwp[nwp.tr.isin(TRS[:3])], thresholds=[0.5])
    assert close.n_trs.item() == 0 and np.isnan(close.p.item())
    with pytest.raises(ValueError, match="different windows"):
        St.position_preserving_iou(ba, nwp.assign(word_index=nwp.word_index + 1), thresholds=[0.5])


# --------------------------------------------------------------------------------------------
# verdict
# --------------------------------------------------------------------------------------------
def test_verdict_every_branch():
    v = St.verdict
    # not comparable: the paper gives no number and no direction; or no interval here
    assert v(0.2, 0.1, 0.3) == "not comparable"
    assert v(np.nan, np.nan, np.nan, paper_low=0.16, paper_high=0.16) == "not comparable"
    assert v(0.2, None, 0.3, direction="greater") == "not comparable"
    # reproduced: the CI overlaps the paper's value or range (one-sided bounds included)
    assert v(0.17, 0.14, 0.20, paper_low=0.16, paper_high=0.16) == "reproduced"
    assert v(1.6, 1.2, 2.2, paper_low=1.5, paper_high=2.0, null=1.0) == "reproduced"
    assert v(0.85, 0.81, 0.9, paper_low=0.8) == "reproduced"
    # same direction: the paper's direction, read from its range, or given
    assert v(0.45, 0.40, 0.50, paper_low=0.16, paper_high=0.16, null=0.01) == "same direction"
    assert v(0.6, 0.5, 0.7, paper_low=0.8) == "same direction"
    assert v(-2.0, -3.0, -1.0, direction="less") == "same direction"
    assert v(2.0, 1.0, 3.0, direction=+1) == "same direction"
    # not reproduced: the CI holds the null, the sign is opposite, or the range gives no direction
    assert v(-0.5, -1.0, 0.2, direction="less") == "not reproduced"
    assert v(2.0, 1.0, 3.0, direction="less") == "not reproduced"
    assert v(0.05, 0.02, 0.08, paper_low=0.16, paper_high=0.16, null=0.10) == "not reproduced"  # below chance
    assert v(3.0, 2.5, 3.5, paper_low=-1.0, paper_high=1.0) == "not reproduced"
    # a far-off number in the paper's direction is not "reproduced"
    assert v(-0.06, -0.08, -0.04, paper_low=-1.0, paper_high=-1.0) == "same direction"
    assert v(0.45, 0.40, 0.50, paper_low=0.16, paper_high=0.16) != "reproduced"
    assert set(St.VERDICTS) == {"reproduced", "same direction", "not reproduced", "not comparable"}
    with pytest.raises(ValueError, match="direction"):
        v(1.0, 0.5, 1.5, direction="up")
    with pytest.raises(ValueError, match="above"):
        v(1.0, 1.5, 0.5, direction="greater")
