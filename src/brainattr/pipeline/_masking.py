"""Chapter 7: the fair masking sweep, at 80 and at 640 words."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..attribution import AttributionSettings, evenly_spaced
from ..cache import array_hash, atomic_path, cache_dir, cache_key, stage_timer
from ..encoding import encode_subjects
from ..lm import special_prefix
from ._tables import condition_tables

#: Bump when :func:`masking_effects` returns something else for the same inputs: stored summaries are then
#: recomputed (they are keyed by it).
MASKING_FORMAT = 1


# --------------------------------------------------------------------------------------------
# Chapter 7: the fair masking sweep
# --------------------------------------------------------------------------------------------
def masking_effects(lm, dataset, encoding, layer, ba_table, nwp_table, trs, ks=(1, 2, 4, 7, 8), signed_ks=(7,),
                    context=80, pooling="last", voxel_set="language", n_boot=1000, min_blocks=2, seed=0,
                    progress=False, tr_features="average", cache=True):
    """Chapter 7's masking check: :func:`brainattr.masking.masking_sweep` by magnitude at every ``k``, by sign at a few.

    Masking by magnitude (``"abs"``) runs for every ``k`` of ``ks``; masking the most positive and
    the most negative words (``"pos"``, ``"neg"``) only for ``signed_ks``, which keeps the number
    of maskings (the cost) down: about ``1 + 5 len(ks) + 10 len(signed_ks)`` per subject, each
    re-running only the tokens from its first masked word on
    (:func:`brainattr.masking.evaluate_variants`). The bootstrap resamples blocks of TRs
    (:func:`brainattr.masking.tr_blocks`: a block starts at the first TR whose window shares no
    word with the block's first TR), so no masked TR is left out; TRs farther apart than a
    window, as in the book's default, are each a block of their own.

    Parameters
    ----------
    lm, layer, context, pooling, voxel_set, seed
        As for :func:`brainattr.masking.masking_sweep`.
    dataset, encoding : one subject's, or lists of several subjects' (one encoding per dataset)
    ba_table : pandas.DataFrame, or a list of them (one per dataset)
        The subjects' GxI tables of BA at the layer.
    nwp_table : pandas.DataFrame
        The GxI table of NWP (the same for every subject).
    trs : array of int
        The TRs masked (a subset of the tables' TRs).
    ks, signed_ks : sequence of int or float
        Words masked per TR, by magnitude and by sign; a float in (0, 1) is a share of each
        window's words (:data:`brainattr.masking.PAPER_SHARE`: the paper's top 1 %).
    n_boot, min_blocks : int
        Bootstrap resamples; fewer blocks than ``min_blocks`` give no CI.
    progress : bool
    tr_features : {"average", "lanczos"}
        How the encoding models' features pool words into TRs (the tables'
        ``AttributionSettings.tr_features``): the masked windows are pooled the same way.
    cache : bool
        Read the summary from the cache when the same masking was run before, and store it when
        computed (``<cache>/masking/<key>.parquet``, written atomically). The key holds the model,
        its start token, the stimulus, ``layer``, ``trs``, every option above, and per subject
        the responses, the encoding model and the tables' scores, so any change of what is masked
        or scored computes it again. This is how the sweep's masking job hands its result to
        chapter 7.

    Returns
    -------
    pandas.DataFrame
        :func:`brainattr.masking.masking_sweep`'s summary, the rows of both sweeps (with several
        subjects, means over them).
    """
    from .. import masking

    trs = np.asarray(sorted(int(t) for t in trs))
    several = isinstance(ba_table, (list, tuple))
    ba = [t[t["tr"].isin(trs)] for t in (ba_table if several else [ba_table])]
    nwp = nwp_table[nwp_table["tr"].isin(trs)]
    kw = dict(context=context, pooling=pooling, voxel_set=voxel_set, n_boot=n_boot, blocks="windows",
              min_blocks=min_blocks, seed=seed, progress=progress, tr_features=tr_features)
    path = None
    if cache:
        datasets, encodings = (dataset, encoding) if several else ([dataset], [encoding])
        options = dict(kw, progress=None, ks=[float(k) for k in ks], signed_ks=[float(k) for k in signed_ks],
                       voxel_set=voxel_set if isinstance(voxel_set, str) else array_hash(voxel_set))
        path = cache_dir("masking") / f"{_masking_key(lm, datasets, encodings, layer, ba, nwp, trs, options)}.parquet"
        if path.exists():
            return pd.read_parquet(path)
    ba = ba if several else ba[0]
    with stage_timer("masking", model=lm.name, layer=int(layer), trs=int(trs.size)):
        parts = [masking.masking_sweep(lm, dataset, encoding, layer, ba, nwp, ks=list(ks), signs=("abs",), **kw)]
        if len(signed_ks):
            parts.append(masking.masking_sweep(lm, dataset, encoding, layer, ba, nwp, ks=list(signed_ks),
                                               signs=("pos", "neg"), **kw))
    summary = pd.concat(parts, ignore_index=True)
    if path is not None:
        with atomic_path(path) as tmp:
            summary.to_parquet(tmp, index=False)
    return summary


def _scores_hash(table):
    """A hash of an attribution table's scores, whatever the order of its rows."""
    t = table.sort_values(["tr", "position"])
    return array_hash(t["tr"].to_numpy(np.int64), t["word_index"].to_numpy(np.int64),
                      t["attribution"].to_numpy(np.float64))


