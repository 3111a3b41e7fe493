"""Per-TR estimates with the right unit (blocks of text), the figures' quantities, GxI against IG."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import stats
from ..analysis import center_of_mass, important_words, overlap, word_weights
from ..attribution import attribute, evenly_spaced, held_out_trs


# --------------------------------------------------------------------------------------------
# Estimates with the right unit: blocks of text
# --------------------------------------------------------------------------------------------
#: Columns of :func:`block_means`.
BLOCK_COLUMNS = ["quantity", "estimate", "ci_low", "ci_high", "p", "n_blocks", "n_trs"]



def block_means(per_tr, values=(), span=1, by=(), ratios=None, n_resamples=10000, seed=0):
    """Means of per-TR quantities with 95 % CIs whose unit is a block of text, not a TR or a subject.

    For each group of ``by``, the rows of each TR are averaged first (over subjects, layer groups,
    thresholds: whatever else the rows differ by), because every subject read the same text and
    NWP is the same for all of them. The TRs are then put in blocks whose windows share no word
    (:func:`brainattr.stats.independent_blocks` with ``span``; TRs too close to a kept one are left
    out), and each quantity's mean gets the block bootstrap CI and sign-flip ``p`` of
    :func:`brainattr.stats.paired_difference` (against 0: make a difference column first to test
    a difference). A ratio of two means gets :func:`brainattr.stats.ratio_of_means`.

    Parameters
    ----------
    per_tr : pandas.DataFrame
        One row per (..., ``tr``) with numeric columns.
    values : sequence of str
        Columns whose mean is estimated.
    span : int or pandas.DataFrame
        Window span in TRs, or an attribution table to measure it from
        (:func:`brainattr.stats.window_span`).
    by : sequence of str
        One estimate per group of these columns.
    ratios : dict of str -> (str, str), optional
        Name -> (numerator column, denominator column): the ratio of their means.
    n_resamples, seed
        See :func:`brainattr.stats.paired_difference`.

    Returns
    -------
    pandas.DataFrame
        One row per (group, quantity): the ``by`` columns and :data:`BLOCK_COLUMNS`
        (``quantity``: the column or ratio name; ``estimate``; ``ci_low``, ``ci_high``; ``p``
        against 0, or against a ratio of 1; ``n_blocks``, the independent units; ``n_trs``, the
        TRs in them).
    """
    by, values, ratios = list(by), list(values), dict(ratios or {})
    if isinstance(span, pd.DataFrame) or hasattr(span, "to_pandas"):
        span = stats.window_span(span)
    needed = list(dict.fromkeys(values + [c for pair in ratios.values() for c in pair]))
    rows = []
    for key, g in per_tr.groupby(by, sort=True) if by else [((), per_tr)]:
        key = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        t = g.groupby("tr")[needed].mean()
        blocks = stats.independent_blocks(t.index.to_numpy(), span)
        for v in values:
            res = stats.paired_difference(t[v].to_numpy(), np.zeros(len(t)), blocks, n_resamples=n_resamples,
                                          seed=seed)
            rows.append({**key, "quantity": v, "estimate": res["mean_difference"], "ci_low": res["ci_low"],
                         "ci_high": res["ci_high"], "p": res["p"], "n_blocks": res["n_blocks"],
                         "n_trs": res["n_units"]})
        for name, (num, den) in ratios.items():
            res = stats.ratio_of_means(t[num].to_numpy(), t[den].to_numpy(), blocks, n_resamples=n_resamples,
                                       seed=seed)
            rows.append({**key, "quantity": name, "estimate": res["ratio"], "ci_low": res["ci_low"],
                         "ci_high": res["ci_high"], "p": res["p"], "n_blocks": res["n_blocks"],
                         "n_trs": res["n_units"]})
    return pd.DataFrame(rows, columns=by + BLOCK_COLUMNS)


def iou_against_nulls(tables, thresholds, by=("subject", "layer_group"), nwp_task="nwp", span=None, n_resamples=10000,
                      seed=0):
    """Fig. 2: IoU of the BA and NWP important words, with both chance levels and CIs over text blocks.

    Per group of ``by`` (one subject and layer), :func:`brainattr.stats.position_preserving_iou`
    gives each TR's IoU, the uniform chance level (random sets of the same sizes) and the
    position-preserving one (BA's set of TR i against NWP's set of a TR j whose window shares no
    word, compared by position). Then, per threshold, :func:`block_means` over the TRs (averaged
    over the groups first): the IoU, both nulls, the IoU minus the position-preserving null, and
    the ratio of the IoU to each null.

    Parameters
    ----------
    tables : pandas.DataFrame
        Long GxI table (``ChapterTables.gxi``, possibly with :func:`logit_lens_tables` rows).
    thresholds : sequence of float
    by : sequence of str
    nwp_task : str
        ``"nwp"`` (the final readout) or :data:`LENS_TASK`.
    span : int or None
        Window span in TRs (default: :func:`brainattr.stats.window_span` of ``tables``).
    n_resamples, seed
        See :func:`block_means`.

    Returns
    -------
    per_tr : pandas.DataFrame
        One row per (group, threshold, TR): the ``by`` columns, ``threshold``, ``tr``, ``iou``,
        ``random_iou`` (uniform null), ``position_null_iou``, ``difference`` (``iou -
        position_null_iou``); TRs without a null partner are dropped.
    summary : pandas.DataFrame
        One row per threshold: ``threshold``, ``iou`` with ``iou_ci_low``, ``iou_ci_high``;
        ``random_iou``, ``position_null_iou``; ``difference`` with ``ci_low``, ``ci_high``,
        ``p``; ``ratio`` (IoU / position-preserving null) with ``ratio_ci_low``,
        ``ratio_ci_high``; ``uniform_ratio`` (IoU / uniform null); ``n_blocks``, ``n_trs``.
    """
    by = list(by)
    span = stats.window_span(tables) if span is None else int(span)
    per_tr = []
    for key, g in tables.groupby(by, sort=True):
        _, p = stats.position_preserving_iou(g[g["task"] == "ba"], g[g["task"] == nwp_task], thresholds, span=span,
                                             n_resamples=200, seed=seed, return_per_tr=True)
        per_tr.append(p.assign(**dict(zip(by, key if isinstance(key, tuple) else (key,)))))
    per_tr = pd.concat(per_tr, ignore_index=True).rename(columns={"observed_iou": "iou", "uniform_null_iou": "random_iou"})
    per_tr = per_tr.dropna(subset=["position_null_iou"])
    per_tr["difference"] = per_tr["iou"] - per_tr["position_null_iou"]
    per_tr = per_tr[by + ["threshold", "tr", "iou", "random_iou", "position_null_iou", "difference"]]
    est = block_means(per_tr, ["iou", "random_iou", "position_null_iou", "difference"], span, by=["threshold"],
                      ratios={"ratio": ("iou", "position_null_iou"), "uniform_ratio": ("iou", "random_iou")},
                      n_resamples=n_resamples, seed=seed).set_index(["threshold", "quantity"])
    rows = []
    for th in sorted(per_tr["threshold"].unique()):
        e = est.loc[th]
        rows.append(dict(threshold=th, iou=e.loc["iou", "estimate"], iou_ci_low=e.loc["iou", "ci_low"],
                         iou_ci_high=e.loc["iou", "ci_high"], random_iou=e.loc["random_iou", "estimate"],
                         position_null_iou=e.loc["position_null_iou", "estimate"],
                         difference=e.loc["difference", "estimate"], ci_low=e.loc["difference", "ci_low"],
                         ci_high=e.loc["difference", "ci_high"], p=e.loc["difference", "p"],
                         ratio=e.loc["ratio", "estimate"], ratio_ci_low=e.loc["ratio", "ci_low"],
                         ratio_ci_high=e.loc["ratio", "ci_high"], uniform_ratio=e.loc["uniform_ratio", "estimate"],
                         n_blocks=e.loc["iou", "n_blocks"], n_trs=e.loc["iou", "n_trs"]))
    return per_tr, pd.DataFrame(rows)


def category_marks(ba, nwp, categories, thresholds=(0.10, 0.60, 0.80), how="abs"):
    """Fig. 4 per TR: the share of each category's window words that BA, NWP, both or one only mark.

    The per-TR version of :func:`brainattr.analysis.category_shares` (which pools over TRs), so
    that :func:`block_means` can put CIs on it. Shares are in % of the category's words in the
    TR's window; TRs whose window holds no word of a category are left out for it.

    Parameters
    ----------
    ba, nwp : pandas.DataFrame
        Attribution tables of the two tasks (same TRs and windows).
    categories : pandas.DataFrame of bool
        :func:`brainattr.analysis.word_categories`, indexed by stimulus word.
    thresholds : sequence of float
    how : {"abs", "positive"}

    Returns
    -------
    pandas.DataFrame
        One row per (threshold, category, TR): ``threshold``, ``category``, ``tr``, ``n_words``
        (the category's words in the window), ``BA marks``, ``NWP marks``, ``both``, ``BA only``,
        ``NWP only`` (%).
    """
    ba_w = word_weights(ba, how)[["tr", "word_index"]]
    base = ba_w[ba_w["tr"].isin(word_weights(nwp, how)["tr"].unique())]
    sets = {name: important_words(t, thresholds, how)[["threshold", "tr", "word_index"]]
            for name, t in (("ba", ba), ("nwp", nwp))}
    rows = []
    for th in thresholds:
        df = base.copy()
        for name, s in sets.items():
            keys = set(zip(s.loc[np.isclose(s["threshold"], th), "tr"], s.loc[np.isclose(s["threshold"], th),
                                                                               "word_index"]))
            df[name] = [(tr, w) in keys for tr, w in zip(df["tr"], df["word_index"])]
        for cat in categories.columns:
            d = df[categories[cat].to_numpy()[df["word_index"].to_numpy()]]
            g = d.assign(both=d["ba"] & d["nwp"], ba_only=d["ba"] & ~d["nwp"], nwp_only=~d["ba"] & d["nwp"]).groupby("tr")
            part = 100 * g[["ba", "nwp", "both", "ba_only", "nwp_only"]].mean()
            part.columns = ["BA marks", "NWP marks", "both", "BA only", "NWP only"]
            rows.append(part.assign(n_words=g.size()).reset_index().assign(threshold=th, category=cat))
    out = pd.concat(rows, ignore_index=True)
    return out[["threshold", "category", "tr", "n_words", "BA marks", "NWP marks", "both", "BA only", "NWP only"]]


def position_summary(table, threshold=0.10, edge=5, how="abs"):
    """Fig. 5 per TR: recency, primacy and centre of mass of one attribution table.

    Parameters
    ----------
    table : pandas.DataFrame
        One task's attribution table (one subject and layer).
    threshold : float
        The important-word threshold t.
    edge : int
        How many positions count as the most recent and as the oldest words.
    how : {"abs", "positive"}

    Returns
    -------
    pandas.DataFrame
        One row per TR: ``tr``, ``n_words`` (window length), ``recent`` and ``oldest`` (% of the
        TR's important words at positions ``0..edge-1`` and at the window's ``edge`` oldest
        positions), ``oldest_but_first`` (the same for the ``edge`` oldest positions after the
        window's very first word, which a model without a start token reads as its first token,
        an attention sink), ``even`` (% an even spread would put in ``edge`` positions, ``100 *
        edge / n_words``), ``com`` (centre of mass over all window words, in words back) and
        ``com_important`` (over the important words only).
    """
    words = word_weights(table, how)
    n_words = words.groupby("tr").size().rename("n_words")
    imp = important_words(table, [threshold], how).merge(n_words.reset_index(), on="tr")
    first = imp["n_words"] - 1  # position of the window's oldest word
    flags = imp.assign(recent=imp["position"] < edge, oldest=imp["position"] > first - edge,
                       oldest_but_first=(imp["position"] < first) & (imp["position"] >= first - edge))
    shares = 100 * flags.groupby("tr")[["recent", "oldest", "oldest_but_first"]].mean()
    out = pd.concat([n_words, shares], axis=1).reset_index()
    out["even"] = 100 * edge / out["n_words"]
    out["com"] = center_of_mass(table, how=how).reindex(out["tr"]).to_numpy()
    out["com_important"] = center_of_mass(table, threshold=threshold, how=how).reindex(out["tr"]).to_numpy()
    return out


# --------------------------------------------------------------------------------------------
# Appendix E: GxI against IG on a few TRs
# --------------------------------------------------------------------------------------------
@dataclass
class MethodTables:
    """One subject's GxI and IG tables on the same few TRs of one layer (:func:`gxi_and_ig`).

    Attributes
    ----------
    subject : str
    layer : int
    trs : array of int, shape (n_trs,)
    tables : dict of (str, str) -> pandas.DataFrame
        ``(task, method)`` -> the attribution table (:data:`brainattr.attribution.COLUMNS`), for
        tasks ``"ba"``, ``"nwp"`` and methods ``"gxi"``, ``"ig"``.
    """

    subject: str
    layer: int
    trs: np.ndarray
    tables: dict

    def __getitem__(self, key):
        return self.tables[key]


def gxi_and_ig(ch, ig_trs=8, ig_steps=20, ig_baseline="zero", subject=0, layer=None):
    """Re-attribute a few TRs of one subject with GxI and with IG (the paper's Appendix E check).

    The TRs are ``ig_trs`` evenly spaced ones among the chapter's attributed TRs, the ones chapter 3
    attributes with IG, so both methods' tables are usually read from the store. TRs are
    attributed one at a time (``batch_size=1``), as in chapter 3.

    Parameters
    ----------
    ch : ChapterTables
    ig_trs : int
        How many TRs.
    ig_steps : int
        IG's integration steps (paper: 20).
    ig_baseline : {"zero", "pad", "eos"}
    subject : int
        Index of the subject in ``ch.data``.
    layer : int or None
        Default: ``ch.middle``.

    Returns
    -------
    MethodTables
    """
    layer = ch.middle if layer is None else int(layer)
    ds, enc = ch.data[subject], ch.encodings(layer)[subject]
    trs = evenly_spaced(held_out_trs(enc, fold=ch.fold, n=ch.n_trs), ig_trs)
    settings = ch.settings.replace(ig_steps=ig_steps, ig_baseline=ig_baseline, batch_size=1)
    tables = {}
    for method in ("gxi", "ig"):
        out, = attribute(ch.lm, [ds], [enc], layer, settings.replace(methods=(method,)), trs=trs, progress=False)
        tables.update({key: table.to_pandas() for key, table in out.items()})
    return MethodTables(subject=ds.subject, layer=layer, trs=trs, tables=tables)


def method_agreement(tables, threshold=0.1, tasks=("ba", "nwp")):
    """Per TR, how far GxI and IG agree: rank correlation of word weights and overlap of the top words.

    Parameters
    ----------
    tables : MethodTables or dict of (str, str) -> table
        ``(task, method)`` -> attribution table, methods ``"gxi"`` and ``"ig"``.
    threshold : float
        The important-word threshold of the IoU (default 10 %).
    tasks : sequence of str

    Returns
    -------
    pandas.DataFrame
        One row per (task, TR): ``task`` (upper case), ``tr``, ``spearman`` (of the two methods'
        normalised word weights), ``iou_top10`` and ``chance_top10`` (IoU of their important-word
        sets at ``threshold`` and its random baseline, :func:`brainattr.analysis.overlap`).
    """
    from scipy.stats import spearmanr

    rows = []
    for task in tasks:
        gxi, ig = tables[(task, "gxi")], tables[(task, "ig")]
        g = word_weights(gxi).set_index(["tr", "word_index"])["weight"]
        i = word_weights(ig).set_index(["tr", "word_index"])["weight"]
        paired = pd.concat([g.rename("gxi"), i.rename("ig")], axis=1, join="inner").reset_index()
        top = overlap(gxi, ig, [threshold]).set_index("tr")
        for tr, d in paired.groupby("tr"):
            rows.append(dict(task=task.upper(), tr=tr, spearman=spearmanr(d["gxi"], d["ig"]).statistic,
                             iou_top10=top.loc[tr, "iou"], chance_top10=top.loc[tr, "random_iou"]))
    return pd.DataFrame(rows)
