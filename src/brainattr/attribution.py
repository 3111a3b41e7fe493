"""Input attribution for brain alignment (BA) and next-word prediction (NWP).

For one target TR ``t`` (paper, Sec. 4; Fig. 1):

- **the window**: the words of the delay TRs ``t-4 ... t-1`` plus ``context`` words before the
  first of them (:func:`tr_window`). Position 0 is the most recent word (the last word of the
  latest delay TR that has words); positions count back from it.
- **BA target**: the frozen LM truncated after layer L (deeper blocks are never run for BA alone),
  word pooling and per-TR averaging exactly as in :mod:`brainattr.features`, the fold's ridge
  weights split per delay with the run's feature z-scoring and the intercept folded in
  (:class:`BAHead`), giving the predicted voxel activity of TR ``t``; the scalar explained is the
  mean squared error against the measured (z-scored) activity over a voxel set
  (:func:`voxel_mask`).
- **NWP target**: for the same window, the mean cross-entropy over the sub-word tokens of the word
  that follows, with teacher forcing; the LM head is applied only at those positions.
- **methods**: Gradient x Input (``"gxi"``, Shrikumar et al. 2016) and Integrated Gradients
  (``"ig"``, Sundararajan et al. 2017; Gauss-Legendre steps as in captum, all-zero embedding
  baseline by default, see below) on the input embeddings of the window's tokens, summed over the embedding dimension and
  over each word's tokens. Special tokens (BOS) and the teacher-forced tokens of the next word
  are held fixed: they are not attributed.

Each TR is attributed with the encoding model of the fold that held it out
(:meth:`brainattr.encoding.EncodingResult.fold_of`). When both tasks are asked for, one forward
pass of the full model serves both: layer L is captured with a hook and two backward passes
share the graph.

IG baselines: ``"zero"`` (the paper's all-zero embedding), ``"pad"`` or ``"eos"`` (the padding
or end-of-text token's embedding at every window position). With the zero baseline, in models whose blocks start with
RMSNorm and that have no BOS token (SmolLM2), the targets swing wildly for tiny ``alpha`` along the
path and jump at ``alpha = 0``, so the attributions do not sum to ``F(x) - F(0)``
(:func:`ig_completeness`, :func:`ig_path`) and more steps do not fix it. A token baseline's path stays
among embeddings of ordinary size, and the BA target along it is smooth enough for completeness.
The NWP target is not smooth along either path (the cross-entropy of one word jumps by nats
between nearby ``alpha``), so NWP's IG is incomplete at any affordable number of steps. GxI, the
paper's primary method, is unaffected.

Results are tidy tables (one row per TR and word), stored with the ``datasets`` library
(:func:`attribute`): written in atomic parts, so a killed run resumes where it stopped.
"""
from __future__ import annotations

import contextlib
import re
import shutil
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .features import check_context_fits, layer_states, special_prefix, word_token_spans
from .io import array_hash, atomic_dir, cache_dir, cache_key, log_stage
from .models import decoder_layers

#: Attribution targets: brain alignment (MSE of the encoding head) and next-word prediction.
TASKS = ("ba", "nwp")
#: Attribution methods: Gradient x Input and Integrated Gradients.
METHODS = ("gxi", "ig")
#: Columns of an attribution table, in order.
COLUMNS = ("tr", "fold", "word_index", "position", "word", "attribution", "abs_attribution", "target",
           "baseline_target")
#: Version of the stored table layout; bump when columns or semantics change.
TABLE_VERSION = 1


# --------------------------------------------------------------------------------------------
# Which TRs, which words, which voxels
# --------------------------------------------------------------------------------------------
def held_out_trs(encoding, fold=0, n=None):
    """Stimulus TRs held out by one fold, optionally an evenly spaced subset.

    Parameters
    ----------
    encoding : brainattr.encoding.EncodingResult
    fold : int or None
        Fold whose test TRs are returned; None for the held-out TRs of every fold.
    n : int or None
        Keep ``n`` TRs evenly spaced over the fold's test TRs (deterministic); None keeps all.

    Returns
    -------
    trs : array of int, shape (n_selected,)
    """
    if fold is None:
        trs = np.sort(np.concatenate([np.asarray(t) for t in encoding.test_trs]))
    else:
        if not 0 <= int(fold) < len(encoding.test_trs):
            raise ValueError(f"fold {fold} does not exist; the encoding model has {len(encoding.test_trs)} folds.")
        trs = np.asarray(encoding.test_trs[int(fold)])
    return evenly_spaced(trs, n)


def evenly_spaced(trs, n=None):
    """``n`` evenly spaced elements of ``trs`` (deterministic, first and last kept), array of int.

    Parameters
    ----------
    trs : array of int, shape (n_trs,)
    n : int or None
        None (or ``n >= n_trs``) keeps all.
    """
    trs = np.asarray(trs)
    if n is not None and n < trs.size:
        trs = trs[np.unique(np.linspace(0, trs.size - 1, max(int(n), 1)).round().astype(int))]
    return trs.astype(int)


@dataclass(frozen=True)
class Window:
    """The words an attribution instance reads.

    Attributes
    ----------
    tr : int
        Target TR (stimulus index).
    fold : int
        Encoding fold that held ``tr`` out.
    start, end : int
        Window ``[start, end)`` in stimulus word indices; ``end - 1`` is the most recent word
        (position 0).
    next_word : int
        Index of the word that follows (the NWP target), -1 at the end of the text.
    source_trs : tuple of int
        Stimulus TR of each delay (``t - delays[d]``), -1 before the run's start.
    """

    tr: int
    fold: int
    start: int
    end: int
    next_word: int
    source_trs: tuple


def tr_window(stimulus, encoding, tr, context):
    """The attribution window of one target TR.

    Parameters
    ----------
    stimulus : brainattr.dataset.Stimulus
    encoding : brainattr.encoding.EncodingResult
    tr : int
        Target TR; must be held out by some fold (not trimmed).
    context : int
        Words read before the first word of the delay TRs.

    Returns
    -------
    Window or None
        None when none of the delay TRs showed a word (nothing to attribute).
    """
    fold = encoding.fold_of(int(tr))  # raises for trimmed TRs: no fold held them out
    src = tuple(int(s) for s in encoding.source_trs(int(tr)))
    word_trs = stimulus.word_trs
    words = np.flatnonzero(np.isin(word_trs, [s for s in src if s >= 0]))
    if words.size == 0:
        return None
    start = max(0, int(words[0]) - int(context))
    end = int(words[-1]) + 1
    next_word = end if end < stimulus.n_words else -1
    return Window(tr=int(tr), fold=fold, start=start, end=end, next_word=next_word, source_trs=src)


