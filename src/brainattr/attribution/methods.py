"""Gradient x Input and Integrated Gradients on the input embeddings, Gradient x Activation on layer L's states.

Gradient x Activation (captum's ``LayerGradientXActivation``) differentiates the targets with
respect to the states of layer L, the ones the BA head reads, instead of the input embeddings:
it skips the way back through blocks 1..L. For BA's linear head it is each token's own term of the
head, ``h_t / sd / n @ W_d`` weighed by the target's gradient, so comparing it with Gradient x
Input says how much of an attribution the backward pass through the LM changes.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from ..lm import layer_states
from .settings import IG_BASELINES
from .targets import compute_targets, widen

#: Models (by name) whose backward pass could not be batched over subjects with ``vmap`` (custom
#: kernels without a batching rule): their subjects' gradients are taken one after the other.
_UNBATCHED_VJP = set()


def is_out_of_memory(err):
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
            if is_out_of_memory(err):
                raise
            _UNBATCHED_VJP.add(model_key)
    return torch.stack([torch.autograd.grad(targets[s].sum(), embeds, retain_graph=retain_graph or s < S - 1)[0]
                        for s in range(S)])


def input_gradients(targets, embeds, model_key=None):
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


def gradient_x_input(lm, layer, head, batch, measured, tasks):
    emb = lm.model.get_input_embeddings()(batch["ids"]).detach().requires_grad_(True)
    targets = compute_targets(lm, layer, head, emb, batch, measured, tasks)
    grads = input_gradients(targets, emb, lm.name)
    x = widen(emb.detach()) * batch["attr"][..., None]
    attrs = {t: (widen(grads[t]) * x).sum(-1) for t in tasks}  # (batch, n) or (n_subjects, batch, n)
    return attrs, {t: v.detach() for t, v in targets.items()}


def gradient_x_activation(lm, layer, head, batch, measured, tasks):
    """Gradient x Activation at layer L: the targets' gradients w.r.t. layer L's states, times the states.

    Token scores of shape (batch, n) or (n_subjects, batch, n), as :func:`gradient_x_input`'s;
    tokens outside the window score 0. A final-readout NWP target is refused (it needs the blocks
    past L, see :func:`brainattr.attribution.targets.compute_targets`).
    """
    with torch.no_grad():   # nothing before layer L is differentiated
        emb = lm.model.get_input_embeddings()(batch["ids"])
        states = layer_states(lm.model, [layer], inputs_embeds=emb, attention_mask=batch["mask"])[layer]
    states = widen(states).detach().requires_grad_(True)
    targets = compute_targets(lm, layer, head, emb, batch, measured, tasks, states=states)
    grads = input_gradients(targets, states, lm.name)
    x = states.detach() * batch["attr"][..., None]
    attrs = {t: (widen(grads[t]) * x).sum(-1) for t in tasks}
    return attrs, {t: v.detach() for t, v in targets.items()}


def ig_alphas(steps):
    """IG's integration points on [0, 1] and their weights: Gauss-Legendre, as captum's default.

    Parameters
    ----------
    steps : int

    Returns
    -------
    alphas, weights : arrays of float64, shape (steps,)
        ``sum(weights) == 1``; the nodes of ``numpy.polynomial.legendre.leggauss`` mapped from
        [-1, 1] to [0, 1] (captum's ``gausslegendre`` gives the same numbers).
    """
    nodes, weights = np.polynomial.legendre.leggauss(int(steps))
    return 0.5 * (nodes + 1.0), 0.5 * weights



def ig_baseline_embeddings(lm, emb, attr, baseline):
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


def integrated_gradients(lm, layer, head, batch, measured, tasks, steps, rows_per_pass, baseline="zero"):
    """Integrated Gradients from a baseline on the window's tokens, steps batched internally."""
    emb0 = lm.model.get_input_embeddings()(batch["ids"]).detach()
    base = ig_baseline_embeddings(lm, emb0, batch["attr"], baseline)
    moving = emb0 - base                                             # zero outside the window
    alphas, weights = ig_alphas(steps)
    B = emb0.shape[0]
    total = {}
    pairs = [(b, s) for b in range(B) for s in range(len(alphas))]
    for i in range(0, len(pairs), rows_per_pass):
        chunk = pairs[i:i + rows_per_pass]
        bi = torch.as_tensor([b for b, _ in chunk], device=emb0.device)
        a = torch.as_tensor([alphas[s] for _, s in chunk], dtype=emb0.dtype, device=emb0.device)[:, None, None]
        x = (base[bi] + a * moving[bi]).requires_grad_(True)
        sub = {k: v[bi] for k, v in batch.items()}
        targets = compute_targets(lm, layer, head, x, sub, _rows_of(measured, bi), tasks)
        grads = input_gradients(targets, x, lm.name)
        w = torch.as_tensor([weights[s] for _, s in chunk], dtype=widen(emb0).dtype, device=emb0.device)
        for t in tasks:
            g = widen(grads[t]) * w[:, None, None]                   # (rows, n, H) or (S, rows, n, H)
            if t not in total:
                total[t] = torch.zeros((*g.shape[:-3], B, *g.shape[-2:]), dtype=g.dtype, device=g.device)
            total[t].index_add_(g.dim() - 3, bi, g)
    attrs = {t: (total[t] * widen(moving)).sum(-1) for t in tasks}
    # F(input) and F(baseline), for the completeness check (sum of attributions = their difference)
    with torch.no_grad():
        both = torch.cat([emb0, base])
        sub = {k: torch.cat([v, v]) for k, v in batch.items()}
        twice = _rows_of(measured, torch.arange(B, device=emb0.device).repeat(2))
        values = compute_targets(lm, layer, head, both, sub, twice, tasks)
    return attrs, {t: v[..., :B] for t, v in values.items()}, {t: v[..., B:] for t, v in values.items()}
