"""The masking check (the paper's Appendix C): replace the most important words, see what breaks.

For each attributed TR, the words of its important-word set at a small threshold (the paper: the
top 1 % of the attribution) are replaced by words drawn at random from the stimulus vocabulary,
and both targets are evaluated again on the altered window:

- NWP: the cross-entropy of the next word (:func:`evaluate_windows`);
- BA: the head's predicted activity, scored as the Pearson r over the attributed TRs between
  predicted and measured activity of each voxel (:func:`masked_scores`).

Three maskings are compared: the top BA words, the top NWP words, and (the control the paper's
reviewers asked for) the same number of words chosen at random in the window.

:func:`masking_sweep` makes the comparison fair (the science review's point 9): a fixed number of
words ``k`` (1, 2, 4, 8 and the paper's :data:`PAPER_K`) instead of a threshold that is one word
in a short window; masking by sign as well as by magnitude (:func:`top_k_words`); a random
control at the same window positions as the masked words (:func:`same_position_words`) besides
the control anywhere in the window; both targets under every masking (BA's top words against
NWP, NWP's top words against BA); and bootstrap CIs that resample blocks of TRs whose windows do
not overlap (:func:`tr_blocks`, :func:`bootstrap_counts`).
"""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .analysis import important_words
from .attribution import tr_features_from_states, tr_window, voxel_mask
from .attribution.batch import TokenizedText, collate, make_instance
from .attribution.head import head_for
from .attribution.settings import NWP_READOUTS
from .attribution.targets import final_norm, full_forward, nwp_loss
from .lm import layer_states, word_token_spans
from .metrics import pearson_r
from .schema import Dataset


def _word_tokens(word, tokenizer, first=False):
    """Token ids of ``word`` as it is tokenized inside running text (after a space unless ``first``)."""
    words = [word] if first else ["x", word]
    ids, spans = word_token_spans(words, tokenizer)
    return ids[spans[-1, 0]:spans[-1, 1]]


def _substituted(text, replacements, tokenizer):
    """The tokenized stimulus with some words swapped for others, re-tokenized in place.

    Equals tokenizing the altered text from scratch for tokenizers that pre-split at spaces
    (byte-level BPE, SentencePiece metaspace; tested), at the cost of the replaced words only.

    Parameters
    ----------
    text : brainattr.attribution.TokenizedText
    replacements : dict of int -> str
        Stimulus word index -> new word.
    tokenizer : transformers.PreTrainedTokenizerFast

    Returns
    -------
    A copy of ``text`` with new ``token_ids`` and ``spans``.
    """
    if not replacements:
        return text
    segments, spans, prev, offset = [], text.spans.copy(), 0, 0
    for i in sorted(int(k) for k in replacements):
        a, b = text.spans[i]
        new = _word_tokens(str(replacements[i]), tokenizer, first=i == 0)
        segments += [text.token_ids[prev:a], new]
        prev = b
        spans[i] = (a + offset, a + offset + len(new))
        delta = len(new) - (b - a)
        spans[i + 1:] += delta
        offset += delta
    segments.append(text.token_ids[prev:])
    out = copy.copy(text)
    out.token_ids, out.spans = np.concatenate(segments).astype(np.int64), spans
    return out