def voxel_mask(voxel_set, dataset, encoding=None):
    """Voxels whose squared error the BA target sums.

    Parameters
    ----------
    voxel_set : str or array of bool
        ``"language"`` (the language-ROI voxels, default elsewhere), ``"all"``, ``"r>X"`` (voxels
        whose held-out encoding r, ``encoding.scores``, exceeds X, e.g. ``"r>0.1"``), or a boolean
        mask of shape (n_voxels,).
    dataset : brainattr.dataset.Dataset
    encoding : brainattr.encoding.EncodingResult, optional
        Needed for ``"r>X"``.

    Returns
    -------
    mask : array of bool, shape (n_voxels,)
    """
    n = dataset.responses.shape[1]
    if isinstance(voxel_set, str):
        match = re.fullmatch(r"\s*r\s*>\s*([-+0-9.eE]+)\s*", voxel_set)
        if voxel_set == "language":
            mask = np.asarray(dataset.voxel_is_language, dtype=bool)
        elif voxel_set == "all":
            mask = np.ones(n, dtype=bool)
        elif match:
            if encoding is None:
                raise ValueError(f"voxel_set {voxel_set!r} needs the encoding result (its held-out scores).")
            mask = np.asarray(encoding.scores) > float(match.group(1))
        else:
            raise ValueError(f"unknown voxel_set {voxel_set!r}; use 'language', 'all', 'r>X' (e.g. 'r>0.1') "
                             "or a boolean mask over voxels.")
    else:
        mask = np.asarray(voxel_set)
        if mask.dtype != bool or mask.shape != (n,):
            raise ValueError(f"a voxel mask must be boolean of shape ({n},), got {mask.dtype} {mask.shape}.")
    if not mask.any():
        raise ValueError(f"voxel_set {voxel_set if isinstance(voxel_set, str) else 'mask'} selects no voxel; "
                         "lower the r threshold or use 'all'.")
    return mask


# --------------------------------------------------------------------------------------------
# The BA head
# --------------------------------------------------------------------------------------------
class BAHead(torch.nn.Module):
    """Predicted voxel activity of one TR from the averaged word states of its delay TRs.

    ``y = sum_d present_d * ((x_d - mean) / std) @ W_d + b``: the fold's ridge weights split
    per delay (the functions g_d of the paper), applied to per-run z-scored features, exactly as
    :meth:`brainattr.encoding.EncodingResult.predict_tr` does. A delay before the run's start has
    ``present_d = False`` (its block of the delayed design is zero); a delay TR without words
    has ``x_d = 0``, as in :func:`brainattr.features.tr_average`.

    Parameters
    ----------
    weights : array of shape (n_delays, n_features, n_voxels)
    intercept : array of shape (n_voxels,)
    mean, std : arrays of shape (n_features,)
        Feature z-scoring of the TR's run.
    """

    def __init__(self, weights, intercept, mean, std):
        super().__init__()
        self.register_buffer("weights", torch.as_tensor(np.asarray(weights), dtype=torch.float32))
        self.register_buffer("intercept", torch.as_tensor(np.asarray(intercept), dtype=torch.float32))
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.asarray(std), dtype=torch.float32))

    @classmethod
    def from_encoding(cls, encoding, tr, voxels=None, fold=None):
        """The head predicting TR ``tr`` for the voxels in ``voxels`` (bool mask or None).

        ``fold`` defaults to the fold that held ``tr`` out (the model that never saw it).
        """
        h = encoding.head(int(tr), fold)
        sel = slice(None) if voxels is None else np.asarray(voxels, dtype=bool)
        return cls(h["weights"][:, :, sel], h["intercept"][sel], h["mean"], h["std"])

    def forward(self, tr_features, present):
        """Predict.

        Parameters
        ----------
        tr_features : tensor of shape (batch, n_delays, n_features)
            Un-normalised per-TR averaged word states of the delay TRs.
        present : tensor of bool, shape (batch, n_delays)

        Returns
        -------
        prediction : tensor of shape (batch, n_voxels)
        """
        dtype = tr_features.dtype
        z = (tr_features - self.mean.to(dtype)) / self.std.to(dtype)
        z = z * present.to(dtype)[..., None]
        return torch.einsum("bdh,dhv->bv", z, self.weights.to(dtype)) + self.intercept.to(dtype)


def tr_features_from_states(states, pool):
    """Per-delay-TR averaged word vectors from token states.

    Parameters
    ----------
    states : tensor of shape (batch, n_tokens, hidden)
    pool : tensor of shape (batch, n_delays, n_tokens)
        Averaging weights: for ``pooling="last"``, ``1 / n_words`` at each word's last token; for
        ``"mean"``, ``1 / (n_words * n_tokens_of_word)`` on each of its tokens (see
        :func:`brainattr.features.tr_average` and ``_pool``).

    Returns
    -------
    tr_features : tensor of shape (batch, n_delays, hidden)
    """
    return torch.einsum("bdt,bth->bdh", pool.to(states.dtype), states)


def _head_for(encoding, tr, voxels, heads, device):
    """The BA head of TR ``tr``, built once per (fold, run) in ``heads``: only the fold's weights
    and the run's feature z-scoring differ between TRs."""
    key = (encoding.fold_of(int(tr)), int(encoding.tr_runs[int(tr)]))
    if key not in heads:
        heads[key] = BAHead.from_encoding(encoding, int(tr), voxels).to(device)
    return heads[key]


# --------------------------------------------------------------------------------------------
# Instances and batches
# --------------------------------------------------------------------------------------------
@dataclass
class _Instance:
    window: Window
    ids: np.ndarray            # (n,) prefix + window tokens + next-word tokens
    attr_range: tuple          # [p0, p1) positions of the window's tokens in ids
    token_word: np.ndarray     # (p1 - p0,) stimulus word of each window token
    pool: np.ndarray           # (n_delays, p1) averaging weights over positions
    present: np.ndarray        # (n_delays,) bool
    nwp_range: tuple           # [q0, q1) positions of the next word's tokens (empty if none)


class _Text:
    """Tokenization of the whole stimulus, done once (same slicing as feature extraction)."""

    def __init__(self, lm, stimulus):
        self.token_ids, self.spans = word_token_spans(stimulus.words, lm.tokenizer)
        self.prefix = np.asarray(special_prefix(lm.tokenizer), dtype=np.int64)
        self.word_trs = stimulus.word_trs


