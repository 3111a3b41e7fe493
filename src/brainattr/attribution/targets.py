"""The scalars explained: BA's MSE of the head's prediction, NWP's cross-entropy of the next word."""
from __future__ import annotations

import torch

from ..lm import (
    base_model,
    block_input,
    block_output,
    decoder_layers,
    forward_kwargs,
    layer_states,
)
from .head import tr_features_from_states


def full_forward(model, layer, embeds, mask):
    """Run the whole base model once; return (layer-L states, final normed states).

    Layer L is taken exactly as :func:`brainattr.lm.layer_states` takes it (input of block 1
    for L = 0, else the output of block L; tuple or tensor outputs). Keyword arguments a family
    does not take are not passed (see :func:`brainattr.lm.forward_kwargs`).
    """
    blocks = decoder_layers(model)
    captured = {}
    if layer == 0:
        def hook(module, args, kwargs):
            captured["x"] = block_input(args, kwargs)
        handle = blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
    else:
        def hook(module, args, output):
            captured["x"] = block_output(output)
        handle = blocks[layer - 1].register_forward_hook(hook)
    base = base_model(model)
    try:
        out = base(**forward_kwargs(base, inputs_embeds=embeds, attention_mask=mask, use_cache=False))
    finally:
        handle.remove()
    final = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    return captured["x"], final


def nwp_loss(model, final, batch):
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


def widen(x):
    """``x`` in float32 if it is in a 16-bit float type, else unchanged (float64 tests stay float64)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def compute_targets(lm, layer, head, embeds, batch, measured, tasks):
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
        states, final = full_forward(lm.model, layer, embeds, batch["mask"])
        out["nwp"] = nwp_loss(lm.model, final, batch)
    elif "ba" in tasks:
        states = layer_states(lm.model, [layer], inputs_embeds=embeds, attention_mask=batch["mask"])[layer]
    if "ba" in tasks:
        # the head and the MSE run in at least float32 whatever the LM's precision (sums over voxels)
        feats = tr_features_from_states(widen(states), batch["pool"])
        several = isinstance(head, (list, tuple))
        mse = torch.stack([((h(feats, batch["present"]) - m.to(feats.dtype)) ** 2).mean(1)
                           for h, m in zip(head if several else [head], measured if several else [measured])])
        out["ba"] = mse if several else mse[0]
    return {t: out[t] for t in tasks}
