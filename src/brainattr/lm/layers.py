"""Decoder blocks and their hidden states: where a layer is, and how to read it without running the rest.

Layer convention used everywhere in brainattr: layer 0 is the token-embedding output and layer
``l`` (1..n_layers) is the output of decoder block ``l``, before any final norm.
"""
from __future__ import annotations

import inspect

import torch


class _StopForward(Exception):
    pass


def base_model(model):
    """The model without its LM head (``model.model``, ``model.backbone``, ``model.transformer``...)."""
    return getattr(model, getattr(model, "base_model_prefix", ""), model)


def forward_kwargs(module, **kwargs):
    """The keyword arguments ``module.forward`` takes, None values dropped.

    A name its signature lacks is dropped unless the signature has ``**kwargs`` (then the model
    swallows or uses it, the Hugging Face convention); so ``attention_mask`` / ``use_cache`` reach the
    families that take them and are not forced on those that do not.
    """
    params = inspect.signature(module.forward).parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return {k: v for k, v in kwargs.items() if v is not None and (k in params or var_kw)}


def block_output(output):
    """A decoder block's hidden states: transformer blocks return tuples, Mamba/Zamba2 blocks a tensor."""
    return output[0] if isinstance(output, (tuple, list)) else output


def block_input(args, kwargs):
    """A decoder block's input hidden states, from the positional or keyword arguments of its forward."""
    return args[0] if args else kwargs["hidden_states"]


def layer_states(model, layers, input_ids=None, inputs_embeds=None, attention_mask=None):
    """Hidden states of the chosen layers; blocks deeper than ``max(layers)`` are never run.

    Layer 0 is the input of the first decoder block (the token embeddings, after any model-specific
    scaling such as Gemma's sqrt(hidden)); layer ``l`` is the output of decoder block ``l`` before
    the final norm (for Mamba, whose blocks keep the residual stream in float32, that float32
    stream). Gradients flow when ``inputs_embeds`` requires grad. Works for the layouts of
    :func:`brainattr.lm.decoder_layers` (Llama, Falcon3, Gemma 1-3, Qwen2, classic Falcon,
    Mamba, Zamba2).

    Parameters
    ----------
    model : transformers.PreTrainedModel
    layers : sequence of int
    input_ids : tensor of int64, shape (batch, n_tokens), optional
    inputs_embeds : tensor of shape (batch, n_tokens, hidden), optional
    attention_mask : tensor of shape (batch, n_tokens), optional
        1 for real tokens, 0 for right padding. Passed to families that take it; padding on the
        right never changes the states of the real tokens of a causal model, masked or not.

    Returns
    -------
    states : dict of int -> tensor of shape (batch, n_tokens, hidden)
    """
    layers = sorted(set(int(layer) for layer in layers))
    blocks = decoder_layers(model)
    deepest = layers[-1]
    states, handles = {}, []

    def first_input(module, args, kwargs):
        states[0] = block_input(args, kwargs)
        if deepest == 0:
            raise _StopForward

    def output_of(index):
        def hook(module, args, output):
            states[index] = block_output(output)
            if index == deepest:
                raise _StopForward
        return hook

    if 0 in layers:
        handles.append(blocks[0].register_forward_pre_hook(first_input, with_kwargs=True))
    for layer in layers:
        if layer > 0:
            handles.append(blocks[layer - 1].register_forward_hook(output_of(layer)))
    base = base_model(model)  # skip the LM head
    try:
        base(**forward_kwargs(base, input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                               use_cache=False))
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    return {layer: states[layer] for layer in layers}


def decoder_layers(model) -> torch.nn.ModuleList:
    """The list of decoder blocks of a causal LM (Llama, Gemma, Qwen2, Falcon3, Mamba, Zamba2 layouts)."""
    for path in ("model.layers", "backbone.layers", "transformer.h", "model.decoder.layers", "gpt_neox.layers"):
        obj = model
        try:
            for attr in path.split("."):
                obj = getattr(obj, attr)
        except AttributeError:
            continue
        if isinstance(obj, torch.nn.ModuleList):
            return obj
    raise ValueError(f"cannot find the decoder blocks of {type(model).__name__}; brainattr knows the layouts "
                     "model.layers, backbone.layers, transformer.h, model.decoder.layers, gpt_neox.layers.")