def _instance(text, window, pooling, with_next):
    spans, prefix = text.spans, text.prefix
    t0, t1 = spans[window.start, 0], spans[window.end - 1, 1]
    nxt = window.next_word if with_next else -1
    tail = text.token_ids[spans[nxt, 0]:spans[nxt, 1]] if nxt >= 0 else np.zeros(0, np.int64)
    ids = np.concatenate([prefix, text.token_ids[t0:t1], tail]).astype(np.int64)
    p0 = len(prefix)
    p1 = p0 + (t1 - t0)
    token_word = np.searchsorted(spans[:, 1], np.arange(t0, t1), side="right")
    pool = np.zeros((len(window.source_trs), p1), dtype=np.float32)
    for d, src in enumerate(window.source_trs):
        if src < 0:
            continue
        words = np.flatnonzero(text.word_trs == src)
        for w in words:
            a, b = spans[w] - t0 + p0
            if pooling == "last":
                pool[d, b - 1] += 1.0 / len(words)
            elif pooling == "mean":
                pool[d, a:b] += 1.0 / (len(words) * (b - a))
            else:
                raise ValueError(f"unknown pooling {pooling!r}; use 'last' or 'mean'.")
    present = np.array([s >= 0 for s in window.source_trs])
    return _Instance(window, ids, (p0, p1), token_word, pool, present, (p1, p1 + len(tail)))


