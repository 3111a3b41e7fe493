"""Recovery scores against planted truth: scores that position alone cannot pass (synthetic tables)."""
import numpy as np
import pandas as pd
import pytest

from brainattr import recovery as R


def _synthetic(n_trs=40, n_pos=30, seed=0, word_weight=1.0, position_weight=1.0):
    """Truth = word factor x position envelope; returns (truth table, attribution-like table maker)."""
    rng = np.random.default_rng(seed)
    envelope = np.exp(-np.arange(n_pos) / 6.0)
    rows = []
    for k in range(n_trs):
        tr = 100 + 30 * k
        word_factor = rng.lognormal(0, 0.7, n_pos)
        for p in range(n_pos):
            rows.append(dict(tr=tr, word_index=tr * 4 - p, position=p,
                             contribution=(word_factor[p] ** word_weight) * envelope[p] ** position_weight,
                             word_factor=word_factor[p], envelope=envelope[p]))
    return pd.DataFrame(rows)


def _table(df, scores):
    out = df[["tr", "word_index", "position"]].copy()
    out["attribution"] = scores
    out["abs_attribution"] = np.abs(scores)
    return out


def test_position_alone_passes_per_tr_but_not_word_identity():
    truth = _synthetic()
    position_only = _table(truth, truth["envelope"].to_numpy())
    scores = R.recovery_scores({"s": position_only}, {"s": truth}, n_boot=200)
    assert scores.loc["per_tr", "estimate"] > 0.8            # the old score is fooled by position
    assert scores.loc["position_prior", "estimate"] > 0.8    # and the prior says so
    wi = scores.loc["word_identity"]
    assert np.isnan(wi["estimate"]) or abs(wi["estimate"]) < 0.05   # constant within position: no word information


def test_word_identity_rewards_knowing_the_word():
    truth = _synthetic(seed=1)
    knows_words = _table(truth, truth["contribution"].to_numpy() * np.exp(
        np.random.default_rng(2).normal(0, 0.3, len(truth))))
    scores = R.recovery_scores({"s": knows_words}, {"s": truth}, n_boot=300)
    wi = scores.loc["word_identity"]
    assert wi["estimate"] > 0.7
    assert wi["ci_low"] > wi["null_high"]     # CI excludes the within-position shuffle null
    assert abs(wi["null"]) < 0.1


def test_precision_at_k_sparse_plant():
    truth = _synthetic(seed=3)
    sparse = truth.copy()
    mentions = np.random.default_rng(4).random(len(sparse)) < 0.08
    sparse["contribution"] = np.where(mentions, sparse["envelope"], 0.0)
    perfect = _table(sparse, sparse["contribution"].to_numpy())
    position_only = _table(sparse, sparse["envelope"].to_numpy())
    p = R.recovery_scores({"s": perfect}, {"s": truth}, {"s": perfect}, {"s": sparse}, n_boot=100)
    assert p.loc["precision_at_k", "estimate"] == pytest.approx(1.0)
    assert p.loc["precision_at_k", "null"] < 0.2
    q = R.recovery_scores({"s": position_only}, {"s": truth}, {"s": position_only}, {"s": sparse}, n_boot=100)
    # knowing positions finds a sparse plant only at its base rate (plus the envelope's help)
    assert q.loc["precision_at_k", "estimate"] < 0.5
    assert q.loc["precision_at_k_prior", "estimate"] < 0.5


