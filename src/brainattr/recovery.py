"""Scoring attributions against the simulated subjects' planted truth, with scores position alone cannot pass.

A planted word's truth is roughly a word factor times a position envelope (the HRF and the
integration kernels depend only on how far back a word is), so ranking words *by position* already
reproduces most of each TR's truth. One function, :func:`recovery_scores`, scores any word-score
table (an attribution table, an oracle's, a prior's) four ways, each with a confidence interval
over TRs (subjects pooled per TR):

- ``per_tr``: Spearman correlation of scores and truth over the words of each TR, averaged over
  TRs (the score used so far; position alone reaches it);
- ``position_prior``: the same for a leave-one-TR-out prior (the mean truth at each position over
  the other TRs): what knowing only *where* words sit gives;
- ``word_identity``: at each position, the rank correlation of scores and truth *across TRs*,
  averaged over positions weighted by the truth they hold. Position is held fixed, so only knowing
  *which* word sits there helps: the prior has nothing to rank (no position where its scores vary,
  coverage 0), and the null shuffles the scores across TRs within each position. Positions where
  the scores do not vary (words a method never reaches) are left out of the mean, and
  ``coverage`` says how much of the truth the remaining positions hold;
- ``precision_at_k``: for a sparse plant (voxels driven only by character names), the share of
  the ``k`` truly driving words of a TR among the ``k`` best-scored ones.

Position is not all that is trivially true: the planted drivers weigh content words more than
function words, and any attribution that favours content words (next-word prediction's does) gains
word identity without knowing the brain. Given each word's class (its part of speech),
:func:`recovery_scores` also scores a **word-class prior** (the leave-one-TR-out mean truth of
words of the same class at the same position): the word identity that knowing *what kind* of word
sits where already reaches.

The TRs chapter 3 attributes are ~29 TRs apart, farther than a window reaches, so TRs are the
independent units of the bootstrap; subjects share TRs and are averaged within each TR first.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .analysis import word_weights

#: A word counts as truly driving a sparse plant when its truth reaches this share of the TR's largest.
PLANT_SHARE_OF_MAX = 0.1
#: Positions scored by ``word_identity`` need at least this many TRs with a word there.
MIN_TRS_PER_POSITION = 8


def aligned_scores(table, truth, how: str = "abs") -> pd.DataFrame:
    """Word scores next to the planted truth, one row per (TR, window word).

    Parameters
    ----------
    table : pandas.DataFrame or datasets.Dataset
        An attribution table (``tr``, ``word_index``, ``position``, ``attribution``,
        ``abs_attribution``).
    truth : pandas.DataFrame
        :func:`brainattr.data.true_contributions_table` output (``tr``, ``word_index``,
        ``contribution``); window words it lacks contribute 0.
    how : {"abs", "signed"}
        ``abs``: magnitudes of both (the default reading); ``signed``: signed attributions against
        the signed truth (``true_contributions_table(..., how="sum")``).

    Returns
    -------
    pandas.DataFrame with columns ``tr``, ``word_index``, ``position``, ``score``, ``truth``
        ``score`` and ``truth`` are shares of their TR's total magnitude.
    """
    if how not in ("abs", "signed"):
        raise ValueError(f"how must be 'abs' or 'signed', got {how!r}.")
    df = word_weights(table, how)[["tr", "word_index", "position", "weight"]].rename(columns={"weight": "score"})
    merged = df.merge(truth[["tr", "word_index", "contribution"]], on=["tr", "word_index"], how="left")
    t = merged.pop("contribution").fillna(0.0)
    t = t.abs() if how == "abs" else t
    # shares of the TR's total, as the scores are: the word-identity score compares TRs
    total = t.abs().groupby(merged["tr"]).transform("sum")
    merged["truth"] = t / total.where(total > 0, 1.0)
    return merged


def _leave_one_out_mean(aligned: pd.DataFrame, keys) -> pd.DataFrame:
    """``aligned`` with ``score`` the mean ``truth`` of the other rows with the same ``keys`` (0 where none).

    A TR has one word per position, so at a fixed position the other rows are the other TRs.
    """
    out = aligned.copy()
    g = out.groupby(keys)["truth"]
    total, count = g.transform("sum"), g.transform("count")
    out["score"] = np.where(count > 1, (total - out["truth"]) / np.maximum(count - 1, 1), 0.0)
    return out


def with_position_prior(aligned: pd.DataFrame) -> pd.DataFrame:
    """``aligned`` with ``score`` replaced by the leave-one-TR-out mean truth at the word's position.

    Parameters
    ----------
    aligned : pandas.DataFrame
        :func:`aligned_scores` output.

    Returns
    -------
    pandas.DataFrame
        Same rows; ``score`` is the mean ``truth`` of the other TRs at the same position.
    """
    return _leave_one_out_mean(aligned, "position")


def with_word_class_prior(aligned: pd.DataFrame, word_classes) -> pd.DataFrame:
    """``aligned`` with ``score`` the leave-one-TR-out mean truth of words of the same class at the same position.

    Parameters
    ----------
    aligned : pandas.DataFrame
        :func:`aligned_scores` output.
    word_classes : array-like, shape (n_stimulus_words,)
        Each stimulus word's class (e.g. its part of speech), indexed by ``word_index``.

    Returns
    -------
    pandas.DataFrame
        Same rows; ``score`` is the mean ``truth`` of the other TRs' words of the same class at
        the same position, as a share of its TR's total: what knowing where a word sits and what
        kind of word it is gives.
    """
    classes = np.asarray(word_classes)[aligned["word_index"].to_numpy()]
    out = _leave_one_out_mean(aligned.assign(word_class=classes), ["position", "word_class"]).drop(
        columns="word_class")
    # shares of the TR's total, as a method's scores are (a TR with many content words gives each a smaller share)
    total = out.groupby("tr")["score"].transform("sum")
    out["score"] = out["score"] / total.where(total > 0, 1.0)
    return out


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of two (n_rows, n) arrays of ranks (NaN where a row is constant)."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def per_tr_spearman(aligned: pd.DataFrame) -> pd.Series:
    """Spearman correlation of ``score`` and ``truth`` over each TR's words, Series indexed by ``tr``."""
    def rho(g):
        a, t = g["score"].rank().to_numpy(), g["truth"].rank().to_numpy()
        return float(_spearman_rows(a[None], t[None])[0])
    return aligned.groupby("tr")[["score", "truth"]].apply(rho).rename("per_tr")