def evaluate_windows(lm, dataset, encoding, layer, trs, context=80, pooling="last", replacements=None,
                     batch_size=8, progress=False, nwp_readout="final"):
    """BA prediction and NWP cross-entropy of each TR's window, optionally with words replaced.

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
    dataset : brainattr.schema.Dataset
    encoding : brainattr.encoding.EncodingResult
        Fitted on ``layer``; each TR uses the fold that held it out.
    layer : int
    trs : array of int, shape (n_trs_sel,)
    context : int
    pooling : {"last", "mean"}
    replacements : dict of int -> dict of int -> str, optional
        Per TR, the words to replace in its window (stimulus word index -> new word).
    batch_size : int
    progress : bool
    nwp_readout : {"final", "logit_lens"}
        The whole model's next-word loss, or layer ``layer``'s read through the final norm and
        the LM head (as :class:`brainattr.attribution.AttributionSettings` ``nwp_readout``).

    Returns
    -------
    prediction : array of float64, shape (n_trs_sel, n_voxels)
        The head's predicted (z-scored) activity of every voxel.
    nwp_loss : array of float64, shape (n_trs_sel,)
        Mean cross-entropy over the next word's tokens (NaN at the end of the text).
    """
    trs = np.atleast_1d(np.asarray(trs, dtype=int))
    replacements = replacements or {}
    layer = lm.check_layer(int(layer))
    if nwp_readout not in NWP_READOUTS:
        raise ValueError(f"unknown NWP readout {nwp_readout!r}; use one of {NWP_READOUTS}.")
    device = next(lm.model.parameters()).device
    text = TokenizedText(lm, dataset.stimulus)
    instances = []
    for tr in trs:
        window = tr_window(dataset.stimulus, encoding, int(tr), context)
        if window is None:
            raise ValueError(f"TR {tr} has no word in its delay TRs; drop it.")
        altered = _substituted(text, replacements.get(int(tr), {}), lm.tokenizer)
        instances.append(make_instance(altered, window, pooling, with_next=window.next_word >= 0))
    prediction = np.zeros((trs.size, encoding.n_voxels))
    nwp = np.full(trs.size, np.nan)
    heads = {}
    for k in tqdm(range(0, trs.size, batch_size), desc="windows", disable=not progress, leave=False):
        chunk = instances[k:k + batch_size]
        batch = collate(chunk, lm.tokenizer.pad_token_id, device)
        with torch.no_grad():
            emb = lm.model.get_input_embeddings()(batch["ids"])
            if nwp_readout == "final":
                states, final = full_forward(lm.model, layer, emb, batch["mask"])
                loss = nwp_loss(lm.model, final, batch)
            else:                     # the logit lens: blocks 1..L only, read through the final norm
                states = layer_states(lm.model, [layer], inputs_embeds=emb, attention_mask=batch["mask"])[layer]
                loss = nwp_loss(lm.model, states, batch, norm=final_norm(lm.model))
            feats = tr_features_from_states(states, batch["pool"])
            for j, inst in enumerate(chunk):
                head = head_for(encoding, inst.window.tr, None, heads, device)
                prediction[k + j] = head(feats[j:j + 1], batch["present"][j:j + 1])[0].double().cpu().numpy()
                if inst.nwp_range[1] > inst.nwp_range[0]:
                    nwp[k + j] = float(loss[j])
    return prediction, nwp


def random_replacements(stimulus, selected, seed=0):
    """Random stimulus words for the selected words of each TR.

    Parameters
    ----------
    stimulus : brainattr.schema.Stimulus
    selected : dict of int -> array of int
        Per TR, the stimulus word indices to replace.
    seed : int

    Returns
    -------
    dict of int -> dict of int -> str
        Per TR, word index -> a word drawn uniformly from the stimulus vocabulary, never the word
        it replaces.
    """
    vocab = np.unique(stimulus.words)
    rng = np.random.default_rng(seed)
    out = {}
    for tr, idx in selected.items():
        rep = {}
        for i in np.asarray(idx, dtype=int):
            w = vocab[rng.integers(vocab.size)]
            while w == stimulus.words[i] and vocab.size > 1:
                w = vocab[rng.integers(vocab.size)]
            rep[int(i)] = str(w)
        out[int(tr)] = rep
    return out


def masked_words(table, threshold=0.01, how="abs"):
    """Per TR, the stimulus word indices of the important-word set at ``threshold``.

    Returns
    -------
    dict of int -> array of int
    """
    imp = important_words(table, [threshold], how)
    return {int(tr): g["word_index"].to_numpy() for tr, g in imp.groupby("tr")}