def test_a_word_class_prior_sets_the_bar_a_class_alone_reaches():
    """Truth that favours one word class: scoring by class alone gains word identity, the class prior says
    how much, and only knowing the word itself beats it."""
    truth = _synthetic(seed=8)
    rng = np.random.default_rng(9)
    classes = np.where(rng.random(truth.word_index.max() + 1) < 0.4, "NOUN", "DET")
    content = classes[truth.word_index] == "NOUN"
    truth["contribution"] *= np.where(content, 4.0, 1.0)
    class_only = _table(truth, truth["envelope"].to_numpy() * np.where(content, 4.0, 1.0))
    knows_words = _table(truth, truth["contribution"].to_numpy())
    a = R.recovery_scores({"s": class_only}, {"s": truth}, n_boot=200, word_classes=classes)
    b = R.recovery_scores({"s": knows_words}, {"s": truth}, n_boot=200, word_classes=classes)
    prior = a.loc["word_identity_class_prior"]
    assert prior["estimate"] > 0.3                                  # the class alone is worth a lot here
    assert a.loc["word_identity", "ci_low"] > a.loc["word_identity", "null_high"]   # and passes the shuffle null
    assert abs(a.loc["word_identity", "estimate"] - prior["estimate"]) < 0.1   # but not the class prior
    assert b.loc["word_identity", "ci_low"] > prior["ci_high"]      # knowing the word does
    assert "word_identity_class_prior" not in R.recovery_scores({"s": knows_words}, {"s": truth}, n_boot=50).index
    plant = truth.assign(contribution=np.where(content, truth["envelope"], 0.0))   # driven by one class only
    position_only = _table(plant, plant["envelope"].to_numpy())
    p = R.recovery_scores({"s": position_only}, {"s": truth}, {"s": position_only}, {"s": plant}, n_boot=50,
                          word_classes=classes)
    assert p.loc["precision_at_k_class_prior", "estimate"] > 0.9 > p.loc["precision_at_k_prior", "estimate"]
    aligned = R.aligned_scores(knows_words, truth)
    others = aligned[aligned.tr != aligned.tr.min()]                # leave-one-TR-out, same position and class
    first = aligned[aligned.tr == aligned.tr.min()]
    mean = others.groupby([others.position, classes[others.word_index]])["truth"].mean()
    expected = np.array([mean[(p, classes[w])] for p, w in zip(first.position, first.word_index)])
    got = R.with_word_class_prior(aligned, classes).loc[first.index, "score"].to_numpy()
    np.testing.assert_allclose(got, expected / expected.sum())       # as shares of the TR's total


def test_position_prior_leaves_the_tr_out():
    truth = _synthetic(n_trs=3, n_pos=4, seed=5)
    aligned = R.aligned_scores(_table(truth, truth["contribution"].to_numpy()), truth)
    prior = R.with_position_prior(aligned)
    first = aligned[aligned.tr == aligned.tr.min()]
    others = aligned[aligned.tr != aligned.tr.min()].groupby("position")["truth"].mean()
    np.testing.assert_allclose(prior.loc[first.index, "score"].to_numpy(), others.loc[first.position].to_numpy())


def test_signed_reading_needs_signed_truth():
    truth = _synthetic(seed=6)
    signed = truth.copy()
    signed["contribution"] *= np.where(np.random.default_rng(7).random(len(signed)) < 0.5, -1, 1)
    right_sign = _table(signed, signed["contribution"].to_numpy())
    flipped = _table(signed, -signed["contribution"].to_numpy())
    a = R.recovery_scores({"s": right_sign}, {"s": signed}, how="signed", n_boot=100)
    b = R.recovery_scores({"s": flipped}, {"s": signed}, how="signed", n_boot=100)
    assert a.loc["per_tr", "estimate"] > 0.9 and b.loc["per_tr", "estimate"] < -0.9
    c = R.recovery_scores({"s": flipped}, {"s": signed}, how="abs", n_boot=100)
    assert c.loc["per_tr", "estimate"] > 0.9      # magnitudes cannot tell the sign
    with pytest.raises(ValueError, match="how must be"):
        R.aligned_scores(right_sign, signed, how="positive")