def _position_matrices(aligned: pd.DataFrame):
    """Positions with enough TRs where score and truth both vary.

    Returns
    -------
    dict position -> (trs, score ranks, truth ranks, weight)
        Arrays of shape (n_trs_at_position,); ``weight`` is the position's mean truth.
    """
    out = {}
    for pos, g in aligned.groupby("position"):
        if len(g) >= MIN_TRS_PER_POSITION and g["truth"].nunique() > 1 and g["score"].nunique() > 1:
            out[int(pos)] = (g["tr"].to_numpy(), g["score"].rank().to_numpy(), g["truth"].rank().to_numpy(),
                             float(g["truth"].abs().mean()))
    return out


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean over axis 0 of (n_positions, ...) values with (n_positions,) weights, ignoring NaN."""
    w = np.where(np.isnan(values), 0.0, weights.reshape((-1,) + (1,) * (values.ndim - 1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nansum(np.nan_to_num(values) * w, axis=0) / w.sum(axis=0)


def _nanmean_rows(rows) -> np.ndarray:
    """Mean of a list of equal-shape arrays, ignoring NaN (NaN where all are NaN)."""
    stacked = np.stack(rows)
    n = (~np.isnan(stacked)).sum(0)
    return np.where(n > 0, np.nansum(stacked, 0) / np.maximum(n, 1), np.nan)


def word_identity(aligned: pd.DataFrame) -> pd.DataFrame:
    """Rank correlation of ``score`` and ``truth`` across TRs at each position (position held fixed).

    Returns
    -------
    pandas.DataFrame with columns ``position``, ``rho``, ``n_trs``, ``weight``
        Positions where truth and scores both vary and at least :data:`MIN_TRS_PER_POSITION` TRs
        have a word; ``weight`` is the position's mean truth.
    """
    rows = [dict(position=p, rho=float(_spearman_rows(s[None], t[None])[0]), n_trs=len(s), weight=w)
            for p, (_, s, t, w) in _position_matrices(aligned).items()]
    return pd.DataFrame(rows, columns=["position", "rho", "n_trs", "weight"])


def word_identity_score(aligned: pd.DataFrame) -> tuple[float, float]:
    """Word identity of one subject's aligned scores, and the share of the truth it covers.

    Returns
    -------
    (score, coverage) : (float, float)
        ``score``: truth-weighted mean over positions of :func:`word_identity`'s ``rho`` (NaN when no
        position qualifies); ``coverage``: share of the truth's mass at the positions scored.
    """
    per_pos = word_identity(aligned)
    total = aligned.groupby("position")["truth"].apply(lambda t: t.abs().mean()).sum()
    if per_pos.empty or not total > 0:
        return np.nan, 0.0
    score = float(_weighted_mean(per_pos["rho"].to_numpy(), per_pos["weight"].to_numpy()))
    return score, float(per_pos["weight"].sum() / total)


def precision_at_k(aligned: pd.DataFrame, share_of_max: float = PLANT_SHARE_OF_MAX) -> pd.Series:
    """Per TR: of the ``k`` words truly driving a sparse plant, the share among the ``k`` best-scored.

    ``k`` is the number of words whose truth reaches ``share_of_max`` of the TR's largest truth;
    TRs where no word drives the plant are left out. A random ranking scores ``k / n_words`` on
    average.

    Returns
    -------
    pandas.Series indexed by ``tr``, name ``precision_at_k``
    """
    out = {}
    for tr, g in aligned.groupby("tr"):
        t = g["truth"].to_numpy()
        if not t.max() > 0:
            continue
        true = t >= share_of_max * t.max()
        k = int(true.sum())
        top = np.argsort(-g["score"].to_numpy(), kind="stable")[:k]
        out[int(tr)] = true[top].mean()
    return pd.Series(out, name="precision_at_k", dtype=float).rename_axis("tr")


def _chance_precision(aligned: pd.DataFrame) -> float:
    """Mean over TRs of k / n_words: precision@k of a random ranking."""
    vals = []
    for _, g in aligned.groupby("tr"):
        t = g["truth"].to_numpy()
        if t.max() > 0:
            vals.append((t >= PLANT_SHARE_OF_MAX * t.max()).sum() / t.size)
    return float(np.mean(vals)) if vals else np.nan


def _word_identity_resamples(aligned_by_subject, n, rng, permute: bool) -> np.ndarray:
    """Word identity (subjects averaged) over ``n`` resamples, shape (n,).

    ``permute=False``: bootstrap resamples of TRs (the same TRs for every subject; ranks are kept
    from the full sample). ``permute=True``: the null, scores shuffled across TRs within each position.
    """
    trs = np.unique(np.concatenate([a["tr"].to_numpy() for a in aligned_by_subject]))
    counts = None
    if not permute:
        draws = rng.integers(0, trs.size, size=(n, trs.size))
        counts = np.stack([np.bincount(d, minlength=trs.size) for d in draws]).astype(float)  # (n, n_trs)
    per_subject = []
    for aligned in aligned_by_subject:
        per_pos, weights = [], []
        for tr_of_row, s, t, weight in _position_matrices(aligned).values():
            if permute:
                perm = np.argsort(rng.random((n, s.size)), axis=1)
                per_pos.append(_spearman_rows(s[perm], np.broadcast_to(t, (n, t.size))))
            else:
                w = counts[:, np.searchsorted(trs, tr_of_row)]  # (n, n_rows): bootstrap multiplicities
                sw = np.maximum(w.sum(1, keepdims=True), 1)
                ds = s - (w * s).sum(1, keepdims=True) / sw
                dt = t - (w * t).sum(1, keepdims=True) / sw
                den = np.sqrt((w * ds * ds).sum(1) * (w * dt * dt).sum(1))
                with np.errstate(invalid="ignore", divide="ignore"):
                    per_pos.append(np.where(den > 0, (w * ds * dt).sum(1) / np.where(den > 0, den, 1), np.nan))
            weights.append(weight)
        per_subject.append(_weighted_mean(np.stack(per_pos), np.array(weights)) if per_pos else np.full(n, np.nan))
    return _nanmean_rows(per_subject)


def _percentile(x, q) -> float:
    return float(np.nanpercentile(x, q)) if np.isfinite(x).any() else np.nan


def recovery_scores(tables: dict, truths: dict, plant_tables: dict | None = None, plant_truths: dict | None = None,
                    how: str = "abs", n_boot: int = 1000, seed: int = 0, confidence: float = 0.95,
                    word_classes=None) -> pd.DataFrame:
    """Every recovery score of one source of word scores, pooled over subjects, with bootstrap CIs over TRs.

    Parameters
    ----------
    tables : dict subject -> attribution table
        The source's word scores per subject (the same TRs for every subject).
    truths : dict subject -> pandas.DataFrame
        Each subject's :func:`brainattr.data.true_contributions_table` on those TRs.
    plant_tables, plant_truths : dict subject -> table, optional
        Scores of the sparse plant's target and its truth, for ``precision_at_k``.
    how : {"abs", "signed"}
        Magnitudes (default) or signed scores against the signed truth.
    n_boot : int
        Bootstrap resamples of TRs, and permutations of the word-identity null.
    seed : int
    confidence : float
    word_classes : array-like, shape (n_stimulus_words,), optional
        Each stimulus word's class (e.g. ``stimulus.annotations["pos"]``): adds the word identity
        of the word-class prior (:func:`with_word_class_prior`), ``word_identity_class_prior``,
        and with a plant its precision, ``precision_at_k_class_prior``.

    Returns
    -------
    pandas.DataFrame indexed by score (``per_tr``, ``position_prior``, ``word_identity``, with
    ``word_classes`` ``word_identity_class_prior``, and with a plant ``precision_at_k``,
    ``precision_at_k_prior`` and with ``word_classes`` ``precision_at_k_class_prior``), columns ``estimate``, ``ci_low``, ``ci_high``,
    ``null`` (chance level: 0 for the correlations, the shuffled null's mean for word identity,
    ``k / n_words`` for precision), ``null_high`` (upper end of the null's central interval, word
    identity only), ``coverage`` (word identity only: share of the truth at the positions scored),
    ``n_trs``, ``n_subjects``.
    """
    rng = np.random.default_rng(seed)
    lo, hi = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    aligned = {s: aligned_scores(tables[s], truths[s], how) for s in tables}
    n_trs = len(np.unique(np.concatenate([a["tr"].to_numpy() for a in aligned.values()])))
    rows = []

    def per_tr_row(name, frames, null=0.0):
        v = pd.concat(frames, axis=1).mean(axis=1).dropna().to_numpy()  # subjects averaged per TR
        boots = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(1) if v.size else np.full(1, np.nan)
        rows.append(dict(score=name, estimate=float(v.mean()) if v.size else np.nan, ci_low=_percentile(boots, lo),
                         ci_high=_percentile(boots, hi), null=null, null_high=np.nan, coverage=np.nan,
                         n_trs=int(v.size), n_subjects=len(frames)))

    per_tr_row("per_tr", [per_tr_spearman(a) for a in aligned.values()])
    per_tr_row("position_prior", [per_tr_spearman(with_position_prior(a)) for a in aligned.values()])

    def identity_row(name, frames):
        identity = np.array([word_identity_score(a) for a in frames])  # (n_subjects, 2)
        boots = _word_identity_resamples(frames, n_boot, rng, permute=False)
        null = _word_identity_resamples(frames, n_boot, rng, permute=True)
        rows.append(dict(score=name, estimate=float(_nanmean_rows(list(identity[:, 0]))),
                         ci_low=_percentile(boots, lo), ci_high=_percentile(boots, hi),
                         null=float(np.nanmean(null)) if np.isfinite(null).any() else np.nan,
                         null_high=_percentile(null, hi), coverage=float(identity[:, 1].mean()), n_trs=n_trs,
                         n_subjects=len(frames)))

    identity_row("word_identity", list(aligned.values()))
    if word_classes is not None:
        identity_row("word_identity_class_prior", [with_word_class_prior(a, word_classes) for a in aligned.values()])
    if plant_tables and plant_truths:
        plant = {s: aligned_scores(plant_tables[s], plant_truths[s], "abs") for s in plant_tables}
        chance = float(np.nanmean([_chance_precision(a) for a in plant.values()]))
        per_tr_row("precision_at_k", [precision_at_k(a) for a in plant.values()], null=chance)
        per_tr_row("precision_at_k_prior", [precision_at_k(with_position_prior(a)) for a in plant.values()],
                   null=chance)
        if word_classes is not None:
            per_tr_row("precision_at_k_class_prior",
                       [precision_at_k(with_word_class_prior(a, word_classes)) for a in plant.values()], null=chance)
    return pd.DataFrame(rows).set_index("score")


__all__ = ["PLANT_SHARE_OF_MAX", "MIN_TRS_PER_POSITION", "aligned_scores", "with_position_prior",
           "with_word_class_prior", "per_tr_spearman", "word_identity", "word_identity_score", "precision_at_k",
           "recovery_scores", "describe"]


def _ci(row) -> str:
    return f"{row['estimate']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def _plant_by_noise(g) -> str:
    """``"; precision@k on the plant ..."`` for a noise sweep's rows that have it, else ``""``."""
    if "precision_at_k" not in g or not g["precision_at_k"].notna().any():
        return ""
    g = g[g["precision_at_k"].notna()]
    return ("; precision@k on the sparse plant " + ", ".join(
        f"{p:.2f} [{lo:.2f}, {hi:.2f}] at noise {n:g} (position prior {q:.2f})"
        for n, p, lo, hi, q in zip(g["noise"], g["precision_at_k"], g["precision_ci_low"], g["precision_ci_high"],
                                   g["precision_prior"])))