def _masking_key(lm, datasets, encodings, layer, ba_tables, nwp_table, trs, options):
    """The cache key of one masking sweep (see :func:`masking_effects`' ``cache``)."""
    subjects = [dict(responses=array_hash(d.responses), ba=_scores_hash(t),
                     encoding=array_hash(e.weights, e.intercepts, e.feature_means, e.feature_stds,
                                         e.response_means, e.response_stds))
                for d, e, t in zip(datasets, encodings, ba_tables)]
    return cache_key(format=MASKING_FORMAT, model=lm.name, prefix=special_prefix(lm.tokenizer),
                     stimulus=datasets[0].stimulus.fingerprint, layer=int(layer), trs=[int(t) for t in trs],
                     nwp=_scores_hash(nwp_table), subjects=subjects, **options)


def masking_at_context(lm, dataset, context=640, stride=256, n_trs=12, layer=None, share=0.01, signed=True,
                       pooling="last", voxel_set="language", inner_folds=5, n_boot=1000, min_blocks=5, seed=0,
                       progress=False, fold=None, tr_features="average", layer_step=None, mask_trs=None):
    """Chapter 7's masking at a long context (the paper's 640 words): the top ``share`` of each window.

    The encoding model and the GxI tables are those of chapter 8's context control: the same call
    (:func:`condition_tables` of one subject with ``context``, ``stride``, ``n_trs`` held-out TRs
    of ``fold``, ``tr_features`` and the model's middle layer), hence the same cache entries, so
    whichever chapter runs first computes them and the other reads them. Then
    :func:`masking_effects` masks the top ``share`` of each window's words (``ceil(share x
    words)``: 7 of a full 640-word window with its delay words), by magnitude and, with
    ``signed``, by sign, with the position-matched and the anywhere controls and both targets.

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
    dataset : brainattr.schema.Dataset
        One subject.
    context, stride : int
        Words before the delay TRs; the feature extraction's step (as chapter 8's ``alt_context``,
        ``alt_stride``).
    n_trs : int or None
        Evenly spaced held-out TRs of ``fold`` (chapter 8's ``n_trs``).
    mask_trs : int or None
        Of those, this many evenly spaced ones are masked (None: all). A masking of a 640-word
        window re-runs most of it (one of the NWP's top words is usually far back), about 2 s on
        2 CPU cores, and each TR takes about 4 of them.
    layer, layer_step : int or None
        Default: the middle layer of the ``layer_step`` grid, as :func:`condition_tables` (chapter 8 passes the same).
    share : float
        Of each window's words, masked (0.01: the paper's top 1 %).
    signed : bool
        Also mask the most positive and the most negative words.
    pooling, voxel_set, inner_folds, n_boot, seed, progress
        As for :func:`condition_tables` and :func:`masking_effects`.
    min_blocks : int
        Fewer independent stretches of text than this give no CI (NaN), hence no verdict. The
        12 TRs of one fold, a stretch of about 1,300 words of the built-in text, fall in about 2
        with 640-word windows; 6 or 12 TRs spread over every fold (``fold=None``) in 6.
    fold : int or None
        Whose held-out TRs (:func:`brainattr.attribution.held_out_trs`): None, every fold's (the
        book's default); 0, 1, ...: one fold's (as chapter 8's ``fold``, so its tables are reused).
    tr_features : {"average", "lanczos"}
        How word features become TR features, for the encoding model, the tables and the masked
        windows (as the book's ``tr_features``).

    Returns
    -------
    summary : pandas.DataFrame
        :func:`masking_effects`' summary (``share`` filled, ``k`` the count of a full window).
    tables : pandas.DataFrame
        :func:`condition_tables`' GxI tables of the condition.
    cost : dict
        :func:`condition_tables`' cost (``encoding_s``, ``attribution_s``: near zero when read from
        the cache) plus ``masking_s`` and ``n_trs``.
    """
    settings = AttributionSettings(pooling=pooling, voxel_set=voxel_set, tr_features=tr_features)
    tables, cost = condition_tables(lm, [dataset], int(context), layer=layer, layer_step=layer_step, stride=stride,
                                    settings=settings, n_trs=n_trs, inner_folds=inner_folds, fold=fold)
    layer = int(cost["layer"])
    enc, = encode_subjects(lm, [dataset], layer, context=int(context), pooling=pooling, stride=stride,
                           inner_folds=inner_folds, progress=False, tr_features=tr_features)
    g = tables[tables["method"] == "gxi"]
    start = time.perf_counter()
    trs = evenly_spaced(np.unique(g["tr"]), mask_trs)
    summary = masking_effects(lm, dataset, enc, layer, g[g["task"] == "ba"], g[g["task"] == "nwp"], trs,
                              ks=[share], signed_ks=[share] if signed else [], context=int(context), pooling=pooling,
                              voxel_set=voxel_set, n_boot=n_boot, min_blocks=min_blocks, seed=seed, progress=progress,
                              tr_features=tr_features)
    cost = dict(cost, masking_s=time.perf_counter() - start, n_trs=int(trs.size))
    return summary, tables, cost