def random_words(table, sizes, seed=0):
    """Per TR, ``sizes[tr]`` window words chosen uniformly at random (the control masking).

    Parameters
    ----------
    table : pandas.DataFrame or datasets.Dataset
        An attribution table (gives each TR's window).
    sizes : dict of int -> int
    seed : int

    Returns
    -------
    dict of int -> array of int
    """
    df = table.to_pandas() if hasattr(table, "to_pandas") else table
    rng = np.random.default_rng(seed)
    return {int(tr): rng.choice(g["word_index"].to_numpy(), size=min(int(sizes[tr]), len(g)), replace=False)
            for tr, g in df.groupby("tr") if int(tr) in sizes}


def masked_scores(prediction, dataset, encoding, trs, voxels):
    """Held-out r over the attributed TRs of each voxel, from predicted activity.

    Parameters
    ----------
    prediction : array of shape (n_trs_sel, n_voxels)
    dataset : brainattr.schema.Dataset
    encoding : brainattr.encoding.EncodingResult
    trs : array of int, shape (n_trs_sel,)
    voxels : array of bool, shape (n_voxels,)

    Returns
    -------
    r : array of float64, shape (n_selected_voxels,)
    """
    measured = np.stack([encoding.measured_tr(int(t), dataset.responses) for t in trs])
    return pearson_r(measured[:, voxels], prediction[:, voxels])



# ---------------------------------------------------------------- the fair sweep (review point 9)
#: The paper's "top 1 %" as a number of words: 1 % of a 640-word context plus the ~16 words of the
#: delay TRs is 6.6 words, so 6 or 7 words; the sweep takes 7.
PAPER_K = 7
#: How words are ranked: by magnitude, by the largest positive or by the most negative attribution.
SIGNS = ("abs", "pos", "neg")
#: What each masking is scored on: NWP's cross-entropy, BA's r over the TRs (mean over voxels), and
#: BA's attribution target itself, the squared error of each TR (mean over voxels).
TARGETS = ("nwp", "ba_r", "ba_mse")
#: The masked word sets of :func:`masking_sweep`.
SELECTIONS = ("top BA", "top NWP", "random same positions", "random anywhere")
_SWEEP_COLUMNS = ("masked_task", "selection", "sign", "k", "target", "n_masked", "baseline", "value", "effect",
                  "ci_low", "ci_high", "relative", "rel_ci_low", "rel_ci_high", "n_trs", "n_blocks")


def _frame(table):
    return table.to_pandas() if hasattr(table, "to_pandas") else table


def top_k_words(table, k, sign="abs"):
    """Per TR, the ``k`` words with the strongest attribution of ``sign``, strongest first.

    Parameters
    ----------
    table : pandas.DataFrame or datasets.Dataset
        An attribution table.
    k : int
    sign : {"abs", "pos", "neg"}
        ``"abs"``: the largest ``|attribution|`` (as :func:`masked_words`); ``"pos"``: the largest
        positive attributions; ``"neg"``: the most negative ones. A TR with fewer than ``k`` words
        of that sign gives fewer (a zero attribution has no sign). Ties go to the more recent word,
        as in :func:`brainattr.analysis.important_words`.

    Returns
    -------
    dict of int -> array of int
        Stimulus word indices, in rank order.
    """
    if sign not in SIGNS:
        raise ValueError(f"unknown sign {sign!r}; use one of {SIGNS}.")
    df = _frame(table)
    score = {"abs": df["attribution"].abs(), "pos": df["attribution"], "neg": -df["attribution"]}[sign]
    df = df.assign(_score=score.to_numpy())
    if sign != "abs":
        df = df[df["_score"] > 0]
    df = df.sort_values(["tr", "_score", "position", "word_index"], ascending=[True, False, True, True],
                        kind="stable")
    out = {int(tr): g["word_index"].to_numpy()[:int(k)] for tr, g in df.groupby("tr")}
    return {int(tr): out.get(int(tr), np.zeros(0, dtype=np.int64)) for tr in np.unique(_frame(table)["tr"])}


def _windows(table):
    """Per TR, the end (one past the most recent word) and the number of words of its window."""
    g = _frame(table).groupby("tr")["word_index"]
    return {int(tr): (int(hi) + 1, int(n)) for tr, hi, n in zip(g.max().index, g.max(), g.size())}