def _class_prior_clause(r, p) -> str:
    """``"; the word-class prior ..."`` for the plant's precision line, or ``""`` without that prior."""
    if "precision_at_k_class_prior" not in r.index:
        return ""
    cp = r.loc["precision_at_k_class_prior"]
    return (f"; the word-class prior {_ci(cp)}"
            + (", higher: knowing what kind of word drives the plant finds its words better than the method"
               if cp["ci_low"] > p["ci_high"] else ""))


def _plant_ladder(ladder) -> list:
    """The ladder's precision@k on the sparse plant, rung by rung, with its positive control's verdict (or [])."""
    scores = ladder.index.get_level_values("score")
    if "precision_at_k" not in scores:
        return []
    pk = ladder.xs("precision_at_k", level="score").dropna(subset=["estimate"])
    prior = ladder.xs("precision_at_k_prior", level="score")["estimate"].dropna()
    if pk.empty:
        return []
    control = pk.iloc[0]
    return [f"- **Precision@k on the sparse plant, down the ladder** (position prior {prior.iloc[0]:.2f}): "
            + "; ".join(f"*{k}* {_ci(row)}" for k, row in pk.iterrows()) + ". The first is the score's positive "
            + "control: " + (f"at {control['estimate']:.2f} it finds the plant's words, so a rung below the prior "
                             "fails on its own account." if control["estimate"] >= 0.95 else
                             f"at {control['estimate']:.2f}, short of 0.95, the plant's words are not knowable "
                             "from the encoder's features, and this score cannot fail a method.")]