def _collate(instances, pad_id, device):
    """Right-padded tensors for a batch (right padding keeps position ids as in feature extraction)."""
    n = max(len(i.ids) for i in instances)
    B, D = len(instances), len(instances[0].present)
    ids = torch.full((B, n), int(pad_id), dtype=torch.long)
    mask = torch.zeros((B, n), dtype=torch.long)
    attr = torch.zeros((B, n), dtype=torch.bool)
    pool = torch.zeros((B, D, n))
    present = torch.zeros((B, D), dtype=torch.bool)
    k = max(max(i.nwp_range[1] - i.nwp_range[0] for i in instances), 1)
    nwp_pos = torch.zeros((B, k), dtype=torch.long)
    nwp_labels = torch.zeros((B, k), dtype=torch.long)
    nwp_mask = torch.zeros((B, k))
    for b, inst in enumerate(instances):
        ids[b, :len(inst.ids)] = torch.as_tensor(inst.ids)
        mask[b, :len(inst.ids)] = 1
        attr[b, inst.attr_range[0]:inst.attr_range[1]] = True
        pool[b, :, :inst.pool.shape[1]] = torch.as_tensor(inst.pool)
        present[b] = torch.as_tensor(inst.present)
        q0, q1 = inst.nwp_range
        if q1 > q0:
            # teacher forcing: the logits at position p predict token p + 1
            nwp_pos[b, :q1 - q0] = torch.arange(q0 - 1, q1 - 1)
            nwp_labels[b, :q1 - q0] = torch.as_tensor(inst.ids[q0:q1])
            nwp_mask[b, :q1 - q0] = 1.0
    out = dict(ids=ids, mask=mask, attr=attr, pool=pool, present=present, nwp_pos=nwp_pos,
               nwp_labels=nwp_labels, nwp_mask=nwp_mask)
    return {k: v.to(device) for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------
def _full_forward(model, layer, embeds, mask):
    """Run the whole base model once; return (layer-L states, final normed states).

    Layer L is taken exactly as :func:`brainattr.features.layer_states` takes it (input of block 1
    for L = 0, else the output of block L; tuple or tensor outputs). Keyword arguments a family
    does not take are not passed (see ``features._forward_kwargs``).
    """
    from .features import _base_model, _block_input, _block_output, _forward_kwargs

    blocks = decoder_layers(model)
    captured = {}
    if layer == 0:
        def hook(module, args, kwargs):
            captured["x"] = _block_input(args, kwargs)
        handle = blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
    else:
        def hook(module, args, output):
            captured["x"] = _block_output(output)
        handle = blocks[layer - 1].register_forward_hook(hook)
    base = _base_model(model)
    try:
        out = base(**_forward_kwargs(base, inputs_embeds=embeds, attention_mask=mask, use_cache=False))
    finally:
        handle.remove()
    final = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    return captured["x"], final


def _nwp_loss(model, final, batch):
    """Mean cross-entropy over the next word's tokens, LM head only at those positions, (batch,)."""
    idx = batch["nwp_pos"][..., None].expand(-1, -1, final.shape[-1])
    h = torch.gather(final, 1, idx)                       # (B, K, H)
    logits = model.get_output_embeddings()(h)
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # a stable log-softmax over the vocabulary
    logp = torch.log_softmax(logits, dim=-1)
    nll = -torch.gather(logp, 2, batch["nwp_labels"][..., None])[..., 0]
    m = batch["nwp_mask"]
    return (nll * m).sum(1) / m.sum(1).clamp(min=1.0)


def _targets(lm, layer, head, embeds, batch, measured, tasks):
    """Per-instance scalar targets for the requested tasks.

    Returns
    -------
    dict task -> tensor of shape (batch,)
    """
    out = {}
    if "nwp" in tasks:
        states, final = _full_forward(lm.model, layer, embeds, batch["mask"])
        out["nwp"] = _nwp_loss(lm.model, final, batch)
    elif "ba" in tasks:
        states = layer_states(lm.model, [layer], inputs_embeds=embeds, attention_mask=batch["mask"])[layer]
    if "ba" in tasks:
        pred = head(tr_features_from_states(states, batch["pool"]), batch["present"])
        out["ba"] = ((pred - measured.to(pred.dtype)) ** 2).mean(1)
    return {t: out[t] for t in tasks}


def _grads(targets, embeds):
    """Gradient of each task's summed targets w.r.t. ``embeds`` (instances are independent)."""
    tasks = list(targets)
    grads = {}
    for k, t in enumerate(tasks):
        grads[t], = torch.autograd.grad(targets[t].sum(), embeds, retain_graph=k < len(tasks) - 1)
    return grads


def _gxi(lm, layer, head, batch, measured, tasks):
    emb = lm.model.get_input_embeddings()(batch["ids"]).detach().requires_grad_(True)
    targets = _targets(lm, layer, head, emb, batch, measured, tasks)
    grads = _grads(targets, emb)
    m = batch["attr"][..., None].to(emb.dtype)
    attrs = {t: (grads[t] * emb.detach() * m).sum(-1) for t in tasks}  # (B, n) per token
    return attrs, {t: v.detach() for t, v in targets.items()}


def _ig_alphas(steps, method="gausslegendre"):
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters(method)
    return np.asarray(alphas(steps), dtype=np.float64), np.asarray(step_sizes(steps), dtype=np.float64)


IG_BASELINES = ("zero", "pad", "eos")


def _ig_baseline(lm, emb, attr, baseline):
    """IG's baseline input: ``emb`` with the attributed tokens (``attr``) replaced, same shape.

    ``"zero"`` is the all-zero embedding (the paper's); ``"pad"`` and ``"eos"`` put the embedding
    of the tokenizer's padding or end-of-text token at every attributed position. Tokens outside
    the window (BOS, the next word) keep their embeddings.

    Parameters
    ----------
    emb : tensor of shape (batch, n_tokens, hidden)
    attr : tensor of bool, shape (batch, n_tokens)
    baseline : {"zero", "pad", "eos"}
    """
    m = attr[..., None].to(emb.dtype)
    return emb * (1 - m) + _baseline_token(lm, emb, baseline) * m


def _baseline_token(lm, emb, baseline):
    """The embedding put at each attributed position, broadcastable to ``emb``."""
    if baseline == "zero":
        return torch.zeros((), dtype=emb.dtype, device=emb.device)
    if baseline not in IG_BASELINES:
        raise ValueError(f"unknown IG baseline {baseline!r}; use one of {IG_BASELINES}.")
    tok = lm.tokenizer
    token_id = tok.pad_token_id if baseline == "pad" else tok.eos_token_id
    if token_id is None:
        raise ValueError(f"{lm.name}'s tokenizer has no {baseline} token; use another ig_baseline "
                         f"({IG_BASELINES}).")
    # through the embedding module, not its weight: some (Gemma) scale rows by sqrt(hidden) there
    ids = torch.tensor([int(token_id)], device=emb.device)
    vec = lm.model.get_input_embeddings()(ids)[0].detach().to(emb.dtype)
    if not torch.any(vec != 0):
        warnings.warn(f"{lm.name}'s {baseline} token has an all-zero embedding (a padding row), so this "
                      "baseline is the zero baseline; try ig_baseline='eos'.", stacklevel=5)
    return vec


def _ig(lm, layer, head, batch, measured, tasks, steps, rows_per_pass, baseline="zero"):
    """Integrated Gradients from a baseline on the window's tokens, steps batched internally."""
    emb0 = lm.model.get_input_embeddings()(batch["ids"]).detach()
    base = _ig_baseline(lm, emb0, batch["attr"], baseline)
    moving = emb0 - base                                             # zero outside the window
    alphas, weights = _ig_alphas(steps)
    B = emb0.shape[0]
    total = {t: torch.zeros_like(emb0) for t in tasks}
    pairs = [(b, s) for b in range(B) for s in range(len(alphas))]
    for i in range(0, len(pairs), rows_per_pass):
        chunk = pairs[i:i + rows_per_pass]
        bi = torch.as_tensor([b for b, _ in chunk], device=emb0.device)
        a = torch.as_tensor([alphas[s] for _, s in chunk], dtype=emb0.dtype, device=emb0.device)[:, None, None]
        x = (base[bi] + a * moving[bi]).requires_grad_(True)
        sub = {k: v[bi] for k, v in batch.items()}
        targets = _targets(lm, layer, head, x, sub, measured[bi], tasks)
        grads = _grads(targets, x)
        w = torch.as_tensor([weights[s] for _, s in chunk], dtype=emb0.dtype, device=emb0.device)[:, None, None]
        for t in tasks:
            total[t].index_add_(0, bi, grads[t] * w)
    attrs = {t: (total[t] * moving).sum(-1) for t in tasks}
    # F(input) and F(baseline), for the completeness check (sum of attributions = their difference)
    with torch.no_grad():
        both = torch.cat([emb0, base])
        sub = {k: torch.cat([v, v]) for k, v in batch.items()}
        values = _targets(lm, layer, head, both, sub, torch.cat([measured, measured]), tasks)
    return attrs, {t: v[:B] for t, v in values.items()}, {t: v[B:] for t, v in values.items()}


# --------------------------------------------------------------------------------------------
# Computing attributions (no storage)
# --------------------------------------------------------------------------------------------
def _check_args(tasks, methods, pooling):
    for t in tasks:
        if t not in TASKS:
            raise ValueError(f"unknown task {t!r}; use one of {TASKS}.")
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; use one of {METHODS} (Gradient x Input, Integrated Gradients).")
    if pooling not in ("last", "mean"):
        raise ValueError(f"unknown pooling {pooling!r}; use 'last' or 'mean'.")


def _windows(stimulus, encoding, trs, context, fold=None):
    windows, skipped = [], []
    for tr in np.atleast_1d(np.asarray(trs, dtype=int)):
        if fold is not None and encoding.fold_of(int(tr)) != int(fold):
            raise ValueError(f"TR {tr} is not held out by fold {fold}; attribute it with fold "
                             f"{encoding.fold_of(int(tr))}, the one that never saw it.")
        w = tr_window(stimulus, encoding, tr, context)
        (skipped if w is None else windows).append(tr if w is None else w)
    if skipped:
        warnings.warn(f"{len(skipped)} TR(s) have no word in their delay TRs and are skipped (first: {skipped[0]}).",
                      stacklevel=3)
    return windows


def compute_attributions(lm, dataset, encoding, layer, trs, context=80, pooling="last", tasks=TASKS,
                         methods=("gxi",), voxel_set="language", ig_steps=20, batch_size=4, ig_rows=8,
                         progress=True, ig_baseline="zero"):
    """Attribute BA and/or NWP for the given TRs (in memory; see :func:`attribute` for stored runs).

    Parameters
    ----------
    lm : brainattr.models.LanguageModel
    dataset : brainattr.dataset.Dataset
        The subject: stimulus, responses and voxel labels.
    encoding : brainattr.encoding.EncodingResult
        Fitted on ``layer`` of ``lm`` with the same ``pooling`` (and ``context``) as here.
    layer : int
    trs : array of int, shape (n_trs_sel,)
        Held-out (kept) stimulus TRs; each uses the fold that held it out.
    context : int
        Words before the first word of the delay TRs.
    pooling : {"last", "mean"}
    tasks : sequence of {"ba", "nwp"}
    methods : sequence of {"gxi", "ig"}
    voxel_set : str or array of bool
        See :func:`voxel_mask`.
    ig_steps : int
        Integration steps of IG (paper: 20).
    batch_size : int
        TRs per forward pass (GxI), and TRs whose IG steps are chunked together.
    ig_rows : int
        Rows (TR x step) per IG forward pass: the memory knob of IG.
    progress : bool
    ig_baseline : {"zero", "pad", "eos"}
        IG's baseline on the window's tokens: the all-zero embedding (the paper's), or the
        embedding of the padding or end-of-text token (see the module notes).

    Returns
    -------
    tables : dict of (task, method) -> pandas.DataFrame
        Columns :data:`COLUMNS`: ``tr``, ``fold``, ``word_index`` (stimulus word), ``position``
        (0 = most recent word), ``word``, ``attribution`` (signed), ``abs_attribution``,
        ``target`` (the scalar explained, at the input), ``baseline_target`` (at the IG baseline;
        NaN for GxI).
    """
    tasks, methods = tuple(tasks), tuple(methods)
    _check_args(tasks, methods, pooling)
    layer = lm.check_layer(int(layer))
    stimulus = dataset.stimulus
    text = _Text(lm, stimulus)
    windows = _windows(stimulus, encoding, trs, context)
    vox = voxel_mask(voxel_set, dataset, encoding) if "ba" in tasks else None
    instances = [_instance(text, w, pooling, with_next="nwp" in tasks) for w in windows]
    if "nwp" in tasks:
        no_next = [i.window.tr for i in instances if i.nwp_range[1] == i.nwp_range[0]]
        if no_next:
            raise ValueError(f"TR(s) {no_next} have no following word (end of the text), so NWP is undefined; "
                             "drop them or attribute 'ba' only.")
    if instances:
        check_context_fits(lm, max(len(i.ids) for i in instances), context)
    device = next(lm.model.parameters()).device
    rows = {(t, m): [] for t in tasks for m in methods}

    # group by (fold, run): one head per group; similar lengths together (less padding)
    groups = {}
    for inst in instances:
        run = int(encoding.tr_runs[inst.window.tr])
        groups.setdefault((inst.window.fold, run), []).append(inst)
    batches = []
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda i: -len(i.ids))
        batches += [members[k:k + batch_size] for k in range(0, len(members), batch_size)]
    heads = {}
    seconds = dict.fromkeys(methods, 0.0)
    with tqdm(total=len(instances) * len(methods), desc="attribution", disable=not progress, leave=False) as bar:
        for batch_inst in batches:
            tr0 = batch_inst[0].window.tr
            head, measured = None, None
            if "ba" in tasks:
                head = _head_for(encoding, tr0, vox, heads, device)
                measured = torch.as_tensor(np.stack([encoding.measured_tr(i.window.tr, dataset.responses)[vox]
                                                     for i in batch_inst]), dtype=torch.float32, device=device)
            else:
                measured = torch.zeros((len(batch_inst), 1), device=device)
            batch = _collate(batch_inst, lm.tokenizer.pad_token_id, device)
            for method in methods:
                started = time.perf_counter()
                if method == "gxi":
                    attrs, values = _gxi(lm, layer, head, batch, measured, tasks)
                    base = {t: None for t in tasks}
                else:
                    attrs, values, base = _ig(lm, layer, head, batch, measured, tasks, int(ig_steps), int(ig_rows),
                                                  ig_baseline)
                seconds[method] += time.perf_counter() - started
                for t in tasks:
                    rows[(t, method)].append(_word_rows(batch_inst, attrs[t], values[t], base[t], stimulus))
                bar.update(len(batch_inst))
    for method in methods:
        if instances:
            log_stage("attribution", seconds[method], model=lm.name, layer=layer, method=method, tasks="+".join(tasks),
                      trs=len(instances), context=int(context), ig_steps=int(ig_steps) if method == "ig" else None)
    tables = {}
    for key, parts in rows.items():
        df = pd.concat(parts, ignore_index=True) if parts else _empty_table()
        tables[key] = df.sort_values(["tr", "word_index"], kind="stable").reset_index(drop=True)
    return tables


