"""The scalars explained: BA's MSE of the head's prediction, NWP's cross-entropy of the next word.

NWP is read out in one of two ways (:data:`NWP_READOUTS`):

- ``"final"``: the whole model's next-word loss (every block, the final norm, the LM head); the
  same scalar whatever layer L is attributed (the paper's NWP);
- ``"logit_lens"``: the final norm and the LM head applied directly to layer L's hidden states
  (nostalgebraist 2020, "interpreting GPT: the logit lens"), so only blocks 1..L run, as for BA,
  and the NWP target depends on the layer. At the last layer it equals ``"final"``; at layer 0 it
  reads the embeddings (after any model-specific scaling) through the norm and the head.
"""
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
from .settings import NWP_READOUTS

#: Attributes of a base model that hold its final norm, tried in order: Mamba (``backbone.norm_f``),
#: GPT-2 / classic Falcon (``transformer.ln_f``), Zamba2 (``model.final_layernorm``), Llama / Qwen2 /
#: Gemma / Falcon3 (``model.norm``).
FINAL_NORM_NAMES = ("norm_f", "ln_f", "final_layernorm", "final_norm", "norm")


def final_norm(model):
    """The norm a causal LM applies after its last block, before the LM head (a module)."""
    base = base_model(model)
    for name in FINAL_NORM_NAMES:
        module = getattr(base, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise ValueError(f"cannot find the final norm of {type(model).__name__}; brainattr looks for "
                     f"{', '.join(FINAL_NORM_NAMES)} on its base model.")


def target_name(task, nwp_readout="final"):
    """The name of a task's target as :func:`compute_targets` takes it: ``"nwp"`` read out by the
    final layers is ``"nwp"``, by the logit lens ``"nwp@logit_lens"``; BA is ``"ba"``."""
    if nwp_readout not in NWP_READOUTS:
        raise ValueError(f"unknown NWP readout {nwp_readout!r}; use one of {NWP_READOUTS}.")
    return task if task != "nwp" or nwp_readout == "final" else f"nwp@{nwp_readout}"


def _split_target(name):
    task, _, readout = str(name).partition("@")
    readout = readout or "final"
    if task not in ("ba", "nwp") or readout not in NWP_READOUTS or (task == "ba" and readout != "final"):
        raise ValueError(f"unknown target {name!r}; use 'ba', 'nwp' or 'nwp@logit_lens'.")
    return task, readout


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


def nwp_loss(model, final, batch, norm=None):
    """Mean cross-entropy over the next word's tokens, LM head only at those positions, (batch,).

    ``final`` are the final normed states; or, with ``norm`` (the logit lens), any layer's states,
    normed here at the next word's positions only.
    """
    idx = batch["nwp_pos"][..., None].expand(-1, -1, final.shape[-1])
    h = torch.gather(final, 1, idx)                       # (B, K, H)
    if norm is not None:
        h = norm(h)
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


def compute_targets(lm, layer, head, embeds, batch, measured, tasks, nwp_readout="final", states=None):
    """Per-instance scalar targets for the requested tasks.

    ``head`` and ``measured`` are one subject's (a :class:`BAHead` and a tensor of shape
    ``(batch, n_voxels)``) or lists of several subjects' who read the same text: the LM runs once
    and each head reads the same layer-L states.

    ``tasks`` holds ``"ba"``, ``"nwp"`` (read out as ``nwp_readout`` says) and/or a target name of
    :func:`target_name` (``"nwp@logit_lens"``), which fixes its own readout: that is how callers
    that pass ``tasks`` through (GxI, IG) ask for the logit lens. Without a final-readout NWP, only
    blocks 1..L run, once for every target.

    ``states`` (tensor of shape (batch, n_tokens, hidden)), when given, are layer L's states: the
    LM does not run and the targets read them (what Gradient × Activation differentiates); a
    final-readout NWP, which needs the blocks past L, is then refused.

    Returns
    -------
    dict task -> tensor of shape (batch,), or (n_subjects, batch) for ``"ba"`` with lists
    """
    parsed = {t: _split_target(target_name(t, nwp_readout) if t == "nwp" else t) for t in tasks}
    out = {}
    if states is not None:
        if any(p == ("nwp", "final") for p in parsed.values()):
            raise ValueError("NWP read out by the final layers runs the blocks past layer L, so it cannot be "
                             "computed from layer L's states; use nwp_readout='logit_lens' or tasks=('ba',).")
    elif any(p == ("nwp", "final") for p in parsed.values()):
        states, final = full_forward(lm.model, layer, embeds, batch["mask"])
    elif parsed:
        states = layer_states(lm.model, [layer], inputs_embeds=embeds, attention_mask=batch["mask"])[layer]
    for t, (task, readout) in parsed.items():
        if task == "nwp":
            out[t] = (nwp_loss(lm.model, final, batch) if readout == "final"
                      else nwp_loss(lm.model, states, batch, norm=final_norm(lm.model)))
    if "ba" in tasks:
        # the head and the MSE run in at least float32 whatever the LM's precision (sums over voxels)
        feats = tr_features_from_states(widen(states), batch["pool"])
        several = isinstance(head, (list, tuple))
        mse = torch.stack([((h(feats, batch["present"]) - m.to(feats.dtype)) ** 2).mean(1)
                           for h, m in zip(head if several else [head], measured if several else [measured])])
        out["ba"] = mse if several else mse[0]
    return {t: out[t] for t in tasks}