def test_describe_writes_verdicts_from_the_cis():
    idx = pd.MultiIndex.from_product([["BA (GxI)", "NWP (GxI)"], ["per_tr", "position_prior", "word_identity"]],
                                     names=["source", "score"])
    rec = pd.DataFrame({"estimate": [0.3, 0.99, 0.07, 0.1, 0.99, 0.16], "ci_low": [0.28, 0.98, 0.02, 0.08, 0.98, 0.1],
                        "ci_high": [0.32, 0.99, 0.12, 0.14, 0.99, 0.2], "null": 0.0, "null_high": 0.04,
                        "coverage": 1.0}, index=idx)
    text = R.describe(rec)
    assert "the position prior alone 0.99 [0.98, 0.99], higher" in text
    assert "not above its shuffle null" in text and "NWP (GxI) 0.16" in text
    rec.loc[("BA (GxI)", "word_identity"), "ci_low"] = 0.05
    assert "0.07 [0.05, 0.12], above its shuffle null" in R.describe(rec)
    prior = pd.DataFrame({"estimate": 0.3, "ci_low": 0.25, "ci_high": 0.35, "null": 0.0, "null_high": 0.04,
                          "coverage": 1.0}, index=pd.MultiIndex.from_tuples([("BA (GxI)", "word_identity_class_prior")],
                                                                         names=["source", "score"]))
    assert "BA (GxI) is below it" in R.describe(pd.concat([rec, prior]))
    plant = pd.DataFrame({"estimate": [0.03, 0.03, 0.6], "ci_low": [0.01, 0.01, 0.5], "ci_high": [0.06, 0.07, 0.7],
                          "null": 0.02}, index=pd.MultiIndex.from_product(
        [["BA (GxI)"], ["precision_at_k", "precision_at_k_prior", "precision_at_k_class_prior"]],
        names=["source", "score"]))
    sweep = pd.DataFrame(dict(source=["oracle LM", "the LM (BA GxI)"], noise=[1.0, 1.0], target="mse_measured",
                              estimate=[0.4, 0.1], precision_at_k=[np.nan, 0.05], precision_ci_low=[np.nan, 0.01],
                              precision_ci_high=[np.nan, 0.1], precision_prior=[np.nan, 0.035]))
    by_noise = R.describe(rec, sweep=sweep)
    assert "**Noise**, oracle LM, mse measured: word identity 0.40 at noise 1." in by_noise
    assert ("the LM (BA GxI), mse measured: word identity 0.10 at noise 1; precision@k on the sparse plant "
            "0.05 [0.01, 0.10] at noise 1 (position prior 0.04).") in by_noise
    text = R.describe(pd.concat([rec, plant]))
    assert "not above the position prior's 0.03 [0.01, 0.07]; chance 0.02; the word-class prior 0.60 [0.50, 0.70], " \
           "higher" in text
    plant.loc[("BA (GxI)", "precision_at_k_prior"), ["estimate", "ci_low", "ci_high"]] = [0.2, 0.1, 0.3]
    assert "0.03 [0.01, 0.06], below the position prior's 0.20 [0.10, 0.30]" in R.describe(pd.concat([rec, plant]))


def test_describe_reads_the_plant_down_the_ladder_and_its_positive_control():
    rungs = ["ii. oracle, prediction", "vii. the pipeline"]
    idx = pd.MultiIndex.from_product([rungs, ["word_identity", "precision_at_k", "precision_at_k_prior"]],
                                     names=["rung", "score"])
    ladder = pd.DataFrame({"estimate": [0.9, 0.96, 0.2, 0.1, 0.07, 0.2], "ci_low": [0.8, 0.9, 0.1, 0.05, 0.02, 0.1],
                           "ci_high": [0.95, 1.0, 0.3, 0.15, 0.12, 0.3]}, index=idx)
    rec = pd.DataFrame({"estimate": [0.3, 0.99, 0.07], "ci_low": [0.28, 0.98, 0.05], "ci_high": [0.32, 0.99, 0.12],
                        "null": 0.0, "null_high": 0.04, "coverage": 1.0},
                       index=pd.MultiIndex.from_product([["BA (GxI)"], ["per_tr", "position_prior", "word_identity"]],
                                                        names=["source", "score"]))
    text = R.describe(rec, ladder=ladder)
    assert ("**Precision@k on the sparse plant, down the ladder** (position prior 0.20): *ii. oracle, prediction* "
            "0.96 [0.90, 1.00]; *vii. the pipeline* 0.07 [0.02, 0.12]. The first is the score's positive control: "
            "at 0.96 it finds the plant's words") in text
    ladder.loc[("ii. oracle, prediction", "precision_at_k"), "estimate"] = 0.4
    assert "at 0.40, short of 0.95, the plant's words are not knowable" in R.describe(rec, ladder=ladder)