def _derangement(n, rng):
    """A random permutation of ``range(n)`` without fixed points (the identity for ``n < 2``)."""
    if n < 2:
        return np.arange(n)
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


def same_position_words(table, selected, seed=0):
    """The position-matched control: per TR, the words at the window positions another TR's
    selection holds.

    Masking "random words at the masked words' positions" of the same TR would mask the same words
    again, so the control keeps the positions and changes the TR: the TRs are paired by a random
    derangement, and TR ``i`` masks the words at the positions (0 = most recent word) that the
    selection of its partner ``j`` masks in ``j``'s window. Over all TRs the masked positions are
    then the selection's own, position for position (when every partner has as many words as TR
    ``i`` and they fit in ``i``'s window), while the words are no longer the ones its attribution
    picked. A masking that hurts through position alone hurts as much under this control. A
    partner with fewer words, or positions beyond ``i``'s window, is completed with positions
    drawn from those the selection holds in other TRs (then any free position).

    Parameters
    ----------
    table : pandas.DataFrame or datasets.Dataset
        The attribution table the selection came from (gives each TR's window).
    selected : dict of int -> array of int
        Per TR, the masked stimulus word indices, in rank order (:func:`top_k_words`).
    seed : int or sequence of int

    Returns
    -------
    dict of int -> array of int
        Per TR, as many stimulus word indices as ``selected[tr]``.
    """
    windows = _windows(table)
    trs = sorted(int(t) for t in selected)
    pos = {tr: windows[tr][0] - 1 - np.asarray(selected[tr], dtype=np.int64) for tr in trs}
    rng = np.random.default_rng(seed)
    partner = _derangement(len(trs), rng)
    pooled = np.concatenate([pos[tr] for tr in trs]) if trs else np.zeros(0, np.int64)
    out = {}
    for i, tr in enumerate(trs):
        end, n_words = windows[tr]
        want = len(pos[tr])
        take = [int(p) for p in pos[trs[partner[i]]][:want] if p < n_words]
        for p in list(rng.permutation(pooled)) + list(rng.permutation(n_words)):
            if len(take) >= want:
                break
            if p < n_words and int(p) not in take:
                take.append(int(p))
        out[tr] = end - 1 - np.asarray(take, dtype=np.int64)
    return out


def tr_blocks(table):
    """Blocks of TRs for the bootstrap: a block starts at the first TR whose window shares no word
    with the window of the block's first TR.

    So the first windows of two blocks never overlap, and TRs two blocks apart share no word
    (neighbouring blocks still may: the dependence a non-overlapping block bootstrap ignores).

    Returns
    -------
    pandas.Series
        Block number (0, 1, ...) of each TR, indexed by TR in increasing order.
    """
    w = _frame(table).groupby("tr")["word_index"].agg(["min", "max"]).sort_index()
    blocks, block, end = [], -1, -np.inf
    for lo, hi in zip(w["min"], w["max"]):
        if lo > end:
            block, end = block + 1, hi
        blocks.append(block)
    return pd.Series(blocks, index=w.index.astype(int), name="block")


def bootstrap_counts(blocks, n_boot=1000, seed=0):
    """How often each TR enters each bootstrap resample of whole blocks.

    Parameters
    ----------
    blocks : array of int, shape (n_trs,)
        Block of each TR (:func:`tr_blocks`; ``arange(n_trs)`` resamples single TRs).
    n_boot : int
    seed : int

    Returns
    -------
    counts : array of float64, shape (1 + n_boot, n_trs)
        Row 0 is the sample itself (all ones); rows 1.. draw as many blocks as there are, with
        replacement.
    """
    _, inv = np.unique(np.asarray(blocks), return_inverse=True)
    n_blocks = int(inv.max()) + 1 if inv.size else 0
    rng = np.random.default_rng(seed)
    picks = rng.integers(n_blocks, size=(int(n_boot), n_blocks))
    per_block = np.zeros((int(n_boot), n_blocks))
    np.add.at(per_block, (np.arange(int(n_boot))[:, None], picks), 1.0)
    return np.vstack([np.ones(inv.size), per_block[:, inv]])


