"""Comparing BA and NWP attributions: important-word sets, overlap, spread, categories, positions.

Every function here reads attribution tables (:data:`brainattr.attribution.COLUMNS`: one row per
TR and window word) and never runs a model, so each is tested on small hand-made tables.

- **Important-word set at threshold t** (paper, Sec. 4): within one TR, the smallest set of words
  whose cumulative share of the (normalised) attribution reaches ``t``: the words are taken in
  decreasing order of weight until their weights sum to at least ``t`` (:func:`important_words`).
- **IoU** (Fig. 2) of the BA and NWP sets of the same TR, against the IoU that random sets of the
  same sizes would have (:func:`overlap`; the chance level is exact, from the hypergeometric law).
- **Spread** (Fig. 3): how many words each threshold needs, and the area under that curve
  (:func:`spread`, :func:`spread_auc`); BA and NWP are compared with tests at independent units
  (:func:`brainattr.stats.compare_auc_blocks`), not across overlapping TR windows.
- **Linguistic categories** (Fig. 4): the share of semantic, syntactic and discourse words that
  BA only, NWP only, or both mark as important (:func:`word_categories`, :func:`category_shares`).
- **Positions** (Fig. 5): where the important words sit, counted back from the most recent word
  (:func:`positional_profile`), and the attribution-weighted centre of mass (:func:`center_of_mass`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats

#: The paper's thresholds t (cumulative share of attribution), as fractions.
THRESHOLDS = (0.01, 0.02, 0.03, 0.05, 0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 0.95, 0.98)

#: Fig. 4's linguistic categories.
CATEGORIES = ("semantic", "syntactic", "discourse")

#: Closed-class universal POS tags counted as syntactic (function) words on the built-in stimulus.
SYNTACTIC_POS = ("ADP", "AUX", "CCONJ", "DET", "PART", "PRON", "SCONJ")

#: Discourse markers and connectives counted as discourse words on the built-in stimulus (lemmas).
DISCOURSE_MARKERS = ("but", "however", "yet", "though", "although", "indeed", "therefore", "then", "so",
                     "because", "while", "whereas", "besides", "moreover", "still", "oh", "well", "nay",
                     "perhaps", "certainly", "surely", "really", "now")

#: Personal pronouns: they track who is talking or talked about, counted as discourse words.
PERSONAL_PRONOUNS = ("i", "you", "he", "she", "we", "they", "me", "him", "her", "us", "them", "my", "your",
                     "his", "our", "their", "myself", "yourself", "himself", "herself", "ourselves",
                     "themselves")


def _weights(table, how):
    """Normalised word weights, one row per (tr, word), with the columns the metrics use."""
    df = word_weights(table, how)
    return df[["tr", "word_index", "position", "word", "weight"]]


def words_needed(weights, thresholds=THRESHOLDS):
    """How many words the smallest important set of each threshold holds, for one instance.

    Parameters
    ----------
    weights : array of shape (n_words,)
        Non-negative word weights (any scale; they are divided by their sum).
    thresholds : sequence of float, length n_thresholds
        Cumulative shares in (0, 1].

    Returns
    -------
    counts : array of int, shape (n_thresholds,)
        ``counts[k]`` largest weights sum to at least ``thresholds[k]`` of the total, and no
        fewer do. All words when the weights are all zero.
    """
    w = np.sort(np.asarray(weights, dtype=float))[::-1]
    if np.any(w < 0):
        raise ValueError("weights must be non-negative; normalise with how='abs' or 'positive'.")
    total = w.sum()
    if total <= 0:
        return np.full(len(thresholds), w.size, dtype=int)
    share = np.cumsum(w) / total
    # a tolerance so that t = 0.3 is reached by shares 0.1 + 0.2 that sum to 0.30000000000000004 - eps
    k = np.searchsorted(share, np.asarray(thresholds, dtype=float) - 1e-12, side="left") + 1
    return np.minimum(k, w.size)


def important_words(table, thresholds=THRESHOLDS, how="abs"):
    """Each TR's important-word set at each threshold, as a long table.

    Ties in weight are broken by recency (the more recent word first), then by word index.

    Parameters
    ----------
    table : pandas.DataFrame or datasets.Dataset
        An attribution table (one row per TR and window word).
    thresholds : sequence of float
    how : {"abs", "positive"}
        How attributions become non-negative weights (:func:`brainattr.attribution.word_weights`).

    Returns
    -------
    pandas.DataFrame
        One row per (threshold, tr, important word): ``threshold``, ``tr``, ``word_index``,
        ``position``, ``word``, ``weight``, ``rank`` (0 = largest weight).
    """
    df = _weights(table, how).sort_values(["tr", "weight", "position", "word_index"],
                                          ascending=[True, False, True, True], kind="stable")
    df["rank"] = df.groupby("tr").cumcount()
    sizes = spread(df, thresholds, how=None)
    merged = df.merge(sizes[["tr", "threshold", "n_important"]], on="tr")
    out = merged[merged["rank"] < merged["n_important"]]
    cols = ["threshold", "tr", "word_index", "position", "word", "weight", "rank"]
    return out[cols].sort_values(["threshold", "tr", "rank"]).reset_index(drop=True)


def spread(table, thresholds=THRESHOLDS, how="abs"):
    """How many words each TR needs to reach each threshold (Fig. 3).

    Parameters
    ----------
    table : pandas.DataFrame or datasets.Dataset
        An attribution table, or (``how=None``) a frame that already has ``tr`` and ``weight``.
    thresholds : sequence of float
    how : {"abs", "positive"} or None

    Returns
    -------
    pandas.DataFrame
        One row per (tr, threshold): ``tr``, ``threshold``, ``n_important``, ``n_words`` (window
        length) and ``fraction`` (``n_important / n_words``).
    """
    df = table if how is None else _weights(table, how)
    rows = []
    for tr, g in df.groupby("tr", sort=True):
        counts = words_needed(g["weight"].to_numpy(), thresholds)
        rows.append(pd.DataFrame({"tr": tr, "threshold": np.asarray(thresholds, dtype=float),
                                  "n_important": counts, "n_words": len(g)}))
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["tr", "threshold", "n_important", "n_words"])
    out["fraction"] = out["n_important"] / out["n_words"]
    return out


def spread_auc(sizes, normalize=False):
    """Area under the words-needed curve of each TR (trapezoid over the thresholds).

    Parameters
    ----------
    sizes : pandas.DataFrame
        Output of :func:`spread` (extra grouping columns such as ``task`` or ``layer`` are kept).
    normalize : bool
        Integrate the fraction of the window instead of the word count.

    Returns
    -------
    pandas.DataFrame
        One row per TR (and per value of the extra columns) with an ``auc`` column, in words x
        threshold units (fraction x threshold when normalised).
    """
    value = "fraction" if normalize else "n_important"
    keys = [c for c in sizes.columns if c not in ("threshold", "n_important", "n_words", "fraction")]

    def area(g):
        g = g.sort_values("threshold")
        return np.trapezoid(g[value].to_numpy(dtype=float), g["threshold"].to_numpy(dtype=float))

    return sizes.groupby(keys, sort=True).apply(area, include_groups=False).rename("auc").reset_index()



def expected_random_iou(n, k1, k2):
    """Expected IoU of two independent uniformly random sets of sizes ``k1`` and ``k2`` out of ``n``.

    The intersection size of such sets is hypergeometric, so the expectation is exact.

    Parameters
    ----------
    n, k1, k2 : int

    Returns
    -------
    float
    """
    n, k1, k2 = int(n), int(k1), int(k2)
    if not 0 <= k1 <= n or not 0 <= k2 <= n:
        raise ValueError(f"set sizes {k1}, {k2} must lie between 0 and the number of words {n}.")
    if k1 + k2 == 0:
        return np.nan
    i = np.arange(max(0, k1 + k2 - n), min(k1, k2) + 1)
    pmf = scipy.stats.hypergeom(n, k1, k2).pmf(i)
    return float(np.sum(pmf * i / (k1 + k2 - i)))


def overlap(ba, nwp, thresholds=THRESHOLDS, how="abs"):
    """IoU of BA's and NWP's important-word sets per TR and threshold, with its chance level (Fig. 2).

    Parameters
    ----------
    ba, nwp : pandas.DataFrame or datasets.Dataset
        Attribution tables of the two tasks; only TRs present in both are compared, and their
        windows must hold the same words.
    thresholds : sequence of float
    how : {"abs", "positive"}

    Returns
    -------
    pandas.DataFrame
        One row per (tr, threshold): ``iou``, ``random_iou`` (expected IoU of random sets of the
        same sizes), ``n_ba``, ``n_nwp``, ``n_words``.
    """
    sets = {name: important_words(t, thresholds, how) for name, t in (("ba", ba), ("nwp", nwp))}
    sizes = {name: spread(t, thresholds, how) for name, t in (("ba", ba), ("nwp", nwp))}
    common = np.intersect1d(sizes["ba"]["tr"].unique(), sizes["nwp"]["tr"].unique())
    merged = sizes["ba"].merge(sizes["nwp"], on=["tr", "threshold"], suffixes=("_ba", "_nwp"))
    merged = merged[merged["tr"].isin(common)]
    if (merged["n_words_ba"] != merged["n_words_nwp"]).any():
        raise ValueError("the BA and NWP tables hold different windows for the same TR; attribute both with "
                         "the same context length and stimulus.")
    key = ["threshold", "tr", "word_index"]
    both = sets["ba"][key].merge(sets["nwp"][key], on=key).groupby(["tr", "threshold"]).size()
    merged["n_both"] = [both.get((tr, th), 0) for tr, th in zip(merged["tr"], merged["threshold"])]
    union = merged["n_important_ba"] + merged["n_important_nwp"] - merged["n_both"]
    merged["iou"] = merged["n_both"] / union
    merged["random_iou"] = [expected_random_iou(n, a, b) for n, a, b in
                            zip(merged["n_words_ba"], merged["n_important_ba"], merged["n_important_nwp"])]
    out = merged.rename(columns={"n_important_ba": "n_ba", "n_important_nwp": "n_nwp", "n_words_ba": "n_words"})
    return out[["tr", "threshold", "iou", "random_iou", "n_ba", "n_nwp", "n_both", "n_words"]].reset_index(drop=True)


def word_categories(annotations):
    """Semantic, syntactic and discourse flags of each stimulus word (Fig. 4).

    When the annotations already carry ``is_semantic``, ``is_syntactic`` and ``is_discourse``
    (a real dataset's shipped feature annotations) they are used as they are. Otherwise they are
    derived from the spaCy columns of the built-in stimulus:

    - **semantic**: content words (``is_content``: noun, verb, adjective, adverb, proper noun);
    - **syntactic**: closed-class function words (universal POS in :data:`SYNTACTIC_POS`);
    - **discourse**: words that track the story's people and its flow: named characters
      (``is_character``), personal pronouns (:data:`PERSONAL_PRONOUNS`), discourse markers and
      connectives (:data:`DISCOURSE_MARKERS`), and sentence-final words (``sentence_end``).

    A word can be in several categories (a character name is semantic and discourse) or none.

    Parameters
    ----------
    annotations : pandas.DataFrame with n_words rows

    Returns
    -------
    pandas.DataFrame of bool, shape (n_words, 3), columns :data:`CATEGORIES`
    """
    shipped = [f"is_{c}" for c in CATEGORIES]
    if annotations is None:
        raise ValueError("the stimulus has no word annotations; load it with annotate=True (spaCy) or "
                         "use a dataset that ships them.")
    if all(c in annotations for c in shipped):
        return pd.DataFrame({c: annotations[f"is_{c}"].astype(bool).to_numpy() for c in CATEGORIES})
    missing = [c for c in ("pos", "lemma", "is_content", "is_character", "sentence_end") if c not in annotations]
    if missing:
        raise ValueError(f"annotations lack {missing}: either ship is_semantic/is_syntactic/is_discourse "
                         "columns or the spaCy columns of brainattr.data.annotate_words.")
    lemma = annotations["lemma"].astype(str).str.lower()
    semantic = annotations["is_content"].astype(bool)
    syntactic = annotations["pos"].isin(SYNTACTIC_POS)
    discourse = (annotations["is_character"].astype(bool) | lemma.isin(PERSONAL_PRONOUNS)
                 | lemma.isin(DISCOURSE_MARKERS) | annotations["sentence_end"].astype(bool))
    return pd.DataFrame({"semantic": semantic.to_numpy(), "syntactic": syntactic.to_numpy(),
                         "discourse": discourse.to_numpy()})


def category_shares(ba, nwp, categories, thresholds=(0.10, 0.60, 0.80), how="abs"):
    """Share of each category's words that BA only, NWP only, or both mark as important (Fig. 4).

    Words are counted once per TR window they appear in (pooled over TRs).

    Parameters
    ----------
    ba, nwp : pandas.DataFrame or datasets.Dataset
        Attribution tables of the two tasks (same TRs and windows).
    categories : pandas.DataFrame of bool, shape (n_stimulus_words, n_categories)
        Output of :func:`word_categories`, indexed by stimulus word index.
    thresholds : sequence of float
    how : {"abs", "positive"}

    Returns
    -------
    pandas.DataFrame
        One row per (threshold, category, marked_by) with ``marked_by`` in ``"BA only"``,
        ``"NWP only"``, ``"both"``: ``share`` (of the category's window words), ``count`` and
        ``n_category_words``.
    """
    base = _weights(ba, how)[["tr", "word_index"]]
    base = base[base["tr"].isin(_weights(nwp, how)["tr"].unique())]
    sets = {name: important_words(t, thresholds, how)[["threshold", "tr", "word_index"]].assign(**{name: True})
            for name, t in (("ba", ba), ("nwp", nwp))}
    rows = []
    for th in thresholds:
        df = base.copy()
        for name in ("ba", "nwp"):
            s = sets[name][np.isclose(sets[name]["threshold"], th)].drop(columns="threshold")
            df = df.merge(s, on=["tr", "word_index"], how="left")
            df[name] = df[name].fillna(False).astype(bool)
        marked = np.select([df["ba"] & ~df["nwp"], ~df["ba"] & df["nwp"], df["ba"] & df["nwp"]],
                           ["BA only", "NWP only", "both"], default="neither")
        for cat in categories.columns:
            in_cat = categories[cat].to_numpy()[df["word_index"].to_numpy()]
            n_cat = int(in_cat.sum())
            for label in ("BA only", "NWP only", "both"):
                count = int((in_cat & (marked == label)).sum())
                rows.append(dict(threshold=th, category=cat, marked_by=label, count=count,
                                 n_category_words=n_cat, share=count / n_cat if n_cat else np.nan))
    return pd.DataFrame(rows)


def positional_profile(table, threshold=0.10, how="abs"):
    """Share of important words at each distance from the most recent word (Fig. 5).

    Parameters
    ----------
    table : pandas.DataFrame or datasets.Dataset
    threshold : float
        The important-word threshold t.
    how : {"abs", "positive"}

    Returns
    -------
    pandas.DataFrame
        One row per position present in the windows (0 = most recent): ``share`` (fraction of all
        important words, pooled over TRs, that sit at this position; sums to 1), ``rate``
        (fraction of TRs whose word at this position is important) and ``n_trs``.
    """
    words = _weights(table, how)
    imp = important_words(table, [threshold], how)
    n_at = words.groupby("position").size()
    counts = imp.groupby("position").size().reindex(n_at.index, fill_value=0)
    out = pd.DataFrame({"share": counts / max(counts.sum(), 1), "rate": counts / n_at, "n_trs": n_at})
    out.index.name = "position"
    return out.reset_index()


def center_of_mass(table, threshold=None, how="abs"):
    """Attribution-weighted mean position of each TR (0 = most recent word).

    Parameters
    ----------
    table : pandas.DataFrame or datasets.Dataset
    threshold : float or None
        None: over all window words; a threshold t: over the important words at t only (the
        paper's Appendix F.1 reports t = 10 %).
    how : {"abs", "positive"}

    Returns
    -------
    pandas.Series indexed by TR, name ``center_of_mass``.
    """
    df = _weights(table, how) if threshold is None else important_words(table, [threshold], how)
    num = (df["weight"] * df["position"]).groupby(df["tr"]).sum()
    den = df.groupby("tr")["weight"].sum()
    return (num / den.where(den > 0)).rename("center_of_mass")


def planted_table(table, truth):
    """The planted word importance of simulated subjects, laid out as an attribution table.

    Parameters
    ----------
    table : pandas.DataFrame or datasets.Dataset
        An attribution table; its TRs and windows are kept.
    truth : pandas.DataFrame
        :func:`brainattr.data.true_contributions_table` output (``tr``, ``word_index``,
        ``contribution``); window words it lacks contribute 0.

    Returns
    -------
    pandas.DataFrame
        ``table``'s rows with ``attribution`` set to the planted contribution and
        ``abs_attribution`` to its magnitude, so every function here treats the truth like a task.
    """
    df = table.to_pandas() if hasattr(table, "to_pandas") else table.copy()
    df = df.drop(columns=[c for c in ("attribution", "abs_attribution") if c in df])
    merged = df.merge(truth[["tr", "word_index", "contribution"]], on=["tr", "word_index"], how="left")
    merged["attribution"] = merged.pop("contribution").fillna(0.0).to_numpy()
    merged["abs_attribution"] = merged["attribution"].abs()
    return merged


__all__ = ["planted_table", "THRESHOLDS", "CATEGORIES", "words_needed", "important_words", "spread", "spread_auc",
           "expected_random_iou", "overlap", "word_categories", "category_shares", "positional_profile",
           "center_of_mass"]


def word_weights(table, how="abs"):
    """Per-instance normalised word scores.

    Parameters
    ----------
    table : pandas.DataFrame or datasets.Dataset
        An attribution table (:data:`COLUMNS`).
    how : {"abs", "signed", "positive", "none"}
        ``abs`` (default): magnitudes divided by their sum per TR (sum to 1); ``signed``: signed
        scores divided by the sum of magnitudes per TR; ``positive``: positive part, summing to 1;
        ``none``: the signed scores as stored.

    Returns
    -------
    pandas.DataFrame
        The table with a ``weight`` column added.
    """
    df = table.to_pandas() if hasattr(table, "to_pandas") else table.copy()
    if how == "none":
        df["weight"] = df["attribution"]
        return df
    if how in ("abs", "signed"):
        num = df["abs_attribution"] if how == "abs" else df["attribution"]
        den = df.groupby("tr")["abs_attribution"].transform("sum")
    elif how == "positive":
        num = df["attribution"].clip(lower=0)
        den = num.groupby(df["tr"]).transform("sum")
    else:
        raise ValueError(f"unknown normalisation {how!r}; use 'abs', 'signed', 'positive' or 'none'.")
    df["weight"] = num / den.where(den > 0, 1.0)
    return df


def mean_weight_by_position(table, how="abs", max_position=None):
    """Mean normalised attribution at each position (0 = most recent word), over TRs.

    Returns
    -------
    pandas.Series indexed by position
    """
    df = word_weights(table, how)
    if max_position is not None:
        df = df[df["position"] <= max_position]
    return df.groupby("position")["weight"].mean()