def _word_rows(instances, token_attr, values, base, stimulus):
    """Sum token attributions (batch, n) into one row per window word."""
    token_attr = token_attr.detach().double().cpu().numpy()
    values = values.detach().double().cpu().numpy()
    base = None if base is None else base.detach().double().cpu().numpy()
    frames = []
    for b, inst in enumerate(instances):
        w = inst.window
        p0, p1 = inst.attr_range
        per_word = np.zeros(w.end - w.start)
        np.add.at(per_word, inst.token_word - w.start, token_attr[b, p0:p1])
        idx = np.arange(w.start, w.end)
        frames.append(pd.DataFrame({
            "tr": np.full(idx.size, w.tr, dtype=np.int64), "fold": np.full(idx.size, w.fold, dtype=np.int64),
            "word_index": idx.astype(np.int64), "position": (w.end - 1 - idx).astype(np.int64),
            "word": stimulus.words[idx].astype(object), "attribution": per_word, "abs_attribution": np.abs(per_word),
            "target": np.full(idx.size, values[b]),
            "baseline_target": np.full(idx.size, np.nan if base is None else base[b])}))
    return pd.concat(frames, ignore_index=True)


def _empty_table():
    return pd.DataFrame({c: pd.Series(dtype=object if c == "word" else (np.float64 if "target" in c or "attrib" in c
                                                                          else np.int64)) for c in COLUMNS})


def predict_trs(lm, stimulus, encoding, layer, trs, context=80, pooling="last", batch_size=8):
    """The BA head's predicted activity of TRs (all voxels), from the LM run on each TR's window.

    Equals ``encoding.predict_tr(tr, features)`` when the features were extracted with every word
    seeing the same preceding words as in the window (e.g. a context reaching the text's start).

    Parameters
    ----------
    lm, stimulus, encoding, layer, trs, context, pooling
        As for :func:`compute_attributions`.
    batch_size : int

    Returns
    -------
    prediction : array of float64, shape (n_trs_sel, n_voxels)
    """
    layer = lm.check_layer(int(layer))
    text = _Text(lm, stimulus)
    trs = np.atleast_1d(np.asarray(trs, dtype=int))
    device = next(lm.model.parameters()).device
    out = np.zeros((trs.size, encoding.n_voxels))
    heads = {}
    for k in range(0, trs.size, batch_size):
        chunk = trs[k:k + batch_size]
        wins = [tr_window(stimulus, encoding, t, context) for t in chunk]
        if any(w is None for w in wins):
            raise ValueError("a TR has no word in its delay TRs; its prediction is the intercept alone.")
        insts = [_instance(text, w, pooling, with_next=False) for w in wins]
        batch = _collate(insts, lm.tokenizer.pad_token_id, device)
        with torch.no_grad():
            states = layer_states(lm.model, [layer], input_ids=batch["ids"], attention_mask=batch["mask"])[layer]
            feats = tr_features_from_states(states, batch["pool"])
            for j, t in enumerate(chunk):
                head = _head_for(encoding, t, None, heads, device)
                out[k + j] = head(feats[j:j + 1], batch["present"][j:j + 1])[0].double().cpu().numpy()
    return out