def describe(recovery: pd.DataFrame, ladder: pd.DataFrame | None = None, sweep: pd.DataFrame | None = None,
             signed: pd.DataFrame | None = None, source: str = "BA (GxI)", reference: str = "NWP (GxI)") -> str:
    """The chapter's reading of its recovery numbers, as Markdown sentences written from the numbers.

    Parameters
    ----------
    recovery : pandas.DataFrame
        :func:`brainattr.pipeline.recovery_table` output (magnitudes).
    ladder, sweep, signed : pandas.DataFrame, optional
        :func:`brainattr.pipeline.oracle_ladder`'s ladder, :func:`brainattr.pipeline.noise_sweep`'s
        output (with :func:`brainattr.pipeline.lm_noise_sweep`'s rows, if any), and the signed
        :func:`brainattr.pipeline.recovery_table`.
    source, reference : str
        The method read, and the one it is compared with.

    Returns
    -------
    str
        A Markdown list; every number comes from the arguments, every verdict from their CIs.
    """
    r = recovery.loc[source]
    lines = []
    per_tr, prior = r.loc["per_tr"], r.loc["position_prior"]
    lines.append(f"- **Per-TR Spearman**: {source} {_ci(per_tr)}; the position prior alone {_ci(prior)}, "
                 + ("higher: ranking words by position beats the method on this score."
                    if prior["ci_low"] > per_tr["ci_high"] else "not higher than the method."))
    wi = r.loc["word_identity"]
    above = wi["ci_low"] > wi["null_high"]
    ref = recovery.loc[reference, "estimate"].get("word_identity", np.nan) if reference in recovery.index else np.nan
    lines.append(f"- **Word identity** (position held fixed): {source} {_ci(wi)}, "
                 + (f"above its shuffle null (95 % of the null below {wi['null_high']:.2f})"
                    if above else f"not above its shuffle null (95 % of the null below {wi['null_high']:.2f})")
                 + f", over positions holding {100 * wi['coverage']:.0f} % of the truth; {reference} {ref:.2f}.")
    if "word_identity_class_prior" in r.index:
        cp = r.loc["word_identity_class_prior"]
        relation = ("above" if wi["ci_low"] > cp["ci_high"] else "below" if wi["ci_high"] < cp["ci_low"]
                    else "not distinguishable from")
        lines.append(f"- **Word-class prior** (the mean truth of the same part of speech at the same position, "
                     f"from the other TRs): word identity {_ci(cp)}; {source} is {relation} it.")
    if "precision_at_k" in r.index:
        p, pp = r.loc["precision_at_k"], r.loc["precision_at_k_prior"]
        verdict = ("above" if p["ci_low"] > pp["ci_high"] else "below" if p["ci_high"] < pp["ci_low"]
                   else "not above")
        lines.append(f"- **Precision@k on the sparse plant**: {source} {_ci(p)}, {verdict} the position prior's "
                     f"{_ci(pp)}; chance {p['null']:.2f}" + _class_prior_clause(r, p) + ".")
    if ladder is not None:
        w = ladder.xs("word_identity", level="score")["estimate"]
        first = w.iloc[0]
        lines.append(f"- **Positive control** ({w.index[0]}): word identity {first:.2f}, "
                     + ("meeting" if first >= 0.95 else "short of") + " the 0.95 a well-specified model should reach.")
        drops = (w.shift(1) - w).iloc[1:].dropna()
        if len(drops):
            k = drops.idxmax()
            before = w.index[list(w.index).index(k) - 1]
            lines.append(f"- **Largest loss on the ladder**: from *{before}* ({w[before]:.2f}) to *{k}* ({w[k]:.2f}).")
        lines += _plant_ladder(ladder)
    if sweep is not None and len(sweep):
        sweep = sweep if "source" in sweep else sweep.assign(source="oracle LM")
        for (src, target), g in sweep.sort_values("noise").groupby(["source", "target"], sort=False):
            lines.append(f"- **Noise**, {src}, {target.replace('_', ' ')}: word identity "
                         + ", ".join(f"{e:.2f} at noise {n:g}" for n, e in zip(g["noise"], g["estimate"]))
                         + _plant_by_noise(g) + ".")
    if signed is not None and source in signed.index:
        s = signed.loc[source]
        lines.append(f"- **Signed** {source}: per-TR Spearman {_ci(s.loc['per_tr'])}, word identity "
                     f"{_ci(s.loc['word_identity'])} (magnitudes: {per_tr['estimate']:.2f} and {wi['estimate']:.2f}).")
    return "\n".join(lines)