def _weighted_mean(counts, x):
    return counts @ x / counts.sum(1)


def _weighted_r(counts, measured, prediction):
    """Mean over voxels of the Pearson r over TRs, for each row of TR weights, shape (n_rows,)."""
    measured, prediction = measured - measured.mean(0), prediction - prediction.mean(0)  # (moments lose less)
    n = counts.sum(1)[:, None]
    mx, my = counts @ measured / n, counts @ prediction / n
    cov = counts @ (measured * prediction) / n - mx * my
    vx = np.maximum(counts @ measured ** 2 / n - mx ** 2, 0.0)
    vy = np.maximum(counts @ prediction ** 2 / n - my ** 2, 0.0)
    den = np.sqrt(vx * vy)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 1e-12, cov / np.where(den > 1e-12, den, 1.0), 0.0)
    return r.mean(1)


def masking_plans(ba_table, nwp_table, ks=(1, 2, 4, PAPER_K, 8), signs=SIGNS, tasks=("ba", "nwp"), n_draws=1,
                  seed=0):
    """The word sets :func:`masking_sweep` masks: per (masked task, selection, sign, k), one per draw.

    The top words of a task (:func:`top_k_words`), the words at the same positions in other TRs'
    windows (:func:`same_position_words`), and as many words anywhere in the window
    (:func:`random_words`). A draw's replacement words come from a seed of (``seed``, ``k``, draw)
    alone, so a top set and its controls get the same stream of random words, and the control
    anywhere is one draw for every task and sign with the same sizes.

    Returns
    -------
    list of dict
        ``masked_task``, ``selection``, ``sign``, ``k`` and ``draws``: a list of (selected words
        per TR, replacement seed) pairs.
    """
    tables = {"ba": _frame(ba_table), "nwp": _frame(nwp_table)}
    plans = []
    for t, task in enumerate(tasks):
        for s, sign in enumerate(signs):
            for k in (int(k) for k in ks):
                top = top_k_words(tables[task], k, sign)
                sizes = {tr: len(v) for tr, v in top.items()}
                seeds = [(int(seed), k, d) for d in range(int(n_draws))]    # replacement words of each draw
                draws = {f"top {task.upper()}": [(top, r) for r in seeds],
                         "random same positions": [(same_position_words(tables[task], top, seed=(*r, t, s)), r)
                                                   for r in seeds],
                         "random anywhere": [(random_words(tables[task], sizes, seed=r), r) for r in seeds]}
                plans += [dict(masked_task=task, selection=name, sign=sign, k=k, draws=d) for name, d in draws.items()]
    return plans


def _plan_key(selected, rep_seed):
    return tuple((int(tr), tuple(sorted(int(i) for i in idx))) for tr, idx in sorted(selected.items())), rep_seed


def _per_tr_scores(lm, dataset, encoding, layer, trs, vox, reps, how):
    """One evaluation of every TR: NWP's cross-entropy, the squared error, the predicted activity."""
    pred, loss = evaluate_windows(lm, dataset, encoding, layer, trs, how["context"], how["pooling"], reps,
                                  how["batch_size"], how["progress"], how["nwp_readout"])
    measured = np.stack([encoding.measured_tr(int(t), dataset.responses) for t in trs])[:, vox]
    return dict(nwp=loss, ba_mse=((pred[:, vox] - measured) ** 2).mean(1), prediction=pred[:, vox])


def _statistic(target, evaluations, counts, measured):
    """A target's value under each row of TR weights, averaged over draws, shape (1 + n_boot,)."""
    if target == "ba_r":
        return np.mean([_weighted_r(counts, measured, e["prediction"]) for e in evaluations], axis=0)
    return np.mean([_weighted_mean(counts, e[target]) for e in evaluations], axis=0)