# --------------------------------------------------------------------------------------------
# Stored runs: one table per (dataset, subject, model, layer, context, task, method)
# --------------------------------------------------------------------------------------------
def table_path(dataset, model, layer, context, task, method, settings=""):
    """Folder of one stored attribution table.

    ``cache_dir("attributions")/<dataset>/<subject>/<model>/layer-LLL_ctx-C/<task>_<method>[-<settings>]``;
    ``settings`` is a hash of everything else that changes the numbers (pooling, voxels,
    encoding weights, IG steps).
    """
    safe = lambda s: re.sub(r"[^A-Za-z0-9._-]+", "--", str(s))  # noqa: E731 - HF ids hold '/'
    leaf = f"{task}_{method}" + (f"-{settings}" if settings else "")
    return cache_dir("attributions", safe(dataset.name), safe(dataset.subject), safe(model),
                     f"layer-{int(layer):03d}_ctx-{int(context)}") / leaf


@contextlib.contextmanager
def _quiet_datasets():
    import datasets

    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield datasets
    finally:
        if was:
            datasets.enable_progress_bars()


def _write(path, df):
    """Write ``df`` as a ``datasets`` Arrow folder, atomically (renamed into place when complete)."""
    with _quiet_datasets() as datasets:
        ds = datasets.Dataset.from_pandas(df.reset_index(drop=True), preserve_index=False)
        with atomic_dir(path) as tmp:
            ds.save_to_disk(str(tmp))


def _read(path):
    with _quiet_datasets() as datasets:
        return datasets.load_from_disk(str(path))


def _parts(folder):
    parts = folder / "parts"
    if not parts.exists():
        return []
    # hidden '.part-*.tmp' folders are writes a killed run never finished: ignored, then cleaned
    for junk in parts.glob(".*.tmp"):
        shutil.rmtree(junk, ignore_errors=True)
    return sorted(p for p in parts.iterdir() if p.name.startswith("part-"))


def _done_trs(folder):
    done = set()
    if (folder / "table").exists():
        done |= set(np.unique(_read(folder / "table")["tr"]).tolist())
    for p in _parts(folder):
        done |= set(np.unique(_read(p)["tr"]).tolist())
    return done


def _consolidate(folder):
    """Merge finished parts into ``table`` (atomically), then drop the parts."""
    parts = _parts(folder)
    if not parts:
        return
    frames, seen = [], set()
    if (folder / "table").exists():
        frames.append(_read(folder / "table").to_pandas())
        seen = set(frames[0]["tr"].unique().tolist())
    for p in parts:
        df = _read(p).to_pandas()
        df = df[~df["tr"].isin(seen)]  # a part already merged before a kill: skip its rows
        seen |= set(df["tr"].unique().tolist())
        frames.append(df)
    merged = pd.concat(frames, ignore_index=True).sort_values(["tr", "word_index"], kind="stable")
    _write(folder / "table", merged)
    for p in parts:
        shutil.rmtree(p, ignore_errors=True)


def attribute(lm, dataset, encoding, layer, trs=None, context=80, pooling="last", tasks=TASKS, methods=("gxi",),
              voxel_set="language", ig_steps=20, fold=0, n_trs=None, batch_size=4, ig_rows=8, part_size=None,
              cache=True, progress=True, ig_baseline="zero"):
    """Attribute BA and NWP for held-out TRs, stored as tidy tables; resumes a killed run.

    Each (task, method) table lives in :func:`table_path`; the TRs are computed in parts of
    ``part_size`` TRs, each written atomically as soon as it is done, and merged into one table at
    the end. A run killed at any point leaves only complete parts (or the previous table); the next
    call computes only the TRs still missing.

    Parameters
    ----------
    lm, dataset, encoding, layer, context, pooling, tasks, methods, voxel_set, ig_steps, batch_size, ig_rows, ig_baseline
        See :func:`compute_attributions`. ``lm.name``, ``layer`` and ``context`` name the table.
    trs : array of int or None
        Stimulus TRs to attribute; default: the held-out TRs of ``fold``.
    fold : int or None
        Fold whose held-out TRs are used when ``trs`` is None (None: every fold).
    n_trs : int or None
        Keep ``n_trs`` evenly spaced TRs of those (see :func:`held_out_trs`).
    part_size : int or None
        TRs per stored part (default: ``4 * batch_size``).
    cache : bool
        False: compute in memory, store nothing.
    progress : bool

    Returns
    -------
    tables : dict of (task, method) -> datasets.Dataset
        Columns :data:`COLUMNS`, restricted to the requested TRs, sorted by TR and word. Use
        ``.to_pandas()`` for analysis and :func:`word_weights` for normalised scores.
    """
    tasks, methods = tuple(tasks), tuple(methods)
    _check_args(tasks, methods, pooling)
    if trs is None:
        trs = held_out_trs(encoding, fold, n_trs)
    trs = np.unique(np.atleast_1d(np.asarray(trs, dtype=int)))
    if not cache:
        tables = compute_attributions(lm, dataset, encoding, layer, trs, context, pooling, tasks, methods,
                                      voxel_set, ig_steps, batch_size, ig_rows, progress, ig_baseline)
        with _quiet_datasets() as datasets:
            return {k: datasets.Dataset.from_pandas(v, preserve_index=False) for k, v in tables.items()}

    vox = voxel_mask(voxel_set, dataset, encoding) if "ba" in tasks else None
    common = dict(version=TABLE_VERSION, stimulus=dataset.stimulus.fingerprint, hidden=lm.hidden_size,
                  n_layers=lm.n_layers)
    folders = {}
    for t in tasks:
        for m in methods:
            # the zero baseline keeps the key it had before baselines were selectable
            ig_params = ig_steps if ig_baseline == "zero" else (ig_steps, ig_baseline)
            fields = dict(common, method_params=ig_params if m == "ig" else None)
            if t == "ba":
                fields.update(pooling=pooling, voxels=array_hash(vox), responses=array_hash(dataset.responses),
                              encoding=array_hash(encoding.weights, encoding.intercepts, encoding.feature_means,
                                                    encoding.feature_stds, encoding.response_means,
                                                    encoding.response_stds))
            folders[(t, m)] = table_path(dataset, lm.name, layer, context, t, m, cache_key(**fields)[:10])

    done = {k: _done_trs(f) for k, f in folders.items()}
    part_size = int(part_size or 4 * batch_size)
    todo = [tr for tr in trs if any(tr not in d for d in done.values())]
    chunks = [todo[i:i + part_size] for i in range(0, len(todo), part_size)]
    for chunk in tqdm(chunks, desc="attribution parts", disable=not progress or len(chunks) < 2, leave=False):
        # compute only what some table still misses for this chunk
        need_t = tuple(t for t in tasks if any(any(tr not in done[(t, m)] for tr in chunk) for m in methods))
        need_m = tuple(m for m in methods if any(any(tr not in done[(t, m)] for tr in chunk) for t in tasks))
        result = compute_attributions(lm, dataset, encoding, layer, chunk, context, pooling, need_t, need_m,
                                      voxel_set, ig_steps, batch_size, ig_rows, progress=False,
                                      ig_baseline=ig_baseline)
        for (t, m), df in result.items():
            if any(tr not in done[(t, m)] for tr in chunk):
                _write(folders[(t, m)] / "parts" / f"part-{int(chunk[0]):06d}-{int(chunk[-1]):06d}", df)
                done[(t, m)] |= set(int(x) for x in chunk)
    out = {}
    for key, folder in folders.items():
        _consolidate(folder)
        table = _read(folder / "table") if (folder / "table").exists() else None
        if table is None:
            with _quiet_datasets() as datasets:
                table = datasets.Dataset.from_pandas(_empty_table(), preserve_index=False)
        tr_col = np.asarray(table["tr"])
        keep = np.isin(tr_col, trs)
        if not keep.all():
            # in memory: never write index/cache files into the stored table's folder
            table = table.select(np.flatnonzero(keep), keep_in_memory=True)
        out[key] = table
    return out


