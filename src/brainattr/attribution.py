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
  baseline by default, see below) on the input embeddings of the window's tokens, summed over
  the embedding dimension and over each word's tokens. Special tokens (BOS) and the teacher-forced tokens of the next word
  are held fixed: they are not attributed.

Each TR is attributed with the encoding model of the fold that held it out
(:meth:`brainattr.encoding.EncodingResult.fold_of`). When both tasks are asked for, one forward
pass of the full model serves both: layer L is captured with a hook and two backward passes
share the graph. Subjects who read the same text share the LM's work too
(:func:`compute_attributions_subjects`, :func:`attribute_layer`): one forward pass feeds every
subject's head, and their gradients go back in one batched backward pass (one cotangent per
subject). The head and the loss run in at least float32 when the LM runs in bfloat16
(:func:`compare_precision` checks what bfloat16 changes). Batches hold ``batch_size`` TR windows
(``"auto"``: sized to a GPU's free memory, :func:`auto_batch_size`); a batch that runs out of
memory is split in two and retried, and a single window that does not fit raises a
``MemoryError`` saying which setting to lower.

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
from .models import decoder_layers, with_precision

#: Attribution targets: brain alignment (MSE of the encoding head) and next-word prediction.
TASKS = ("ba", "nwp")
#: Attribution methods: Gradient x Input and Integrated Gradients.
METHODS = ("gxi", "ig")
#: Columns of an attribution table, in order.
COLUMNS = ("tr", "fold", "word_index", "position", "word", "attribution", "abs_attribution", "target",
           "baseline_target")
#: Version of the stored table layout; bump when columns or semantics change.
TABLE_VERSION = 1
#: TRs per pass for ``batch_size="auto"`` on CPU, where larger batches do not pay (2 cores, measured).
CPU_BATCH_SIZE = 4


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


def _wide(x):
    """``x`` in float32 if it is in a 16-bit float type, else unchanged (float64 tests stay float64)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _targets(lm, layer, head, embeds, batch, measured, tasks):
    """Per-instance scalar targets for the requested tasks.

    ``head`` and ``measured`` are one subject's (a :class:`BAHead` and a tensor of shape
    ``(batch, n_voxels)``) or lists of several subjects' who read the same text: the LM runs once
    and each head reads the same layer-L states.

    Returns
    -------
    dict task -> tensor of shape (batch,), or (n_subjects, batch) for ``"ba"`` with lists
    """
    out = {}
    if "nwp" in tasks:
        states, final = _full_forward(lm.model, layer, embeds, batch["mask"])
        out["nwp"] = _nwp_loss(lm.model, final, batch)
    elif "ba" in tasks:
        states = layer_states(lm.model, [layer], inputs_embeds=embeds, attention_mask=batch["mask"])[layer]
    if "ba" in tasks:
        # the head and the MSE run in at least float32 whatever the LM's precision (sums over voxels)
        feats = tr_features_from_states(_wide(states), batch["pool"])
        several = isinstance(head, (list, tuple))
        mse = torch.stack([((h(feats, batch["present"]) - m.to(feats.dtype)) ** 2).mean(1)
                           for h, m in zip(head if several else [head], measured if several else [measured])])
        out["ba"] = mse if several else mse[0]
    return {t: out[t] for t in tasks}


#: Models (by name) whose backward pass could not be batched over subjects with ``vmap`` (custom
#: kernels without a batching rule): their subjects' gradients are taken one after the other.
_UNBATCHED_VJP = set()


def _is_oom(err):
    """Whether ``err`` is an out-of-memory error (CUDA, or a failed CPU allocation)."""
    text = str(err).lower()
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in text or "can't allocate" in text


def _subject_grads(targets, embeds, retain_graph, model_key=None):
    """Gradients of each subject's summed targets from one forward, (n_subjects, *embeds.shape).

    The subjects' vector-Jacobian products go through the LM's backward together
    (``is_grads_batched``: one batched backward pass instead of one per subject), or one after the
    other for a model where batching fails.
    """
    S = targets.shape[0]
    if S > 1 and model_key not in _UNBATCHED_VJP:
        cotangents = torch.eye(S, dtype=targets.dtype, device=targets.device)[:, :, None]
        try:
            grads, = torch.autograd.grad(targets, embeds, grad_outputs=cotangents.expand(S, S, targets.shape[1]),
                                         is_grads_batched=True, retain_graph=True)
            return grads
        except RuntimeError as err:
            if _is_oom(err):
                raise
            _UNBATCHED_VJP.add(model_key)
    return torch.stack([torch.autograd.grad(targets[s].sum(), embeds, retain_graph=retain_graph or s < S - 1)[0]
                        for s in range(S)])


def _grads(targets, embeds, model_key=None):
    """Gradient of each task's summed targets w.r.t. ``embeds`` (instances are independent).

    A target of shape (n_subjects, batch) gets a gradient of shape (n_subjects, *embeds.shape).
    """
    tasks = list(targets)
    grads = {}
    for k, t in enumerate(tasks):
        keep = k < len(tasks) - 1
        if targets[t].dim() == 2:
            grads[t] = _subject_grads(targets[t], embeds, keep, model_key)
        else:
            grads[t], = torch.autograd.grad(targets[t].sum(), embeds, retain_graph=keep)
    return grads


def _gxi(lm, layer, head, batch, measured, tasks):
    emb = lm.model.get_input_embeddings()(batch["ids"]).detach().requires_grad_(True)
    targets = _targets(lm, layer, head, emb, batch, measured, tasks)
    grads = _grads(targets, emb, lm.name)
    x = _wide(emb.detach()) * batch["attr"][..., None]
    attrs = {t: (_wide(grads[t]) * x).sum(-1) for t in tasks}  # (batch, n) or (n_subjects, batch, n)
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
        other = "pad" if baseline == "eos" else "eos"
        warnings.warn(f"{lm.name}'s {baseline} token has an all-zero embedding (a padding row), so this "
                      f"baseline is the zero baseline; try ig_baseline='{other}'.", stacklevel=5)
    return vec


def _rows_of(measured, idx):
    """Rows ``idx`` of one subject's measured activity, or of each subject's."""
    return [m[idx] for m in measured] if isinstance(measured, (list, tuple)) else measured[idx]


def _ig(lm, layer, head, batch, measured, tasks, steps, rows_per_pass, baseline="zero"):
    """Integrated Gradients from a baseline on the window's tokens, steps batched internally."""
    emb0 = lm.model.get_input_embeddings()(batch["ids"]).detach()
    base = _ig_baseline(lm, emb0, batch["attr"], baseline)
    moving = emb0 - base                                             # zero outside the window
    alphas, weights = _ig_alphas(steps)
    B = emb0.shape[0]
    total = {}
    pairs = [(b, s) for b in range(B) for s in range(len(alphas))]
    for i in range(0, len(pairs), rows_per_pass):
        chunk = pairs[i:i + rows_per_pass]
        bi = torch.as_tensor([b for b, _ in chunk], device=emb0.device)
        a = torch.as_tensor([alphas[s] for _, s in chunk], dtype=emb0.dtype, device=emb0.device)[:, None, None]
        x = (base[bi] + a * moving[bi]).requires_grad_(True)
        sub = {k: v[bi] for k, v in batch.items()}
        targets = _targets(lm, layer, head, x, sub, _rows_of(measured, bi), tasks)
        grads = _grads(targets, x, lm.name)
        w = torch.as_tensor([weights[s] for _, s in chunk], dtype=_wide(emb0).dtype, device=emb0.device)
        for t in tasks:
            g = _wide(grads[t]) * w[:, None, None]                   # (rows, n, H) or (S, rows, n, H)
            if t not in total:
                total[t] = torch.zeros((*g.shape[:-3], B, *g.shape[-2:]), dtype=g.dtype, device=g.device)
            total[t].index_add_(g.dim() - 3, bi, g)
    attrs = {t: (total[t] * _wide(moving)).sum(-1) for t in tasks}
    # F(input) and F(baseline), for the completeness check (sum of attributions = their difference)
    with torch.no_grad():
        both = torch.cat([emb0, base])
        sub = {k: torch.cat([v, v]) for k, v in batch.items()}
        twice = _rows_of(measured, torch.arange(B, device=emb0.device).repeat(2))
        values = _targets(lm, layer, head, both, sub, twice, tasks)
    return attrs, {t: v[..., :B] for t, v in values.items()}, {t: v[..., B:] for t, v in values.items()}


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
                         methods=("gxi",), voxel_set="language", ig_steps=20, batch_size="auto", ig_rows=8,
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
    batch_size : int or "auto"
        TRs per forward pass (GxI), and TRs whose IG steps are chunked together. ``"auto"``: 4 on
        CPU (larger batches do not pay there), on a GPU as many as :func:`auto_batch_size` estimates
        fit in its free memory. On running out of memory a batch is split in two and retried.
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
    return compute_attributions_subjects(lm, [dataset], [encoding], layer, trs, context, pooling, tasks, methods,
                                         voxel_set, ig_steps, batch_size, ig_rows, progress, ig_baseline)[0]