def _effect_row(target, plan_stat, none_stat, ci):
    """Point effect (row 0) and percentile CIs (rows 1..) of the change and of the relative change."""
    effect = plan_stat - none_stat
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = effect / np.abs(none_stat)
    q = [50 * (1 - ci), 50 * (1 + ci)]
    lo, hi = np.percentile(effect[1:], q) if effect.size > 1 else (np.nan, np.nan)
    rlo, rhi = np.nanpercentile(relative[1:], q) if relative.size > 1 else (np.nan, np.nan)
    return dict(target=target, baseline=none_stat[0], value=plan_stat[0], effect=effect[0], ci_low=lo, ci_high=hi,
                relative=relative[0], rel_ci_low=rlo, rel_ci_high=rhi)


def masking_sweep(lm, dataset, encoding, layer, ba_table, nwp_table, ks=(1, 2, 4, PAPER_K, 8), signs=SIGNS,
                  tasks=("ba", "nwp"), context=80, pooling="last", voxel_set="language", nwp_readout="final",
                  n_draws=1, n_boot=1000, ci=0.95, blocks="windows", seed=0, batch_size=8, return_per_tr=False,
                  progress=False):
    """The fair masking check: top-k words by sign, matched random controls, both targets, bootstrap CIs.

    For each masked task (whose attribution ranks the words), sign and ``k``, the top words, the
    words at the same positions of other TRs (:func:`same_position_words`) and as many words
    anywhere in the window are replaced with random stimulus words (:func:`random_replacements`),
    and every target is evaluated on the altered windows (:func:`evaluate_windows`): NWP's
    cross-entropy (``"nwp"``), BA's r over the TRs averaged over ``voxel_set`` (``"ba_r"``, the
    paper's score) and BA's squared error per TR averaged over ``voxel_set`` (``"ba_mse"``, the
    target BA's attribution explains). So the cross-task bars (BA's top words scored on NWP, NWP's
    top words on BA) come with the same controls. A positive attribution of either target (an
    error) marks a word that raises it: masking the top ``"pos"`` words should lower it, the top
    ``"neg"`` words raise it.

    CIs: percentile bootstrap over TRs, paired (every masking is resampled with the same TRs as
    the unmasked windows), resampling blocks of TRs whose windows do not overlap (:func:`tr_blocks`;
    ``blocks="trs"``: single TRs, which overstates the precision when windows share words). Random
    draws (``n_draws``) are averaged before the bootstrap, so the CIs do not include the spread
    between draws. Word sets with equal content are evaluated once.

    Parameters
    ----------
    lm, dataset, encoding, layer, context, pooling
        As for :func:`evaluate_windows`; ``context`` and ``pooling`` those of the tables.
    ba_table, nwp_table : pandas.DataFrame or datasets.Dataset
        Attribution tables of the two tasks (GxI) for the same TRs; only their common TRs are used.
    ks : sequence of int
        Words masked per TR (:data:`PAPER_K`: the paper's top 1 % of a 640-word window).
    signs : sequence of {"abs", "pos", "neg"}
    tasks : sequence of {"ba", "nwp"}
        Whose attribution ranks the masked words.
    voxel_set : str or array of bool
        Voxels of ``"ba_r"`` and ``"ba_mse"`` (:func:`brainattr.attribution.voxel_mask`).
    nwp_readout : {"final", "logit_lens"}
        How the ``"nwp"`` target is read out (that of ``nwp_table``).
    n_draws : int
        Random draws of every masking (its replacement words; the controls' positions and words).
    n_boot : int
    ci : float
        Coverage of the intervals.
    blocks : {"windows", "trs"} or mapping of int -> int
        ``"windows"``: :func:`tr_blocks`; ``"trs"``: single TRs; or a block id per TR, e.g.
        ``dict(zip(trs, brainattr.stats.independent_blocks(trs, ba_table)))`` (strictly independent
        blocks); TRs with id -1 or no id are left out of every estimate.
    seed : int
    batch_size : int
    return_per_tr : bool
        Also return each evaluation's per-TR scores.
    progress : bool

    Returns
    -------
    summary : pandas.DataFrame
        One row per (masked_task, selection, sign, k, target): ``n_masked`` (mean words replaced
        per TR), ``baseline`` (unmasked), ``value`` (masked), ``effect`` = value - baseline with
        ``ci_low``, ``ci_high``, ``relative`` = effect / |baseline| with ``rel_ci_low``,
        ``rel_ci_high`` (CIs NaN with fewer than 2 blocks), ``n_trs``, ``n_blocks``. The
        ``"random anywhere"`` rows of one ``k`` are usually the same draw for every masked task
        and sign.
    per_tr : pandas.DataFrame, only with ``return_per_tr``
        One row per (masked_task, selection, sign, k, draw, tr): ``nwp``, ``ba_mse``.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError("dataset must be a brainattr.schema.Dataset.")
    if isinstance(blocks, str) and blocks not in ("windows", "trs"):
        raise ValueError(f"unknown blocks {blocks!r}; use 'windows', 'trs' or a block id per TR.")
    ba, nwp = _frame(ba_table), _frame(nwp_table)
    trs = np.intersect1d(ba["tr"].unique(), nwp["tr"].unique()).astype(int)
    if not isinstance(blocks, str):
        given = pd.Series(blocks, dtype=float).reindex(trs).fillna(-1).astype(int)
        trs, block_ids = trs[given.to_numpy() >= 0], given[given >= 0].to_numpy()
    ba, nwp = ba[ba["tr"].isin(trs)], nwp[nwp["tr"].isin(trs)]
    vox = voxel_mask(voxel_set, dataset, encoding)
    how = dict(context=context, pooling=pooling, batch_size=batch_size, progress=progress, nwp_readout=nwp_readout)
    cache = {}

    def scores(selected, rep_seed):
        key = _plan_key(selected, rep_seed)
        if key not in cache:
            reps = random_replacements(dataset.stimulus, selected, seed=list(rep_seed)) if selected else {}
            cache[key] = _per_tr_scores(lm, dataset, encoding, layer, trs, vox, reps, how)
        return cache[key]

    if isinstance(blocks, str):
        block_ids = tr_blocks(ba).loc[trs].to_numpy() if blocks == "windows" else np.arange(trs.size)
    n_blocks = len(np.unique(block_ids))
    counts = bootstrap_counts(block_ids, n_boot if n_blocks > 1 else 0, seed)     # one block: no CI (NaN)
    measured = np.stack([encoding.measured_tr(int(t), dataset.responses) for t in trs])[:, vox]
    none = [scores({}, ())]
    rows, per_tr = [], []
    for plan in tqdm(masking_plans(ba, nwp, ks, signs, tasks, n_draws, seed), desc="maskings",
                     disable=not progress, leave=False):
        evaluations = [scores(sel, rep_seed) for sel, rep_seed in plan["draws"]]
        info = {k: plan[k] for k in ("masked_task", "selection", "sign", "k")}
        n_masked = np.mean([np.mean([len(sel.get(int(t), ())) for t in trs]) for sel, _ in plan["draws"]])
        for target in TARGETS:
            row = _effect_row(target, _statistic(target, evaluations, counts, measured),
                              _statistic(target, none, counts, measured), ci)
            rows.append(dict(info, n_masked=n_masked, n_trs=int(trs.size), n_blocks=n_blocks,
                             **row))
        if return_per_tr:
            per_tr += [pd.DataFrame(dict(info, draw=d, tr=trs, nwp=e["nwp"], ba_mse=e["ba_mse"]))
                       for d, e in enumerate(evaluations)]
    summary = pd.DataFrame(rows, columns=list(_SWEEP_COLUMNS))
    if return_per_tr:
        per_tr.insert(0, pd.DataFrame(dict(masked_task="none", selection="none", sign="none", k=0, draw=0, tr=trs,
                                           nwp=none[0]["nwp"], ba_mse=none[0]["ba_mse"])))
        return summary, pd.concat(per_tr, ignore_index=True)
    return summary


__all__ = ["evaluate_windows", "random_replacements", "masked_words", "random_words", "masked_scores",
           "PAPER_K", "SIGNS", "TARGETS", "SELECTIONS", "top_k_words", "same_position_words",
           "tr_blocks", "bootstrap_counts", "masking_plans", "masking_sweep"]
