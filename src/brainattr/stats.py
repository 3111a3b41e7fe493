"""Statistics with the right unit, nulls that keep position, and one verdict rule.

The attribution tables (one row per subject, layer, task, method, TR and window word; see
:func:`brainattr.pipeline.attribute_layers`) are not made of independent rows:

- **Neighbouring TRs share words.** Each TR's window spans its ``context`` words plus the words of
  its delay TRs, about 24 TRs on the built-in run, while the attributed TRs are about 6-7 TRs
  apart: neighbouring windows share most of their words, so per-TR values are strongly
  dependent. :func:`window_span` measures how far apart two TRs must be for their windows to share
  no word; :func:`independent_blocks` groups TRs into blocks whose windows do not overlap.
- **The stimulus is shared.** Every subject read the same text, and NWP rows are identical across
  subjects and layers. Subjects are the independent units of a test that generalises to new
  subjects reading this text (:func:`subject_level_test`); blocks of text are the units of a
  test that generalises to new text (:func:`paired_difference` on blocks).

What is here:

- :func:`paired_difference`: differences averaged within blocks, a sign-flip permutation test
  over blocks, block-bootstrap confidence intervals of the mean difference and of an effect size.
- :func:`subject_level_test`: a one-sample t test and an exact sign-flip test over subjects.
- :func:`ratio_of_means`: a ratio of two means (e.g. IoU / chance) with a block-bootstrap CI.
- :func:`bh`: Benjamini-Hochberg over exactly the family passed in.
- :func:`compare_auc_blocks`: Fig. 3's BA - NWP spread-AUC comparison with these tests, the
  dependence-aware replacement of the per-TR paired t test the book used to run.
- :func:`position_preserving_iou`: Fig. 2's IoU against a chance level that keeps each task's
  positional profile (BA set of TR i against the NWP set of a TR j whose window shares no word).
- :func:`verdict`: the one rule that turns an estimate, its CI and the paper's number or
  direction into "reproduced", "same direction", "not reproduced" or "not comparable".
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import scipy.stats

from .analysis import THRESHOLDS, expected_random_iou, important_words, spread

#: The verdicts :func:`verdict` returns.
VERDICTS = ("reproduced", "same direction", "not reproduced", "not comparable")

#: Columns of :func:`paired_difference`'s result (and of the per-test rows of :func:`compare_auc_blocks`).
PAIRED_FIELDS = ("n_units", "n_blocks", "mean_a", "mean_b", "mean_difference", "ci_low", "ci_high", "effect_size",
                 "effect_ci_low", "effect_ci_high", "p", "p_min", "exact")


# --------------------------------------------------------------------------------------------
# Which TRs are independent
# --------------------------------------------------------------------------------------------
def _frame(table):
    return table.to_pandas() if hasattr(table, "to_pandas") else table


def _word_ranges(table):
    """First and last stimulus word index of each TR's window, a frame indexed by sorted TR."""
    df = _frame(table)
    ranges = df.groupby("tr")["word_index"].agg(["min", "max"]).sort_index()
    ranges.index = ranges.index.astype(int)
    return ranges


def window_span(table, word_trs=None):
    """How many TRs apart two target TRs must be for their windows to share no word.

    Parameters
    ----------
    table : pandas.DataFrame or datasets.Dataset
        An attribution table (columns ``tr`` and ``word_index`` are used; rows of several
        subjects, layers or tasks may be mixed, since a TR's window is the same for all of them).
    word_trs : array of int, shape (n_stimulus_words,), optional
        The TR in which each stimulus word was shown (:attr:`brainattr.schema.Stimulus.word_trs`).
        With it the span holds for any TRs of the text: with ``d_j`` the TR distance from target
        TR ``j`` back to its window's oldest word and ``a_i`` the distance back to TR ``i``'s most
        recent word, windows of ``i < j`` are disjoint once ``j - i > d_j - a_i``, so the span is
        ``max_j d_j - min_i a_i + 1``. Without it the span is measured on the table's own TRs:
        one more than the largest distance between two of its TRs whose windows overlap (1 when
        none do), which is exact for those TRs (and only for them).

    Returns
    -------
    int
        ``span >= 1``: windows of TRs at least ``span`` apart share no word.
    """
    ranges = _word_ranges(table)
    trs = ranges.index.to_numpy()
    lo, hi = ranges["min"].to_numpy(), ranges["max"].to_numpy()
    if word_trs is not None:
        word_trs = np.asarray(word_trs)
        back_oldest = trs - word_trs[lo]
        back_newest = trs - word_trs[hi]
        return int(max(1, back_oldest.max() - back_newest.min() + 1))
    later = trs[None, :] > trs[:, None]                       # [i, j]: j is later than i
    overlap = later & (lo[None, :] <= hi[:, None])            # j's oldest word is not after i's newest
    if not overlap.any():
        return 1
    dist = trs[None, :] - trs[:, None]
    return int(dist[overlap].max() + 1)