def _masking_rows(summary, k=None):
    """The rows by magnitude at ``k`` of a masking summary, indexed (masked_task, selection, target), and ``k``."""
    from .. import masking

    s = summary[summary["sign"] == "abs"]
    share = s["share"] if "share" in s else pd.Series(np.nan, index=s.index)
    if k is None:
        shares = share.dropna().unique()
        if len(shares) == 1:
            k = float(shares[0])
        else:
            k = masking.PAPER_K if masking.PAPER_K in set(s["k"]) else int(s["k"].max())
    s = s[share == k] if masking.is_share(k) else s[(s["k"] == k) & share.isna()]
    if s.empty:
        raise ValueError(f"the masking summary has no rows by magnitude at k = {k}; pass one of its k or shares.")
    return s.set_index(["masked_task", "selection", "target"]), k


def masking_verdict_rows(summary, claim_ids=("masking-nwp-ce", "masking-ba-r"), k=None, label=""):
    """Chapter 7's rows for :func:`verdict_table`: masking each task's top words by magnitude, against the paper.

    NWP: the cross-entropy after masking the top NWP words over the unmasked one (a ratio; the
    paper: more than doubles); BA: the % change of BA's r after masking the top BA words (the
    paper: about -100 %). The null of each is the same change after masking the same positions
    (what masking that many words there does anyway).

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`masking_effects`' summary.
    claim_ids : (str, str)
        The NWP and the BA claim of :mod:`brainattr.claims`.
    k : int, float or None
        The ``k`` compared (a float in (0, 1): the rows of that ``share``); None: the summary's
        only share if it has one, else :data:`brainattr.masking.PAPER_K` if swept, else the
        largest ``k``.
    label : str
        Put before each row's label (e.g. ``"640 words: "``).

    Returns
    -------
    list of tuple
        ``(claim_id, estimate, null, label)`` for :func:`verdict_table`.
    """
    from .. import masking

    s, k = _masking_rows(summary, k)
    what = f"top {100 * k:g} %" if masking.is_share(k) else f"top {k}"
    rows = []
    for claim_id, task, target in zip(claim_ids, ("nwp", "ba"), ("nwp", "ba_r")):
        top = s.loc[(task, f"top {task.upper()}", target)]
        ctrl = s.loc[(task, "random same positions", target)]
        if target == "nwp":         # a ratio to the unmasked loss
            est = {"estimate": 1 + top.relative, "ci_low": 1 + top.rel_ci_low, "ci_high": 1 + top.rel_ci_high}
            null, text = 1 + ctrl.relative, "NWP loss / unmasked"
        else:                       # a % change
            est = {"estimate": 100 * top.relative, "ci_low": 100 * top.rel_ci_low, "ci_high": 100 * top.rel_ci_high}
            null, text = 100 * ctrl.relative, "% change of BA r"
        rows.append((claim_id, dict(est, n_blocks=top.n_blocks), null,
                     f"{label}{what} {task.upper()} words: {text}"))
    return rows


def masking_control_gaps(summary, k=None):
    """Whether each task's top words do more than random words at the same positions, at one ``k``.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`masking_effects`' summary.
    k : int, float or None
        As for :func:`masking_verdict_rows`.

    Returns
    -------
    pandas.DataFrame
        One row per masked task, scored on its own target (NWP: cross-entropy, up = worse; BA: r,
        down = worse): ``k``, ``top`` (% change after masking its top words) with ``top_ci_low``,
        ``top_ci_high``, ``control`` (% change after masking the same positions), ``n_blocks`` and
        ``beyond_control``: True when the top words' CI lies wholly on the harmful side of the
        control's estimate, False when it does not, None without a CI.
    """
    s, k = _masking_rows(summary, k)
    rows = []
    for task, target in (("nwp", "nwp"), ("ba", "ba_r")):
        top, ctrl = s.loc[(task, f"top {task.upper()}", target)], s.loc[(task, "random same positions", target)]
        beyond = None
        if np.isfinite(top.rel_ci_low) and np.isfinite(top.rel_ci_high):
            beyond = bool(top.rel_ci_low > ctrl.relative if target == "nwp" else top.rel_ci_high < ctrl.relative)
        rows.append(dict(task=task.upper(), target=target, k=k, top=100 * top.relative,
                         top_ci_low=100 * top.rel_ci_low, top_ci_high=100 * top.rel_ci_high,
                         control=100 * ctrl.relative, n_blocks=int(top.n_blocks), beyond_control=beyond))
    return pd.DataFrame(rows)
