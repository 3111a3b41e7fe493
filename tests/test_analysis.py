"""brainattr.analysis on small hand-made attribution tables with known answers."""
import numpy as np
import pandas as pd
import pytest

from brainattr import analysis as An


def table(scores_by_tr, start=0):
    """An attribution table: each TR's window is words start..start+n-1, the last one most recent."""
    rows = []
    for tr, scores in scores_by_tr.items():
        n = len(scores)
        for k, s in enumerate(scores):
            rows.append(dict(tr=tr, fold=0, word_index=start + k, position=n - 1 - k, word=f"w{start + k}",
                             attribution=float(s), abs_attribution=abs(float(s)), target=1.0,
                             baseline_target=np.nan))
    return pd.DataFrame(rows)


def test_words_needed_counts_the_smallest_set():
    w = [0.5, 0.1, 0.3, 0.1]  # sorted: 0.5, 0.3, 0.1, 0.1 -> cumulative 0.5, 0.8, 0.9, 1.0
    assert An.words_needed(w, [0.01, 0.5, 0.51, 0.8, 0.85, 0.9, 1.0]).tolist() == [1, 1, 2, 2, 3, 3, 4]
    # scale does not matter; all-zero weights need every word
    assert An.words_needed(np.array(w) * 7, [0.8]).tolist() == [2]
    assert An.words_needed([0, 0, 0], [0.1]).tolist() == [3]
    with pytest.raises(ValueError, match="non-negative"):
        An.words_needed([0.5, -0.1], [0.1])


def test_important_words_uses_magnitudes_and_breaks_ties_by_recency():
    t = table({7: [-0.6, 0.1, 0.1, 0.2]})  # |-0.6| is the largest
    imp = An.important_words(t, [0.5, 0.7, 0.9])
    assert imp.query("threshold == 0.5").word_index.tolist() == [0]
    assert imp.query("threshold == 0.7").word_index.tolist() == [0, 3]
    # 0.6 + 0.2 + 0.1 = 0.9: the tie between words 1 and 2 goes to the more recent word 2
    assert imp.query("threshold == 0.9").word_index.tolist() == [0, 3, 2]


def test_spread_and_auc():
    t = table({1: [1, 1, 1, 1], 2: [4, 0, 0, 0]})
    sizes = An.spread(t, [0.25, 0.5, 1.0])
    assert sizes.query("tr == 1").n_important.tolist() == [1, 2, 4]
    assert sizes.query("tr == 2").n_important.tolist() == [1, 1, 1]
    auc = An.spread_auc(sizes).set_index("tr")["auc"]
    assert auc[1] == pytest.approx(0.25 * (1 + 2) / 2 + 0.5 * (2 + 4) / 2)
    assert auc[2] == pytest.approx(0.75)
    frac = An.spread_auc(sizes, normalize=True).set_index("tr")["auc"]
    assert frac[1] == pytest.approx(auc[1] / 4)



def test_expected_random_iou_matches_simulation():
    rng = np.random.default_rng(1)
    n, k1, k2 = 12, 3, 5
    draws = []
    for _ in range(20000):
        a = set(rng.choice(n, k1, replace=False))
        b = set(rng.choice(n, k2, replace=False))
        draws.append(len(a & b) / len(a | b))
    assert An.expected_random_iou(n, k1, k2) == pytest.approx(np.mean(draws), abs=0.005)
    assert An.expected_random_iou(10, 10, 10) == pytest.approx(1.0)
    assert An.expected_random_iou(10, 1, 1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="between 0"):
        An.expected_random_iou(5, 6, 1)


def test_overlap_of_known_sets():
    ba = table({3: [0.7, 0.1, 0.1, 0.1], 4: [0.1, 0.1, 0.1, 0.7]})
    nwp = table({3: [0.1, 0.1, 0.1, 0.7], 4: [0.1, 0.1, 0.1, 0.7], 5: [1, 0, 0, 0]})
    out = An.overlap(ba, nwp, [0.5, 0.8]).set_index(["tr", "threshold"])
    assert sorted(out.index.get_level_values("tr").unique()) == [3, 4]  # TR 5 has no BA table
    assert out.loc[(3, 0.5), "iou"] == 0.0          # {0} vs {3}
    assert out.loc[(4, 0.5), "iou"] == 1.0          # {3} vs {3}
    # TR 3 at 0.8: BA {0, 3} (tie broken by recency), NWP {3, 2}: IoU 1/3
    assert out.loc[(3, 0.8), "iou"] == pytest.approx(1 / 3)
    assert out.loc[(3, 0.5), "random_iou"] == pytest.approx(An.expected_random_iou(4, 1, 1))
    with pytest.raises(ValueError, match="different windows"):
        An.overlap(ba, table({3: [1, 2, 3]}))