def _check_same_text(datasets, encodings):
    if len(datasets) != len(encodings) or not datasets:
        raise ValueError(f"give one encoding model per subject: {len(datasets)} datasets, {len(encodings)} "
                         "encodings.")
    first, enc0 = datasets[0], encodings[0]
    for ds, enc in zip(datasets[1:], encodings[1:]):
        same = (ds.stimulus.fingerprint == first.stimulus.fingerprint
                and np.array_equal(enc.tr_runs, enc0.tr_runs) and np.array_equal(enc.keep, enc0.keep)
                and tuple(enc.delays) == tuple(enc0.delays))
        if not same:
            raise ValueError(f"{ds.subject} did not read the same text with the same runs, trimming and delays as "
                             f"{first.subject}; attribute subjects of different stimuli or encoding settings in "
                             "separate calls.")


def auto_batch_size(n_tokens, hidden, n_blocks, n_subjects=1, bytes_per_value=2, free_bytes=None, cap=64):
    """TRs per batch that should fit in a GPU's free memory for one GxI pass.

    Estimate of the memory one instance needs: the activations a decoder block keeps for the
    backward pass, about ``34 * hidden`` values per token (Korthikanti et al. 2022, with a fused
    attention kernel that keeps no ``n_tokens^2`` matrix), for each block run; the subjects' input
    gradients (``n_subjects * hidden`` float32 values per token); and the batched backward's
    working memory, one block's activations per subject. The result uses 70 % of ``free_bytes``;
    running out anyway is handled by splitting batches (:func:`compute_attributions`).

    Parameters
    ----------
    n_tokens : int
        Tokens of the longest instance.
    hidden, n_blocks : int
        Hidden size and decoder blocks run (layer L for BA alone, all of them with NWP).
    n_subjects : int
    bytes_per_value : int
        2 for bf16, 4 for fp32.
    free_bytes : int or None
        Free device memory; None reads it from CUDA.
    cap : int

    Returns
    -------
    int, at least 1
    """
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info()
    per_token = hidden * (34 * n_blocks * bytes_per_value + 4 * n_subjects + 34 * n_subjects * bytes_per_value)
    per_instance = max(int(n_tokens), 1) * per_token
    return int(max(1, min(cap, 0.7 * free_bytes // per_instance)))


def _out_of_memory(lm, n_tokens, batch_size, method, ig_rows):
    knob = "ig_rows" if method == "ig" else "batch_size"
    return MemoryError(
        f"out of memory attributing one TR window of {n_tokens} tokens with {lm.name} ({method}, batch of "
        f"{batch_size}, {knob}={ig_rows if method == 'ig' else batch_size}). Lower `context` (fewer words per window), "
        "load the model in bfloat16 (`load_model(..., precision='bf16')`), attribute fewer subjects per call, or "
        "use a device with more memory.")


def compute_attributions_subjects(lm, datasets, encodings, layer, trs, context=80, pooling="last", tasks=TASKS,
                                  methods=("gxi",), voxel_set="language", ig_steps=20, batch_size="auto", ig_rows=8,
                                  progress=True, ig_baseline="zero"):
    """:func:`compute_attributions` for several subjects who read the same text, sharing the LM's work.

    The LM runs once per batch of TR windows: each subject's BA head reads the same layer-L
    states, and the subjects' gradients go back through the LM in one batched backward pass
    (vector-Jacobian products with one cotangent per subject). NWP does not depend on the subject
    and is computed once.

    Parameters
    ----------
    lm, layer, trs, context, pooling, tasks, methods, voxel_set, ig_steps, batch_size, ig_rows, progress, ig_baseline
        See :func:`compute_attributions`.
    datasets : list of brainattr.dataset.Dataset
        Subjects of one stimulus.
    encodings : list of brainattr.encoding.EncodingResult
        One per subject, fitted with the same runs, trimming and delays.

    Returns
    -------
    list of dict (task, method) -> pandas.DataFrame
        One per subject, as :func:`compute_attributions` returns; the NWP tables are the same
        objects in every subject's dict.
    """
    tasks, methods = tuple(tasks), tuple(methods)
    _check_args(tasks, methods, pooling)
    _check_same_text(datasets, encodings)
    layer = lm.check_layer(int(layer))
    stimulus, enc0 = datasets[0].stimulus, encodings[0]
    text = _Text(lm, stimulus)
    windows = _windows(stimulus, enc0, trs, context)
    voxes = [voxel_mask(voxel_set, ds, enc) for ds, enc in zip(datasets, encodings)] if "ba" in tasks else []
    instances = [_instance(text, w, pooling, with_next="nwp" in tasks) for w in windows]
    if "nwp" in tasks:
        no_next = [i.window.tr for i in instances if i.nwp_range[1] == i.nwp_range[0]]
        if no_next:
            raise ValueError(f"TR(s) {no_next} have no following word (end of the text), so NWP is undefined; "
                             "drop them or attribute 'ba' only.")
    if instances:
        check_context_fits(lm, max(len(i.ids) for i in instances), context)
    device = next(lm.model.parameters()).device
    if batch_size != "auto" and not (isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive int or 'auto', got {batch_size!r}.")
    if batch_size == "auto":
        batch_size = CPU_BATCH_SIZE
        if device.type == "cuda" and instances:
            blocks = lm.n_layers if "nwp" in tasks else max(layer, 1)
            batch_size = auto_batch_size(max(len(i.ids) for i in instances), lm.hidden_size, blocks, len(datasets),
                                         next(lm.model.parameters()).element_size())
    batch_size, ig_rows = int(batch_size), int(ig_rows)

    # group by (fold, run): one head per group and subject; similar lengths together (less padding)
    groups = {}
    for inst in instances:
        groups.setdefault((inst.window.fold, int(enc0.tr_runs[inst.window.tr])), []).append(inst)
    queue = []
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda i: -len(i.ids))
        queue += [members[k:k + batch_size] for k in range(0, len(members), batch_size)]
    heads = [{} for _ in datasets]
    seconds = dict.fromkeys(methods, 0.0)
    rows = [{(t, m): [] for t in tasks for m in methods} for _ in datasets]
    with tqdm(total=len(instances) * len(methods), desc="attribution", disable=not progress, leave=False) as bar:
        while queue:
            batch_inst = queue.pop(0)
            tr0 = batch_inst[0].window.tr
            # one head and one measured activity per subject (empty lists for NWP alone)
            head = [_head_for(enc, tr0, vox, cache, device) for enc, vox, cache in zip(encodings, voxes, heads)]
            measured = [torch.as_tensor(np.stack([enc.measured_tr(i.window.tr, ds.responses)[vox]
                                                  for i in batch_inst]), dtype=torch.float32, device=device)
                        for ds, enc, vox in zip(datasets, encodings, voxes)]
            batch = _collate(batch_inst, lm.tokenizer.pad_token_id, device)
            done = {}
            try:
                for method in methods:
                    started = time.perf_counter()
                    if method == "gxi":
                        attrs, values = _gxi(lm, layer, head, batch, measured, tasks)
                        base = {t: None for t in tasks}
                    else:
                        attrs, values, base = _ig(lm, layer, head, batch, measured, tasks, int(ig_steps), ig_rows,
                                                  ig_baseline)
                    seconds[method] += time.perf_counter() - started
                    done[method] = attrs, values, base
            except (RuntimeError, MemoryError) as err:
                if not _is_oom(err):
                    raise
                del batch, head, measured
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                if len(batch_inst) > 1:          # split the batch and retry both halves
                    half = (len(batch_inst) + 1) // 2
                    queue[:0] = [batch_inst[:half], batch_inst[half:]]
                    warnings.warn(f"out of memory with a batch of {len(batch_inst)} TRs; retrying as {half} + "
                                  f"{len(batch_inst) - half}.", stacklevel=2)
                    continue
                if "ig" in methods and ig_rows > 1:
                    ig_rows //= 2
                    queue.insert(0, batch_inst)
                    warnings.warn(f"out of memory in IG; retrying with ig_rows={ig_rows}.", stacklevel=2)
                    continue
                raise _out_of_memory(lm, len(batch_inst[0].ids), len(batch_inst), methods[-1], ig_rows) from err
            for method, (attrs, values, base) in done.items():
                for t in tasks:
                    # BA arrays have a leading subject axis; NWP's are the subjects' common ones
                    for k in range(len(datasets)) if t == "ba" else [0]:
                        a, v, b = (x[k] if t == "ba" and x is not None else x for x in (attrs[t], values[t], base[t]))
                        rows[k][(t, method)].append(_word_rows(batch_inst, a, v, b, stimulus))
                bar.update(len(batch_inst))
    for method in methods:
        if instances:
            log_stage("attribution", seconds[method], model=lm.name, layer=layer, method=method, tasks="+".join(tasks),
                      trs=len(instances), context=int(context), ig_steps=int(ig_steps) if method == "ig" else None,
                      subjects=len(datasets))
    out = []
    for k in range(len(datasets)):
        tables = {}
        for key, parts in rows[k].items():
            if key[0] == "nwp" and k > 0:
                tables[key] = out[0][key]
                continue
            df = pd.concat(parts, ignore_index=True) if parts else _empty_table()
            tables[key] = df.sort_values(["tr", "word_index"], kind="stable").reset_index(drop=True)
        out.append(tables)
    return out


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


def compare_precision(lm, dataset, encoding, layer, trs, dtype=None, **kwargs):
    """GxI attributions at the model's precision against those of a copy in another precision.

    The check behind running in bfloat16 on a GPU: per TR, the Spearman correlation of the word
    attributions and their largest difference relative to the largest attribution, plus the
    relative difference of the target itself.

    Parameters
    ----------
    lm, dataset, encoding, layer, trs
        As for :func:`compute_attributions`.
    dtype : torch.dtype, str or None
        The other precision; None: float32 for a 16-bit model, bfloat16 for a float32 one.
    **kwargs
        Passed to :func:`compute_attributions` (``context``, ``tasks``, ``voxel_set``, ...).

    Returns
    -------
    pandas.DataFrame
        One row per (task, TR): ``task``, ``tr``, ``spearman``, ``max_difference`` (relative to the
        largest |attribution| of the reference), ``target_difference`` (relative), and the two
        precisions ``precision`` / ``reference``.
    """
    from scipy.stats import spearmanr

    mine = next(lm.model.parameters()).dtype
    if dtype is None:
        dtype = torch.float32 if mine in (torch.float16, torch.bfloat16) else torch.bfloat16
    other = with_precision(lm, dtype)
    kwargs = dict(kwargs, methods=("gxi",), progress=False)
    # the reference is the wider of the two
    low, high = (lm, other) if torch.finfo(mine).bits < torch.finfo(next(other.model.parameters()).dtype).bits \
        else (other, lm)
    a = compute_attributions(low, dataset, encoding, layer, trs, **kwargs)
    b = compute_attributions(high, dataset, encoding, layer, trs, **kwargs)
    rows = []
    for (task, _), ta in a.items():
        tb = b[(task, "gxi")]
        for tr, ga in ta.groupby("tr"):
            gb = tb[tb["tr"] == tr]
            x, y = ga["attribution"].to_numpy(), gb["attribution"].to_numpy()
            scale = np.abs(y).max() or 1.0
            t_a, t_b = float(ga["target"].iloc[0]), float(gb["target"].iloc[0])
            rows.append(dict(task=task, tr=int(tr), spearman=float(spearmanr(x, y).statistic),
                             max_difference=float(np.abs(x - y).max() / scale),
                             target_difference=abs(t_a - t_b) / (abs(t_b) or 1.0),
                             precision=str(next(low.model.parameters()).dtype).replace("torch.", ""),
                             reference=str(next(high.model.parameters()).dtype).replace("torch.", "")))
    return pd.DataFrame(rows)


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
              voxel_set="language", ig_steps=20, fold=0, n_trs=None, batch_size="auto", ig_rows=8, part_size=None,
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
        TRs per stored part (default: ``4 * batch_size``, or 16 with ``batch_size="auto"``).
    cache : bool
        False: compute in memory, store nothing.
    progress : bool

    Returns
    -------
    tables : dict of (task, method) -> datasets.Dataset
        Columns :data:`COLUMNS`, restricted to the requested TRs, sorted by TR and word. Use
        ``.to_pandas()`` for analysis and :func:`word_weights` for normalised scores.
    """
    return attribute_layer(lm, [dataset], [encoding], layer, trs, context, pooling, tasks, methods, voxel_set,
                           ig_steps, fold, n_trs, batch_size, ig_rows, part_size, cache, progress, ig_baseline)[0]


def _table_folders(lm, datasets, encodings, voxes, layer, context, pooling, tasks, methods, ig_steps, ig_baseline):
    """Folder of every stored table, keyed (subject index, task, method)."""
    common = dict(version=TABLE_VERSION, stimulus=datasets[0].stimulus.fingerprint, hidden=lm.hidden_size,
                  n_layers=lm.n_layers)
    # the zero baseline keeps the key it had before baselines were selectable
    ig_params = ig_steps if ig_baseline == "zero" else (ig_steps, ig_baseline)
    folders = {}
    for m in methods:
        fields = dict(common, method_params=ig_params if m == "ig" else None)
        for k, ds in enumerate(datasets):
            if "nwp" in tasks:
                folders[(k, "nwp", m)] = table_path(ds, lm.name, layer, context, "nwp", m, cache_key(**fields)[:10])
            if "ba" in tasks:
                enc, vox = encodings[k], voxes[k]
                ba = dict(fields, pooling=pooling, voxels=array_hash(vox), responses=array_hash(ds.responses),
                          encoding=array_hash(enc.weights, enc.intercepts, enc.feature_means, enc.feature_stds,
                                              enc.response_means, enc.response_stds))
                folders[(k, "ba", m)] = table_path(ds, lm.name, layer, context, "ba", m, cache_key(**ba)[:10])
    return folders


def attribute_layer(lm, datasets, encodings, layer, trs=None, context=80, pooling="last", tasks=TASKS,
                    methods=("gxi",), voxel_set="language", ig_steps=20, fold=0, n_trs=None, batch_size="auto",
                    ig_rows=8, part_size=None, cache=True, progress=True, ig_baseline="zero"):
    """:func:`attribute` for several subjects of one stimulus at once (one LM pass serves them all).

    Each subject's tables are stored where :func:`attribute` stores them, so either function reads
    what the other wrote; NWP, which does not depend on the subject, is computed once (and its small
    table stored under each subject). Subjects whose tables are complete are not recomputed.

    Parameters
    ----------
    lm, layer, trs, context, pooling, tasks, methods, voxel_set, ig_steps, fold, n_trs, batch_size, ig_rows
        See :func:`attribute`.
    part_size, cache, progress, ig_baseline
        See :func:`attribute`.
    datasets : list of brainattr.dataset.Dataset
        Subjects of one stimulus.
    encodings : list of brainattr.encoding.EncodingResult
        One per subject (see :func:`compute_attributions_subjects`).

    Returns
    -------
    list of dict (task, method) -> datasets.Dataset
        One per subject.
    """
    tasks, methods = tuple(tasks), tuple(methods)
    _check_args(tasks, methods, pooling)
    _check_same_text(datasets, encodings)
    if trs is None:
        trs = held_out_trs(encodings[0], fold, n_trs)
    trs = np.unique(np.atleast_1d(np.asarray(trs, dtype=int)))
    if not cache:
        results = compute_attributions_subjects(lm, datasets, encodings, layer, trs, context, pooling, tasks, methods,
                                                voxel_set, ig_steps, batch_size, ig_rows, progress, ig_baseline)
        with _quiet_datasets() as hf:
            nwp = {k: hf.Dataset.from_pandas(v, preserve_index=False) for k, v in results[0].items() if k[0] == "nwp"}
            return [{k: nwp[k] if k in nwp else hf.Dataset.from_pandas(v, preserve_index=False)
                     for k, v in r.items()} for r in results]

    voxes = [voxel_mask(voxel_set, ds, enc) for ds, enc in zip(datasets, encodings)] if "ba" in tasks else []
    folders = _table_folders(lm, datasets, encodings, voxes, layer, context, pooling, tasks, methods, ig_steps,
                             ig_baseline)
    done = {k: _done_trs(f) for k, f in folders.items()}
    part_size = int(part_size or 4 * (CPU_BATCH_SIZE if batch_size == "auto" else int(batch_size)))
    todo = [tr for tr in trs if any(tr not in d for d in done.values())]
    chunks = [todo[i:i + part_size] for i in range(0, len(todo), part_size)]
    for chunk in tqdm(chunks, desc="attribution parts", disable=not progress or len(chunks) < 2, leave=False):
        # compute only what some table still misses for this chunk
        missing = [key for key in folders if any(tr not in done[key] for tr in chunk)]
        need_t = tuple(t for t in tasks if any(key[1] == t for key in missing))
        need_m = tuple(m for m in methods if any(key[2] == m for key in missing))
        need_k = sorted({key[0] for key in missing})
        results = compute_attributions_subjects(lm, [datasets[k] for k in need_k], [encodings[k] for k in need_k],
                                                layer, chunk, context, pooling, need_t, need_m, voxel_set, ig_steps,
                                                batch_size, ig_rows, False, ig_baseline)
        for k, result in zip(need_k, results):
            for (t, m), df in result.items():
                if (k, t, m) in missing:
                    _write(folders[(k, t, m)] / "parts" / f"part-{int(chunk[0]):06d}-{int(chunk[-1]):06d}", df)
                    done[(k, t, m)] |= set(int(x) for x in chunk)
    tables = {}
    for key, folder in folders.items():
        _consolidate(folder)
        table = _read(folder / "table") if (folder / "table").exists() else None
        if table is None:
            with _quiet_datasets() as hf:
                table = hf.Dataset.from_pandas(_empty_table(), preserve_index=False)
        keep = np.isin(np.asarray(table["tr"]), trs)
        if not keep.all():
            # in memory: never write index/cache files into the stored table's folder
            table = table.select(np.flatnonzero(keep), keep_in_memory=True)
        tables[key] = table
    return [{(t, m): tables[(k, t, m)] for t in tasks for m in methods} for k in range(len(datasets))]


def attribute_subjects(lm, datasets, layers, context=80, pooling="last", methods=("gxi",), n_trs=48, fold=0,
                       trs=None, voxel_set="language", nwp_layer=None, inner_folds=5, ig_steps=20,
                       ig_baseline="zero", batch_size="auto", progress=True):
    """BA for every subject and layer, NWP once; one long table (the input of every figure).

    The encoding models come from :func:`brainattr.encoding.encode_subjects` (cached) and the
    tables from :func:`attribute_layer` (stored; a rerun only reads): one LM pass per layer serves
    every subject. NWP does not depend on the subject or the layer: it is computed once, in the
    same forward pass as the BA of ``nwp_layer``, and its rows are repeated under every
    (subject, layer) so that each group holds both tasks.

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
    frames, nwp = [], {}
    for layer in tqdm(order, desc="attribution (layers, all subjects)", disable=not progress, leave=False):
        encs = encode_subjects(lm, datasets, layer, context=context, pooling=pooling, inner_folds=inner_folds,
                               progress=False)
        if trs is None:
            trs = held_out_trs(encs[0], fold, n_trs)
        tasks = ("ba", "nwp") if layer == nwp_layer else ("ba",)
        out = attribute_layer(lm, datasets, encs, layer, trs=trs, context=context, pooling=pooling, tasks=tasks,
                              methods=methods, voxel_set=voxel_set, ig_steps=ig_steps, ig_baseline=ig_baseline,
                              batch_size=batch_size, progress=False)
        for ds, tables in zip(datasets, out):
            for (task, method), table in tables.items():
                if task == "nwp":
                    nwp[method] = table.to_pandas()
                else:
                    frames.append(table.to_pandas().assign(subject=ds.subject, layer=layer, task=task, method=method))
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


__all__ = ["TASKS", "METHODS", "COLUMNS", "held_out_trs", "evenly_spaced", "Window", "tr_window", "voxel_mask",
           "BAHead", "tr_features_from_states", "compute_attributions", "compute_attributions_subjects",
           "auto_batch_size", "compare_precision", "predict_trs", "attribute", "attribute_layer",
           "attribute_subjects", "table_path", "word_weights", "ig_completeness", "ig_path", "recovery_scores",
           "shade_words", "position_profile"]