def independent_blocks(trs, span, block_length=1, buffer=True):
    """A block id for each TR, such that TRs in different blocks have windows that share no word.

    Attributed TRs are usually closer together than the window span (built-in run: about 6-7 TRs
    apart for a span of about 24), so the chain of overlapping windows links every TR: blocks
    with no shared word between them exist only if some TRs are left out. With ``buffer=True``
    (the default) blocks are formed greedily in TR order: a block opens at the first TR not yet
    placed and holds the TRs less than ``block_length`` after it; the next block opens at the first
    TR at least ``span`` after the block's last TR; the TRs in between are left out (id -1). Every
    two TRs of different blocks are then at least ``span`` apart, so their windows share no word.
    ``block_length=1`` (default) keeps one TR per block: the most blocks (the greedy choice is the
    largest set of TRs pairwise ``span`` apart), hence the finest p values, at the cost of leaving
    most TRs out; ``block_length=span`` keeps about half of the TRs in half as many blocks.

    With ``buffer=False`` no TR is left out: blocks are consecutive stretches of ``block_length``
    TRs (use ``block_length >= span``); a block then shares words with its neighbours near their
    common border, so tests over such blocks are only approximately valid (slightly liberal).

    Parameters
    ----------
    trs : array-like of int, shape (n,)
        Target TRs, in any order, repeats allowed (e.g. a long table's ``tr`` column).
    span : int or pandas.DataFrame
        Windows of TRs at least ``span`` apart share no word; an attribution table is turned into
        its span with :func:`window_span`.
    block_length : int
        Extent of a block in TRs (a block holds TRs ``first .. first + block_length - 1``).
    buffer : bool
        Leave TRs out so that blocks are strictly independent (see above).

    Returns
    -------
    numpy.ndarray of int, shape (n,)
        Block id of each element of ``trs`` (0, 1, ... in TR order); -1 for TRs left out.
    """
    if isinstance(span, pd.DataFrame) or hasattr(span, "to_pandas"):
        span = window_span(span)
    span, block_length = int(span), int(block_length)
    if span < 1 or block_length < 1:
        raise ValueError(f"span ({span}) and block_length ({block_length}) must be at least 1 TR.")
    trs = np.asarray(trs, dtype=int)
    unique = np.unique(trs)
    ids = np.full(unique.size, -1, dtype=int)
    if unique.size:
        if buffer:
            block, k = 0, 0
            while k < unique.size:
                first = unique[k]
                inside = (unique >= first) & (unique < first + block_length)
                ids[inside] = block
                last = unique[inside].max()
                k = int(np.searchsorted(unique, last + span, side="left"))
                block += 1
        else:
            stretch = (unique - unique[0]) // block_length
            ids = np.unique(stretch, return_inverse=True)[1].astype(int)
    return ids[np.searchsorted(unique, trs)]


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------
def _sign_flip(values, n_resamples, rng):
    """Two-sided sign-flip p value of the mean of ``values``; exact when 2^n <= n_resamples.

    Returns (p, p_min, exact): ``p_min`` is the smallest p the test can give.
    """
    values = np.asarray(values, dtype=float)
    n = values.size
    if n == 0:
        return np.nan, np.nan, False
    observed = abs(values.mean())
    tol = 1e-12 * max(1.0, observed)
    if 2.0 ** n <= max(n_resamples, 2):
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        stats = np.abs(signs @ values) / n
        return float(np.mean(stats >= observed - tol)), 2.0 / 2 ** n, True
    signs = rng.choice((1.0, -1.0), size=(n_resamples, n))
    stats = np.abs(signs @ values) / n
    return float((1 + np.sum(stats >= observed - tol)) / (1 + n_resamples)), 1.0 / (1 + n_resamples), False


def _expanded_tail(n, confidence):
    """Tail probability of the expanded percentile bootstrap interval for ``n`` resampled units.

    The plain percentile interval is too narrow with few units (its spread uses the SD with
    divisor n and normal rather than t quantiles); Hesterberg (2015, "What teachers should know
    about the bootstrap", The American Statistician 69:371) widens it by taking the percentiles at
    ``Phi(-sqrt(n / (n - 1)) * t_{n-1, (1 + confidence) / 2})`` instead of ``(1 - confidence) / 2``.
    """
    q = scipy.stats.t.ppf((1 + confidence) / 2, n - 1) * np.sqrt(n / (n - 1))
    return float(scipy.stats.norm.cdf(-q))