def attribute_subjects(lm, datasets, layers, context=80, pooling="last", methods=("gxi",), n_trs=48, fold=0,
                       trs=None, voxel_set="language", nwp_layer=None, inner_folds=5, ig_steps=20,
                       ig_baseline="zero", batch_size=4, progress=True):
    """BA for every subject and layer, NWP once; one long table (the input of every figure).

    The encoding models come from :func:`brainattr.encoding.encode_subjects` (cached) and every
    table from :func:`attribute` (stored; a rerun only reads). NWP does not depend on the subject
    or the layer: it is computed once, in the same forward pass as the first subject's BA at
    ``nwp_layer``, and its rows are repeated under every (subject, layer) so that each group
    holds both tasks.

    Parameters
    ----------
    lm : brainattr.models.LanguageModel
    datasets : list of brainattr.dataset.Dataset
        Subjects who read the same stimulus.
    layers : sequence of int
    context, pooling, voxel_set, ig_steps, ig_baseline, batch_size
        See :func:`compute_attributions`.
    methods : sequence of {"gxi", "ig"}
    n_trs, fold : int or None
        Evenly spaced held-out TRs of ``fold`` (see :func:`held_out_trs`), unless ``trs`` is given.
    trs : array of int, optional
    nwp_layer : int or None
        The layer whose pass also computes NWP (default: the middle one of ``layers``).
    inner_folds : int
        Of the encoding models (must match the fits to reuse them).
    progress : bool

    Returns
    -------
    pandas.DataFrame
        Columns ``subject``, ``layer``, ``task``, ``method`` and :data:`COLUMNS`.
    """
    from .encoding import encode_subjects

    layers = [int(layer) for layer in layers]
    nwp_layer = layers[len(layers) // 2] if nwp_layer is None else int(nwp_layer)
    order = [nwp_layer] + [layer for layer in layers if layer != nwp_layer]
    frames, nwp, encs = [], {}, {}
    steps = [(layer, k) for layer in order for k in range(len(datasets))]
    for layer, k in tqdm(steps, desc="attribution (subject x layer)", disable=not progress, leave=False):
        ds = datasets[k]
        if layer not in encs:  # all subjects' fits of a layer come (or are read) together
            encs = {layer: encode_subjects(lm, datasets, layer, context=context, pooling=pooling,
                                           inner_folds=inner_folds, progress=False)}
        enc = encs[layer][k]
        if trs is None:
            trs = held_out_trs(enc, fold, n_trs)
        tasks = ("ba", "nwp") if (layer == nwp_layer and k == 0) else ("ba",)
        out = attribute(lm, ds, enc, layer, trs=trs, context=context, pooling=pooling, tasks=tasks, methods=methods,
                        voxel_set=voxel_set, ig_steps=ig_steps, ig_baseline=ig_baseline, batch_size=batch_size,
                        progress=False)
        for (task, method), table in out.items():
            df = table.to_pandas()
            if task == "nwp":
                nwp[method] = df
            else:
                frames.append(df.assign(subject=ds.subject, layer=layer, task=task, method=method))
    for method, df in nwp.items():
        frames += [df.assign(subject=ds.subject, layer=layer, task="nwp", method=method)
                   for layer in layers for ds in datasets]
    keys = ["subject", "layer", "task", "method"]
    out = pd.concat(frames, ignore_index=True)
    return out[keys + list(COLUMNS)].sort_values(keys + ["tr", "word_index"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Helpers for the metric layer and notebooks
# --------------------------------------------------------------------------------------------
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


def ig_completeness(table):
    """IG completeness per TR: sum of attributions vs F(input) - F(baseline).

    Parameters
    ----------
    table : pandas.DataFrame or datasets.Dataset
        An IG table (its ``baseline_target`` is filled).

    Returns
    -------
    pandas.DataFrame indexed by ``tr`` with columns ``sum_attribution``, ``delta`` (F(x) - F(0)) and
    ``relative_error`` (``|sum - delta| / |delta|``).
    """
    df = table.to_pandas() if hasattr(table, "to_pandas") else table
    if df["baseline_target"].isna().all():
        raise ValueError("this table has no baseline values; completeness applies to IG tables only.")
    g = df.groupby("tr").agg(sum_attribution=("attribution", "sum"), target=("target", "first"),
                             baseline=("baseline_target", "first"))
    g["delta"] = g["target"] - g["baseline"]
    g["relative_error"] = (g["sum_attribution"] - g["delta"]).abs() / g["delta"].abs()
    return g[["sum_attribution", "delta", "relative_error"]]


def ig_path(lm, dataset, encoding, layer, tr, alphas, context=80, pooling="last", tasks=TASKS,
            voxel_set="language", ig_baseline="zero"):
    """The targets along IG's straight path from the baseline to the input, for one TR.

    A diagnostic for the completeness check: IG integrates the gradient along
    ``x(alpha) = b + alpha * (x - b)`` (window tokens only), so the sum of its attributions equals
    ``F(x(1)) - F(x(0))`` only if the quadrature resolves every rise and fall of ``F`` along it.

    Parameters
    ----------
    lm, dataset, encoding, layer, context, pooling, tasks, voxel_set
        As for :func:`compute_attributions`.
    tr : int
    alphas : sequence of float
        Points of the path, 0 = baseline, 1 = input.
    ig_baseline : {"zero", "pad", "eos"}

    Returns
    -------
    pandas.DataFrame with columns ``alpha`` and one per task.
    """
    tasks = tuple(tasks)
    _check_args(tasks, ("gxi",), pooling)
    layer = lm.check_layer(int(layer))
    window = tr_window(dataset.stimulus, encoding, int(tr), context)
    inst = _instance(_Text(lm, dataset.stimulus), window, pooling, with_next="nwp" in tasks)
    device = next(lm.model.parameters()).device
    batch = _collate([inst], lm.tokenizer.pad_token_id, device)
    head, measured = None, torch.zeros((1, 1), device=device)
    if "ba" in tasks:
        vox = voxel_mask(voxel_set, dataset, encoding)
        head = BAHead.from_encoding(encoding, tr, vox).to(device)
        measured = torch.as_tensor(encoding.measured_tr(tr, dataset.responses)[vox][None], dtype=torch.float32,
                                   device=device)
    alphas = np.asarray(alphas, dtype=np.float64)
    emb = lm.model.get_input_embeddings()(batch["ids"]).detach()
    base = _ig_baseline(lm, emb, batch["attr"], ig_baseline)
    rows = {t: [] for t in tasks}
    with torch.no_grad():
        for k in range(0, alphas.size, 8):
            a = torch.as_tensor(alphas[k:k + 8], dtype=emb.dtype, device=device)[:, None, None]
            x = base + a * (emb - base)
            rep = {key: v.expand(x.shape[0], *v.shape[1:]) for key, v in batch.items()}
            values = _targets(lm, layer, head, x, rep, measured.expand(x.shape[0], -1), tasks)
            for t in tasks:
                rows[t].append(values[t].double().cpu().numpy())
    return pd.DataFrame({"alpha": alphas, **{t: np.concatenate(rows[t]) for t in tasks}})


def recovery_scores(table, truth, how="abs", n_shuffles=20, seed=0):
    """Spearman correlation per TR between word attributions and planted per-word contributions.

    Parameters
    ----------
    table : pandas.DataFrame or datasets.Dataset
        An attribution table.
    truth : pandas.DataFrame
        ``brainattr.simulate.true_contributions_table`` output (columns ``tr``, ``word_index``,
        ``contribution``); words of the window missing from it count as contributing 0.
    how : str
        Normalisation of the attributions (:func:`word_weights`); Spearman only uses ranks, so
        ``abs`` and ``none`` differ only by the sign.
    n_shuffles : int
        Permutations of the attribution scores within each TR (the shuffled baseline).
    seed : int

    Returns
    -------
    pandas.DataFrame with one row per TR and columns ``tr``, ``spearman``, ``shuffled`` (mean over
    permutations), ``n_words``.
    """
    from scipy.stats import spearmanr

    df = word_weights(table, how)
    merged = df.merge(truth[["tr", "word_index", "contribution"]], on=["tr", "word_index"], how="left")
    merged["contribution"] = merged["contribution"].fillna(0.0).abs()
    rng = np.random.default_rng(seed)
    rows = []
    for tr, g in merged.groupby("tr"):
        a, c = g["weight"].to_numpy(), g["contribution"].to_numpy()
        if np.ptp(a) == 0 or np.ptp(c) == 0:
            continue
        rho = spearmanr(a, c).statistic
        shuf = np.mean([spearmanr(rng.permutation(a), c).statistic for _ in range(n_shuffles)])
        rows.append(dict(tr=int(tr), spearman=float(rho), shuffled=float(shuf), n_words=len(g)))
    return pd.DataFrame(rows, columns=["tr", "spearman", "shuffled", "n_words"])


def shade_words(words, weights, color=(214, 39, 40), max_weight=None):
    """HTML of words with a background whose opacity grows with each word's weight.

    Parameters
    ----------
    words : sequence of str, length n
    weights : array of float, shape (n,)
        Non-negative (e.g. normalised magnitudes, :func:`word_weights`).
    color : (int, int, int)
        RGB of the strongest shade.
    max_weight : float, optional
        Weight given full opacity (default: the largest weight).

    Returns
    -------
    str
    """
    import html

    weights = np.asarray(weights, dtype=float)
    top = float(max_weight if max_weight is not None else (weights.max() if weights.size else 1.0)) or 1.0
    r, g, b = color
    spans = [f'<span style="background: rgba({r},{g},{b},{min(max(w / top, 0.0), 1.0):.2f}); padding: 1px 2px; '
             f'border-radius: 3px" title="{w:.4f}">{html.escape(str(word))}</span>'
             for word, w in zip(words, weights)]
    return " ".join(spans)


def position_profile(table, how="abs", max_position=None):
    """Mean normalised attribution at each position (0 = most recent word), over TRs.

    Returns
    -------
    pandas.Series indexed by position
    """
    df = word_weights(table, how)
    if max_position is not None:
        df = df[df["position"] <= max_position]
    return df.groupby("position")["weight"].mean()


__all__ = ["TASKS", "METHODS", "COLUMNS", "held_out_trs", "evenly_spaced", "Window", "tr_window", "voxel_mask", "BAHead",
           "tr_features_from_states", "compute_attributions", "predict_trs", "attribute", "attribute_subjects",
           "table_path",
           "word_weights", "ig_completeness", "ig_path", "recovery_scores", "shade_words",
           "position_profile"]