def test_word_categories_from_spacy_columns_and_shipped_flags():
    ann = pd.DataFrame({"word": ["Elizabeth", "said", "the", "but", "she", "house."],
                        "lemma": ["elizabeth", "say", "the", "but", "she", "house"],
                        "pos": ["PROPN", "VERB", "DET", "CCONJ", "PRON", "NOUN"],
                        "is_content": [True, True, False, False, False, True],
                        "is_character": [True, False, False, False, False, False],
                        "sentence_end": [False, False, False, False, False, True]})
    cats = An.word_categories(ann)
    assert cats["semantic"].tolist() == [True, True, False, False, False, True]
    assert cats["syntactic"].tolist() == [False, False, True, True, True, False]
    assert cats["discourse"].tolist() == [True, False, False, True, True, True]
    shipped = pd.DataFrame({"is_semantic": [1, 0], "is_syntactic": [0, 1], "is_discourse": [0, 0]})
    assert An.word_categories(shipped).to_numpy().tolist() == [[True, False, False], [False, True, False]]
    with pytest.raises(ValueError, match="lack"):
        An.word_categories(pd.DataFrame({"pos": ["NOUN"]}))


def test_category_shares_counts_each_group():
    # one TR, words 0..3; BA marks {0}, NWP marks {0, 3} at t = 0.6
    ba = table({9: [0.9, 0.05, 0.03, 0.02]})
    nwp = table({9: [0.35, 0.05, 0.05, 0.55]})
    cats = pd.DataFrame({"semantic": [True, True, False, False], "syntactic": [False, False, True, True],
                         "discourse": [False, False, False, False]})
    out = An.category_shares(ba, nwp, cats, thresholds=[0.6]).set_index(["category", "marked_by"])
    assert out.loc[("semantic", "both"), "share"] == 0.5          # word 0 of words {0, 1}
    assert out.loc[("semantic", "BA only"), "share"] == 0.0
    assert out.loc[("syntactic", "NWP only"), "share"] == 0.5     # word 3 of words {2, 3}
    assert np.isnan(out.loc[("discourse", "both"), "share"])      # no discourse word
    assert out.loc[("syntactic", "NWP only"), "count"] == 1


def test_positional_profile_and_center_of_mass():
    # most recent word (position 0) dominates TR 1; the oldest (position 3) dominates TR 2
    t = table({1: [0, 0, 0, 1], 2: [1, 0, 0, 0]})
    prof = An.positional_profile(t, threshold=0.5).set_index("position")
    assert prof.loc[0, "share"] == 0.5 and prof.loc[3, "share"] == 0.5 and prof["share"].sum() == 1
    assert prof.loc[0, "rate"] == 0.5 and prof.loc[1, "rate"] == 0.0
    com = An.center_of_mass(t)
    assert com[1] == 0 and com[2] == 3
    even = An.center_of_mass(table({1: [1, 1, 1, 1]}))
    assert even[1] == pytest.approx(1.5)
    # over the important words only: the top word of an even window is the most recent one
    assert An.center_of_mass(table({1: [1, 1, 1, 1]}), threshold=0.25)[1] == 0


def test_planted_table_aligns_truth_to_windows():
    t = table({5: [0.1, 0.2, 0.3]})
    truth = pd.DataFrame({"tr": [5, 5, 6], "word_index": [0, 2, 0], "contribution": [-2.0, 1.0, 9.0]})
    out = An.planted_table(t, truth)
    assert out["attribution"].tolist() == [-2.0, 0.0, 1.0]
    assert out["abs_attribution"].tolist() == [2.0, 0.0, 1.0]
    assert out["position"].tolist() == t["position"].tolist()
    assert An.important_words(out, [0.5]).word_index.tolist() == [0]