def paired_difference(a, b, blocks, n_resamples=10000, seed=0, confidence=0.95):
    """Mean paired difference ``a - b`` with blocks, not units, as the independent replicates.

    The per-unit differences are averaged within each block; the block means are the data of
    the tests:

    - **p**: two-sided sign-flip permutation test of the mean of the block means (under the null
      each block's difference is symmetric about 0). Exact (all ``2^n_blocks`` sign patterns)
      when ``2^n_blocks <= n_resamples``, else Monte Carlo with ``n_resamples`` draws. With few
      blocks the p value cannot go below ``p_min = 2 / 2^n_blocks`` (5 blocks: 0.0625): read
      ``n_blocks`` and ``p_min`` before reading ``p``.
    - **ci_low, ci_high**: block-bootstrap interval of the mean difference (blocks resampled
      with replacement), the expanded percentile interval (Hesterberg 2015), which widens the
      plain percentile interval for few blocks so that it covers about as often as a t interval.
    - **effect_size**: mean / SD (ddof 1) of the block means (a Cohen's d_z over blocks), with
      the same kind of block-bootstrap interval (resamples whose SD is 0 are skipped).

    Parameters
    ----------
    a, b : array-like of float, shape (n_units,)
        Paired values (e.g. the BA and NWP spread AUC of each TR). Pairs with a NaN are dropped.
    blocks : array-like of int, shape (n_units,)
        Block id of each unit (:func:`independent_blocks`); units with a negative id are left out.
    n_resamples : int
        Sign-flip draws (when not exact) and bootstrap resamples.
    seed : int
    confidence : float

    Returns
    -------
    pandas.Series
        ``n_units`` (units used), ``n_blocks``, ``mean_a``, ``mean_b`` (means of the block means),
        ``mean_difference`` (= ``mean_a - mean_b``), ``ci_low``, ``ci_high``, ``effect_size``,
        ``effect_ci_low``, ``effect_ci_high``, ``p``, ``p_min``, ``exact`` (bool). With one block
        the CIs and the effect size are NaN and p is 1; with none everything is NaN.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    blocks = np.asarray(blocks, dtype=int)
    if not a.shape == b.shape == blocks.shape or a.ndim != 1:
        raise ValueError(f"a, b and blocks must be 1-d of one length; got {a.shape}, {b.shape}, {blocks.shape}.")
    keep = np.isfinite(a) & np.isfinite(b) & (blocks >= 0)
    a, b, blocks = a[keep], b[keep], blocks[keep]
    ids, inverse = np.unique(blocks, return_inverse=True)
    n = ids.size
    counts = np.bincount(inverse, minlength=n).astype(float)
    mean_a = np.bincount(inverse, weights=a, minlength=n) / np.where(counts > 0, counts, 1)
    mean_b = np.bincount(inverse, weights=b, minlength=n) / np.where(counts > 0, counts, 1)
    d = mean_a - mean_b
    out = dict.fromkeys(PAIRED_FIELDS, np.nan)
    out.update(n_units=int(keep.sum()), n_blocks=int(n), exact=False)
    if n == 0:
        return pd.Series(out)
    rng = np.random.default_rng(seed)
    out.update(mean_a=float(mean_a.mean()), mean_b=float(mean_b.mean()), mean_difference=float(d.mean()))
    out["p"], out["p_min"], out["exact"] = _sign_flip(d, n_resamples, rng)
    if n >= 2:
        sd = d.std(ddof=1)
        out["effect_size"] = float(d.mean() / sd) if sd > 0 else np.nan
        tail = 100 * _expanded_tail(n, confidence)
        boot = d[rng.integers(0, n, size=(n_resamples, n))]
        means = boot.mean(axis=1)
        out["ci_low"], out["ci_high"] = (float(x) for x in np.percentile(means, [tail, 100 - tail]))
        sds = boot.std(axis=1, ddof=1)
        ok = sds > 0
        if ok.any():
            out["effect_ci_low"], out["effect_ci_high"] = (
                float(x) for x in np.percentile(means[ok] / sds[ok], [tail, 100 - tail]))
    return pd.Series(out)


def ratio_of_means(a, b, blocks, n_resamples=10000, seed=0, confidence=0.95):
    """Ratio ``mean(a) / mean(b)`` with blocks, not units, as the independent replicates.

    The per-unit values are averaged within each block; the estimate is the ratio of the means of
    the block means, and its interval the expanded percentile block bootstrap of
    :func:`paired_difference` (blocks resampled with replacement; resamples whose denominator is
    not positive are skipped). ``p`` is :func:`paired_difference`'s sign-flip test of ``a - b``
    (a ratio of 1 is a difference of 0).

    Parameters
    ----------
    a, b : array-like of float, shape (n_units,)
        Numerator and denominator values (e.g. each TR's IoU and its chance level); pairs with a
        NaN are dropped.
    blocks : array-like of int, shape (n_units,)
        Block id of each unit (:func:`independent_blocks`); negative ids are left out.
    n_resamples, seed, confidence
        As for :func:`paired_difference`.

    Returns
    -------
    pandas.Series
        ``n_units``, ``n_blocks``, ``mean_a``, ``mean_b``, ``ratio``, ``ci_low``, ``ci_high``
        (NaN with fewer than 2 blocks), ``p``, ``p_min``.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    blocks = np.asarray(blocks, dtype=int)
    if not a.shape == b.shape == blocks.shape or a.ndim != 1:
        raise ValueError(f"a, b and blocks must be 1-d of one length; got {a.shape}, {b.shape}, {blocks.shape}.")
    test = paired_difference(a, b, blocks, n_resamples=n_resamples, seed=seed, confidence=confidence)
    out = dict(n_units=test["n_units"], n_blocks=test["n_blocks"], mean_a=test["mean_a"], mean_b=test["mean_b"],
               ratio=np.nan, ci_low=np.nan, ci_high=np.nan, p=test["p"], p_min=test["p_min"])
    keep = np.isfinite(a) & np.isfinite(b) & (blocks >= 0)
    a, b, blocks = a[keep], b[keep], blocks[keep]
    ids, inverse = np.unique(blocks, return_inverse=True)
    n = ids.size
    if n == 0:
        return pd.Series(out)
    counts = np.bincount(inverse, minlength=n).astype(float)
    mean_a = np.bincount(inverse, weights=a, minlength=n) / counts
    mean_b = np.bincount(inverse, weights=b, minlength=n) / counts
    if mean_b.mean() > 0:
        out["ratio"] = float(mean_a.mean() / mean_b.mean())
    if n >= 2:
        rng = np.random.default_rng(seed)
        pick = rng.integers(0, n, size=(n_resamples, n))
        num, den = mean_a[pick].mean(axis=1), mean_b[pick].mean(axis=1)
        ok = den > 0
        if ok.any():
            tail = 100 * _expanded_tail(n, confidence)
            out["ci_low"], out["ci_high"] = (float(x) for x in np.percentile(num[ok] / den[ok], [tail, 100 - tail]))
    return pd.Series(out)


def subject_level_test(per_subject_effects, null=0.0, n_resamples=100000, seed=0, confidence=0.95):
    """One-sample tests over subjects: are the subjects' effects centred away from ``null``?

    When every subject read the same stimulus, the subjects are the independent units: TRs,
    words and blocks of one text are shared by all subjects (and NWP, which does not depend on
    the subject, is literally the same), so pooling them across subjects would count the same
    text several times. Compute one effect per subject first (e.g. the ``mean_difference`` of
    :func:`paired_difference`), then test those. This is the summary-statistics form of a
    random-intercept model over subjects; it generalises to new subjects reading this text, not
    to new texts.

    - **t, p**: two-sided one-sample t test (``scipy.stats.ttest_1samp``), with a t-based CI of
      the mean; assumes roughly normal subject effects.
    - **p_signflip**: two-sided sign-flip test over subjects, exact for up to
      ``log2(n_resamples)`` subjects; it cannot go below ``p_signflip_min = 2 / 2^n_subjects``
      (3 subjects: 0.25, 8 subjects: 0.0078).
    - **effect_size**: mean / SD of the subject effects (d_z).

    Parameters
    ----------
    per_subject_effects : array-like, dict or pandas.Series of float, shape (n_subjects,)
        One effect per subject; NaNs are dropped.
    null : float
        The value tested against.
    n_resamples : int
        Sign-flip draws when there are too many subjects to enumerate.
    seed : int
    confidence : float

    Returns
    -------
    pandas.Series
        ``n_subjects``, ``mean``, ``sd``, ``ci_low``, ``ci_high``, ``t``, ``p``, ``effect_size``,
        ``p_signflip``, ``p_signflip_min``. With fewer than 2 subjects only ``n_subjects`` and
        ``mean`` are filled (NaN elsewhere); when all effects are equal, ``t``, ``p`` and
        ``effect_size`` are NaN and the CI is that value.
    """
    if isinstance(per_subject_effects, dict):
        per_subject_effects = list(per_subject_effects.values())
    x = np.asarray(per_subject_effects, dtype=float)
    x = x[np.isfinite(x)] - float(null)
    n = x.size
    out = dict(n_subjects=int(n), mean=float(x.mean()) + null if n else np.nan, sd=np.nan, ci_low=np.nan,
               ci_high=np.nan, t=np.nan, p=np.nan, effect_size=np.nan, p_signflip=np.nan, p_signflip_min=np.nan)
    if n < 2:
        return pd.Series(out)
    sd = x.std(ddof=1)
    out["sd"] = float(sd)
    if sd > 0:
        res = scipy.stats.ttest_1samp(x, 0.0)
        half = scipy.stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / np.sqrt(n)
        out.update(t=float(res.statistic), p=float(res.pvalue), effect_size=float(x.mean() / sd),
                   ci_low=float(x.mean() - half + null), ci_high=float(x.mean() + half + null))
    else:  # identical effects: no t test; the sign flip still applies
        out.update(ci_low=float(x.mean() + null), ci_high=float(x.mean() + null))
    out["p_signflip"], out["p_signflip_min"], _ = _sign_flip(x, n_resamples, np.random.default_rng(seed))
    return pd.Series(out)


def bh(pvalues):
    """Benjamini-Hochberg adjusted p values over exactly the family passed in.

    The family is every non-NaN p value given: pass exactly the tests that were run and
    reported together (not more, not fewer). NaNs stay NaN and do not count in the family.

    Parameters
    ----------
    pvalues : array-like or pandas.Series of float, shape (n,)

    Returns
    -------
    Same type and shape as ``pvalues`` (a Series keeps its index): the BH-adjusted p values
    (``scipy.stats.false_discovery_control(..., method="bh")``).
    """
    values = np.asarray(pvalues, dtype=float)
    out = np.full(values.shape, np.nan)
    ok = np.isfinite(values)
    if ok.any():
        out[ok] = scipy.stats.false_discovery_control(values[ok], method="bh")
    if isinstance(pvalues, pd.Series):
        return pd.Series(out, index=pvalues.index, name=pvalues.name)
    return out


# --------------------------------------------------------------------------------------------
# Fig. 3: spread AUC, BA against NWP
# --------------------------------------------------------------------------------------------
#: The three levels of :func:`compare_auc_blocks`.
AUC_LEVELS = ("within subject", "over subjects", "over text blocks")


def compare_auc_blocks(auc_table, span, by=("layer_group",), subject="subject", a="ba", b="nwp", column="task",
                       block_length=1, buffer=True, n_resamples=10000, seed=0):
    """Fig. 3's AUC comparison (``a - b``, BA - NWP by default) with dependence-aware tests.

    The replacement of a per-TR paired t test, which treats overlapping TR windows as independent.
    For each group of ``by`` (e.g. each layer group) three kinds of rows (column ``level``):

    - ``"within subject"``, one row per subject: :func:`paired_difference` of the per-TR AUCs
      over :func:`independent_blocks` (TRs whose windows share no word across blocks);
    - ``"over subjects"``, one row: :func:`subject_level_test` of the subjects' mean
      differences (``p`` is the t test's; ``p_signflip`` and its floor ``p_min`` are given too).
      Generalises to new subjects reading this text; NaN with one subject;
    - ``"over text blocks"``, one row: :func:`paired_difference` of the per-TR AUCs averaged over
      subjects first, with blocks of text as the units. Generalises to new stretches of text.

    ``p_bh`` is Benjamini-Hochberg (:func:`bh`) within each level, over the rows of that level
    actually tested (within subject: groups x subjects; the other two: the groups).

    Parameters
    ----------
    auc_table : pandas.DataFrame
        :func:`brainattr.analysis.spread_auc` output with columns ``tr``, ``auc``, ``column``
        (the task), ``subject`` and the ``by`` columns, one row per (group, subject, task, TR).
    span : int or pandas.DataFrame
        Window span in TRs, or an attribution table to measure it from (:func:`window_span`).
    by : sequence of str
        Grouping columns (e.g. ``["layer_group"]`` or ``["layer"]``).
    subject : str
        The subject column.
    a, b : str
        The two values of ``column`` compared; differences are ``a - b``.
    column : str
    block_length, buffer
        See :func:`independent_blocks`.
    n_resamples, seed
        See :func:`paired_difference`.

    Returns
    -------
    pandas.DataFrame
        One row per (group, level[, subject]): the ``by`` columns, ``level``, ``subject`` (the
        subject, or ``"all"``), ``n_subjects``, ``n_units`` (TRs used), ``n_blocks`` (over
        subjects: the number of subjects, the units of that test),
        ``mean_<a>``, ``mean_<b>``, ``mean_difference``, ``ci_low``, ``ci_high`` (95 %),
        ``effect_size``, ``effect_ci_low``, ``effect_ci_high``, ``p``, ``p_min`` (the smallest p
        the test can give), ``p_signflip`` (over subjects only), ``p_bh``.
    """
    by = list(by)
    if isinstance(span, pd.DataFrame) or hasattr(span, "to_pandas"):
        span = window_span(span)
    wide = (auc_table.pivot_table(index=by + [subject, "tr"], columns=column, values="auc")
            .dropna(subset=[a, b]).reset_index())
    opts = dict(n_resamples=n_resamples, seed=seed)
    rows = []
    for key, g in wide.groupby(by, sort=True) if by else [((), wide)]:
        key = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        per_subject = {}
        for s, gs in g.groupby(subject, sort=True):
            res = paired_difference(gs[a], gs[b], independent_blocks(gs["tr"], span, block_length, buffer), **opts)
            rows.append({**key, "level": AUC_LEVELS[0], subject: s, "n_subjects": 1, **res.to_dict()})
            per_subject[s] = res
        effects = pd.Series({s: r["mean_difference"] for s, r in per_subject.items()})
        st = subject_level_test(effects, seed=seed)
        rows.append({**key, "level": AUC_LEVELS[1], subject: "all", "n_subjects": st["n_subjects"],
                     "n_units": int(sum(r["n_units"] for r in per_subject.values())),
                     "n_blocks": int(st["n_subjects"]),
                     "mean_a": float(np.mean([r["mean_a"] for r in per_subject.values()])),
                     "mean_b": float(np.mean([r["mean_b"] for r in per_subject.values()])),
                     "mean_difference": st["mean"], "ci_low": st["ci_low"], "ci_high": st["ci_high"],
                     "effect_size": st["effect_size"], "p": st["p"], "p_min": st["p_signflip_min"],
                     "p_signflip": st["p_signflip"], "exact": True})
        text = g.groupby("tr")[[a, b]].mean().reset_index()
        res = paired_difference(text[a], text[b], independent_blocks(text["tr"], span, block_length, buffer), **opts)
        rows.append({**key, "level": AUC_LEVELS[2], subject: "all", "n_subjects": len(per_subject), **res.to_dict()})
    out = pd.DataFrame(rows)
    out["p_bh"] = np.nan
    for level in AUC_LEVELS:
        at = out["level"] == level
        out.loc[at, "p_bh"] = bh(out.loc[at, "p"].to_numpy(dtype=float))
    out = out.rename(columns={"mean_a": f"mean_{a}", "mean_b": f"mean_{b}"})
    cols = by + ["level", subject, "n_subjects", "n_units", "n_blocks", f"mean_{a}", f"mean_{b}", "mean_difference",
                 "ci_low", "ci_high", "effect_size", "effect_ci_low", "effect_ci_high", "p", "p_min", "p_signflip",
                 "p_bh"]
    return out.reindex(columns=cols)


# --------------------------------------------------------------------------------------------
# Fig. 2: IoU against a null that keeps position
# --------------------------------------------------------------------------------------------
def _position_sets(table, thresholds, how, trs, width):
    """Boolean (n_thresholds, n_trs, width): is the word at each position in the TR's important set."""
    imp = important_words(table, thresholds, how)
    out = np.zeros((len(thresholds), len(trs), width), dtype=bool)
    t_index = {float(t): k for k, t in enumerate(thresholds)}
    tr_index = {int(t): k for k, t in enumerate(trs)}
    imp = imp[imp["tr"].isin(trs)]
    k = np.array([t_index[float(t)] for t in imp["threshold"]], dtype=int)
    i = np.array([tr_index[int(t)] for t in imp["tr"]], dtype=int)
    out[k, i, imp["position"].to_numpy(dtype=int)] = True
    return out


def position_preserving_iou(ba, nwp, thresholds=THRESHOLDS, n_pairs=None, seed=0, span=None, block_length=1,
                            how="abs", n_resamples=10000, return_per_tr=False):
    """IoU of BA and NWP important words against the chance level that position alone gives (Fig. 2).

    Both tasks favour recent words, so two sets drawn from the same positional profiles overlap
    more than uniformly random sets do (:func:`brainattr.analysis.expected_random_iou`). This
    null keeps each task's positional profile and breaks only the words: the BA important set of
    TR ``i`` is compared with the NWP important set of another TR ``j`` whose window shares no word
    with ``i``'s, **by position in the window** (0 = most recent word), i.e. as sets of
    positions. Important sets follow :func:`brainattr.analysis.important_words` (same
    normalisation ``how`` and tie-breaking), so the observed IoU by position (same TR) equals the
    word IoU of :func:`brainattr.analysis.overlap`.

    Per TR ``i``: ``observed`` = IoU(BA_i, NWP_i); ``null`` = mean over the chosen ``j`` of
    IoU(BA_i, NWP_j). The test is :func:`paired_difference` of observed vs null over
    :func:`independent_blocks` of the TRs (``block_length`` TRs per block, windows of different
    blocks share no word). Each TR's null averages over many other TRs, so the per-TR differences
    are treated as independent across blocks; that is an approximation.

    Parameters
    ----------
    ba, nwp : pandas.DataFrame or datasets.Dataset
        Attribution tables of the two tasks for ONE subject and layer (e.g.
        ``g[g.task == "ba"]`` of a ``groupby(["subject", "layer"])`` of the long table); only TRs
        in both are used, and their windows must hold the same words.
    thresholds : sequence of float
    n_pairs : int or None
        Null partners ``j`` per TR ``i``: all eligible TRs (None, default) or a random sample of
        at most ``n_pairs`` of them. Eligible: ``j != i`` and the windows share no word (when no
        TR is eligible for ``i``, its null is NaN and it is left out of the test).
    seed : int
    span : int or None
        Window span in TRs for the blocks (None: :func:`window_span` of ``ba``).
    block_length : int
        See :func:`independent_blocks`.
    how : {"abs", "positive"}
    n_resamples : int
        See :func:`paired_difference`.
    return_per_tr : bool
        Also return the per-TR table.

    Returns
    -------
    summary : pandas.DataFrame
        One row per threshold: ``threshold``; ``observed_iou``, ``position_null_iou`` and
        ``uniform_null_iou`` (means over the TRs with a null; the last is the hypergeometric
        chance level of uniformly random sets of the same sizes); ``ratio`` (observed / position
        null); the block test of observed - position null: ``difference`` (mean of block means),
        ``ci_low``, ``ci_high``, ``effect_size``, ``p``, ``p_min``, ``n_blocks``; ``n_trs``,
        ``n_null_pairs`` (mean partners per TR).
    per_tr : pandas.DataFrame, only with ``return_per_tr``
        One row per (threshold, TR): ``threshold``, ``tr``, ``block``, ``observed_iou``,
        ``position_null_iou``, ``uniform_null_iou``, ``n_null_pairs``.
    """
    thresholds = [float(t) for t in thresholds]
    r_ba, r_nwp = _word_ranges(ba), _word_ranges(nwp)
    trs = np.intersect1d(r_ba.index.to_numpy(), r_nwp.index.to_numpy())
    if not (r_ba.loc[trs].to_numpy() == r_nwp.loc[trs].to_numpy()).all():
        raise ValueError("the BA and NWP tables hold different windows for the same TR; attribute both with the "
                         "same context length and stimulus.")
    lo, hi = r_ba.loc[trs, "min"].to_numpy(), r_ba.loc[trs, "max"].to_numpy()
    width = int(max(_frame(ba)["position"].max(), _frame(nwp)["position"].max()) + 1) if trs.size else 1
    sets_ba = _position_sets(ba, thresholds, how, trs, width)
    sets_nwp = _position_sets(nwp, thresholds, how, trs, width)
    # eligible partners: another TR whose window shares no word
    eligible = (lo[None, :] > hi[:, None]) | (hi[None, :] < lo[:, None])
    rng = np.random.default_rng(seed)
    if n_pairs is not None:
        for i in range(trs.size):
            cand = np.flatnonzero(eligible[i])
            if cand.size > n_pairs:
                eligible[i] = False
                eligible[i, rng.choice(cand, size=int(n_pairs), replace=False)] = True
    n_partners = eligible.sum(axis=1)
    if span is None:
        span = window_span(ba)
    blocks = independent_blocks(trs, span, block_length)
    sizes_ba = spread(ba, thresholds, how).set_index(["threshold", "tr"])
    sizes_nwp = spread(nwp, thresholds, how).set_index(["threshold", "tr"])
    rows, per_tr = [], []
    for k, th in enumerate(thresholds):
        A, B = sets_ba[k].astype(float), sets_nwp[k].astype(float)
        inter = A @ B.T
        union = A.sum(1)[:, None] + B.sum(1)[None, :] - inter
        iou = np.divide(inter, union, out=np.full_like(inter, np.nan), where=union > 0)
        observed = np.diag(iou).copy()
        with np.errstate(invalid="ignore"):
            null = np.where(n_partners > 0, np.where(eligible, iou, 0.0).sum(1) / np.maximum(n_partners, 1), np.nan)
        idx = pd.MultiIndex.from_arrays([np.full(trs.size, th), trs])
        nb = sizes_ba["n_important"].reindex(idx).to_numpy()
        nn = sizes_nwp["n_important"].reindex(idx).to_numpy()
        nw = sizes_ba["n_words"].reindex(idx).to_numpy()
        uniform = np.array([expected_random_iou(n, x, y) for n, x, y in zip(nw, nb, nn)])
        used = np.isfinite(null)
        test = paired_difference(observed, null, np.where(used, blocks, -1), n_resamples=n_resamples, seed=seed)
        obs_mean = float(observed[used].mean()) if used.any() else np.nan
        null_mean = float(null[used].mean()) if used.any() else np.nan
        rows.append(dict(threshold=th, observed_iou=obs_mean, position_null_iou=null_mean,
                         uniform_null_iou=float(uniform[used].mean()) if used.any() else np.nan,
                         ratio=obs_mean / null_mean if null_mean > 0 else np.nan,
                         difference=test["mean_difference"], ci_low=test["ci_low"], ci_high=test["ci_high"],
                         effect_size=test["effect_size"], p=test["p"], p_min=test["p_min"],
                         n_blocks=test["n_blocks"], n_trs=int(used.sum()),
                         n_null_pairs=float(n_partners[used].mean()) if used.any() else 0.0))
        if return_per_tr:
            per_tr.append(pd.DataFrame(dict(threshold=th, tr=trs, block=blocks, observed_iou=observed,
                                            position_null_iou=null, uniform_null_iou=uniform,
                                            n_null_pairs=n_partners)))
    summary = pd.DataFrame(rows)
    if return_per_tr:
        return summary, pd.concat(per_tr, ignore_index=True)
    return summary


# --------------------------------------------------------------------------------------------
# One verdict rule
# --------------------------------------------------------------------------------------------
def _direction(direction):
    if direction is None:
        return None
    if isinstance(direction, str):
        key = direction.strip().lower()
        table = {"greater": 1, "higher": 1, "above": 1, "positive": 1, ">": 1, "+": 1,
                 "less": -1, "lower": -1, "below": -1, "negative": -1, "<": -1, "-": -1}
        if key not in table:
            raise ValueError(f"unknown direction {direction!r}; use 'greater' or 'less' (or +1 / -1).")
        return table[key]
    value = np.sign(float(direction))
    if value == 0:
        raise ValueError("direction must be positive or negative, not 0.")
    return int(value)


def _given(x):
    return x is not None and np.isfinite(float(x))


def verdict(estimate, ci_low, ci_high, paper_low=None, paper_high=None, null=0.0, direction=None):
    """The one rule that turns this run's estimate and CI into a verdict against the paper.

    In order:

    1. **"not comparable"**: the paper gives no number (``paper_low`` and ``paper_high`` both
       None) and no direction (``direction`` None); also when this run has no estimate or no
       interval (any of ``estimate``, ``ci_low``, ``ci_high`` None or NaN), so nothing can be
       compared.
    2. **"reproduced"**: the paper gives a number or range and our CI ``[ci_low, ci_high]``
       overlaps the paper's stated range ``[paper_low, paper_high]`` (a single number: pass it
       as both; a one-sided bound such as "> 0.8": pass ``paper_low=0.8`` only, the other end is
       then unbounded).
    3. **"same direction"**: the sign of ``estimate - null`` matches the paper's direction AND
       the CI excludes the null (``ci_low > null`` for "greater", ``ci_high < null`` for
       "less"). The paper's direction is ``direction`` when given, else read from its range:
       "greater" when the whole range lies above ``null``, "less" when below; a range that
       contains ``null`` gives no direction.
    4. **"not reproduced"**: otherwise.

    Parameters
    ----------
    estimate, ci_low, ci_high : float
        This run's estimate and its confidence interval (e.g. the ``mean_difference``,
        ``ci_low``, ``ci_high`` of :func:`paired_difference`).
    paper_low, paper_high : float or None
        The paper's stated range (from :mod:`brainattr.claims`); None where it gives none.
    null : float
        The no-effect value the direction is relative to (0 for a difference, the chance level
        for an IoU, 1 for a ratio).
    direction : {"greater", "less"} or +1 / -1 or None
        The paper's direction relative to ``null`` when it states one.

    Returns
    -------
    str
        One of :data:`VERDICTS`.
    """
    has_range = _given(paper_low) or _given(paper_high)
    sign = _direction(direction)
    if not has_range and sign is None:
        return "not comparable"
    if not (_given(estimate) and _given(ci_low) and _given(ci_high)):
        return "not comparable"
    estimate, ci_low, ci_high, null = float(estimate), float(ci_low), float(ci_high), float(null)
    if ci_low > ci_high:
        raise ValueError(f"ci_low {ci_low} is above ci_high {ci_high}.")
    if has_range:
        low = float(paper_low) if _given(paper_low) else -np.inf
        high = float(paper_high) if _given(paper_high) else np.inf
        if low > high:
            raise ValueError(f"paper_low {low} is above paper_high {high}.")
        if ci_low <= high and ci_high >= low:
            return "reproduced"
        if sign is None:
            sign = 1 if low > null else -1 if high < null else None
    if sign == 1 and estimate > null and ci_low > null:
        return "same direction"
    if sign == -1 and estimate < null and ci_high < null:
        return "same direction"
    return "not reproduced"


__all__ = ["VERDICTS", "PAIRED_FIELDS", "AUC_LEVELS", "window_span", "independent_blocks", "paired_difference",
           "subject_level_test", "ratio_of_means", "bh", "compare_auc_blocks", "position_preserving_iou", "verdict"]
