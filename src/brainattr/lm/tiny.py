"""Tiny random-init models of each architecture family the paper uses, and tiny tokenizers, for tests."""
from __future__ import annotations

import torch

from ..data.builtin import load_text
from .model import LanguageModel, wrap_model

#: What ``tiny-random`` (the default tiny Llama) is.
TINY_DESCRIPTION = ("a 4-layer, 32-wide Llama with random weights and a BPE tokenizer trained "
                    "on the built-in text; for tests only, it knows no English")


_TOKENIZER_CACHE = {}


def train_tiny_tokenizer(kind: str = "bytelevel", vocab_size: int = 800, add_bos: bool = False):
    """A small fast tokenizer trained on the built-in text (no download).

    Parameters
    ----------
    kind : {"bytelevel", "metaspace"}
        ``bytelevel``: GPT-2/Llama-3-style byte-level BPE whose word-initial tokens start with ``Ġ``;
        ``metaspace``: SentencePiece-style BPE whose word-initial tokens start with ``▁``.
    vocab_size : int
    add_bos : bool
        Start every encoded text with ``<s>`` (as the Gemma, Llama-3 and Mistral tokenizers do with
        their BOS token); otherwise no special token is added (GPT-2, GPT-NeoX/Mamba, Qwen2).

    Returns
    -------
    transformers.PreTrainedTokenizerFast
        A fresh object on every call (the trained vocabulary is cached per ``kind`` and size).
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>"]
    key = (kind, int(vocab_size))
    if key not in _TOKENIZER_CACHE:
        if kind == "bytelevel":
            tok = Tokenizer(models.BPE(unk_token=None))
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            alphabet = pre_tokenizers.ByteLevel.alphabet()
        elif kind == "metaspace":
            tok = Tokenizer(models.BPE(unk_token="<unk>"))
            tok.pre_tokenizer = pre_tokenizers.Metaspace()
            tok.decoder = decoders.Metaspace()
            alphabet = []
        else:
            raise ValueError(f"unknown tokenizer kind {kind!r}; use 'bytelevel' or 'metaspace'.")
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, initial_alphabet=alphabet,
                                      show_progress=False)
        tok.train_from_iterator(load_text(), trainer=trainer)
        _TOKENIZER_CACHE[key] = tok.to_str()
    tok = Tokenizer.from_str(_TOKENIZER_CACHE[key])
    if add_bos:
        bos = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                           special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")


#: Tiny architectures of :func:`make_tiny_model`: arch -> (real model it stands for, tokenizer kind, BOS).
TINY_ARCHS = {
    "llama": ("Llama (meta-llama/Llama-3.2-1B; also SmolLM2)", "bytelevel", False),
    "falcon": ("Falcon3 (tiiuae/Falcon3-1B-Base is a LlamaForCausalLM: GQA, wide heads, untied head, "
               "RoPE theta 1000042)", "bytelevel", False),
    "gemma": ("Gemma 1 (google/gemma-2b: embeddings scaled by sqrt(hidden), multi-query attention, GeGLU)",
              "metaspace", True),
    "gemma2": ("Gemma 2 (sliding-window layers, attention and final-logit soft-capping)", "metaspace", True),
    "gemma3": ("Gemma 3 text (the built-in gemma3-270m: sliding-window layers, QK-norm)", "metaspace", True),
    "qwen2": ("Qwen2 (Qwen/Qwen2-1.5B: biased QKV projections, GQA)", "bytelevel", False),
    "falcon-classic": ("classic Falcon (FalconForCausalLM, e.g. tiiuae/falcon-7b: parallel attention, "
                       "transformer.h layout)", "bytelevel", False),
    "mamba": ("Mamba (state-spaces/mamba-1.4b-hf: selective SSM, no attention, backbone.layers, "
              "torch slow path)", "bytelevel", False),
    "zamba2": ("Zamba2 (Zyphra/Zamba2-1.2B: Mamba2 blocks with a shared attention block in hybrid layers)",
               "metaspace", True),
}


def _tiny_config(arch, tok, n_layers, hidden_size):
    import transformers as tf

    H = int(hidden_size)
    if H % 16:
        raise ValueError(f"tiny models need a hidden size divisible by 16, got {H}.")
    common = dict(vocab_size=len(tok), hidden_size=H, num_hidden_layers=int(n_layers), bos_token_id=tok.bos_token_id,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    attn = dict(num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
    if arch == "llama":
        return tf.LlamaConfig(intermediate_size=2 * H, tie_word_embeddings=True, **attn, **common)
    if arch == "falcon":  # Falcon3's shape: 2 query heads per KV head, RoPE theta 1000042, separate LM head
        return tf.LlamaConfig(intermediate_size=4 * H, tie_word_embeddings=False, rope_theta=1000042.0,
                              rms_norm_eps=1e-6, **attn, **common)
    if arch == "gemma":  # gemma-2b: one KV head, heads wider than hidden / n_heads (gemma-7b's 16 x 256 > 3072)
        return tf.GemmaConfig(intermediate_size=4 * H, head_dim=H // 2, **dict(attn, num_key_value_heads=1),
                              **common)
    # Gemma 2/3: a short sliding window, so that tests on a few dozen tokens cross it, and a final
    # logit cap that bites on the random model's small logits (std ~0.1), as 30 does on real ones
    if arch == "gemma2":
        return tf.Gemma2Config(intermediate_size=2 * H, head_dim=H // 4, sliding_window=8,
                               final_logit_softcapping=0.5, attn_logit_softcapping=50.0, **attn, **common)
    if arch == "gemma3":  # local and global layers alternate (the real 5:1 pattern needs 6 layers)
        types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(int(n_layers))]
        return tf.Gemma3TextConfig(intermediate_size=2 * H, head_dim=H // 4, sliding_window=8, layer_types=types,
                                   final_logit_softcapping=0.5, **attn, **common)
    if arch == "qwen2":
        return tf.Qwen2Config(intermediate_size=2 * H, tie_word_embeddings=True, **attn, **common)
    if arch == "falcon-classic":
        return tf.FalconConfig(num_attention_heads=4, num_kv_heads=2, new_decoder_architecture=True,
                               parallel_attn=True, bias=False, alibi=False, max_position_embeddings=2048, **common)
    if arch == "mamba":
        return tf.MambaConfig(state_size=8, expand=2, conv_kernel=4, **common)
    if arch == "zamba2":  # one hybrid layer (Mamba2 + the shared attention block) in the middle
        types = ["mamba"] * int(n_layers)
        types[int(n_layers) // 2] = "hybrid"
        return tf.Zamba2Config(layers_block_type=types, num_attention_heads=4, num_key_value_heads=4,
                               mamba_headdim=8, n_mamba_heads=2 * H // 8, mamba_d_state=8, mamba_ngroups=1,
                               adapter_rank=8, max_position_embeddings=2048, **common)
    raise ValueError(f"unknown tiny architecture {arch!r}; available: {', '.join(TINY_ARCHS)}.")


def make_tiny_model(arch: str = "llama", tokenizer: str | None = None, n_layers: int = 4, hidden_size: int = 32,
                    seed: int = 0) -> LanguageModel:
    """A tiny random-init causal LM built from a config, for tests and smoke runs (no download).

    Parameters
    ----------
    arch : str
        One of :data:`TINY_ARCHS`: ``"llama"`` (the default, ``tiny-random``), ``"falcon"`` (Falcon3, a
        Llama architecture), ``"gemma"``, ``"gemma2"``, ``"gemma3"``, ``"qwen2"``, ``"falcon-classic"``,
        ``"mamba"``, ``"zamba2"``.
    tokenizer : {"bytelevel", "metaspace"} or None
        See :func:`train_tiny_tokenizer`; None takes the family's kind (SentencePiece-style for Gemma
        and Zamba2, byte-level otherwise). Gemma and Zamba2 tokenizers also add a BOS token, as the
        real ones do.
    n_layers, hidden_size : int
    seed : int
        Seed of the random weights.

    Returns
    -------
    LanguageModel
        Named ``tiny-random`` for the default Llama, ``tiny-random-<arch>`` otherwise, with the
        non-default settings appended (the name keys the feature caches).
    """
    from transformers import AutoModelForCausalLM

    if arch not in TINY_ARCHS:
        raise ValueError(f"unknown tiny architecture {arch!r}; available: {', '.join(TINY_ARCHS)}.")
    what, default_kind, bos = TINY_ARCHS[arch]
    kind = default_kind if tokenizer is None else tokenizer
    tok = train_tiny_tokenizer(kind, add_bos=bos)
    config = _tiny_config(arch, tok, n_layers, hidden_size)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).float()
    name = "tiny-random" if arch == "llama" else f"tiny-random-{arch}"
    extra = [f"{k}{v}" for k, v, d in (("L", n_layers, 4), ("H", hidden_size, 32), ("seed", seed, 0))
             if v != d] + ([kind] if kind != default_kind else [])
    if extra:
        name += "-" + "-".join(extra)
    if arch == "llama":
        description = TINY_DESCRIPTION
    else:
        description = (f"a {n_layers}-layer, {hidden_size}-wide {what} with random weights and a {kind} BPE "
                       "tokenizer trained on the built-in text; for tests only")
    return wrap_model(name, model, tok, description)
