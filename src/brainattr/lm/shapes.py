"""Shape-true models: the paper's checkpoints at their real size with random weights, for benchmarks.

Run time does not depend on the weights' values, and no download is needed.
"""
from __future__ import annotations

import re

import torch

from .builtin import builtin_tokenizer
from .model import LanguageModel, wrap_model
from .precision import resolve_device

#: Full transformers configs of the paper's checkpoints (and of SmolLM2-135M, the base model of the
#: default built-in), for :func:`shape_true_model`: Hugging Face id -> ``config_class`` (a
#: ``transformers`` class name) plus its keyword arguments.
#:
#: Values are those of each checkpoint's config.json (the ones :data:`PAPER_MODELS` cites, plus):
#: Llama-3.2-1B: head_dim 64, intermediate 8192, vocab 128256, RoPE theta 500000 with llama3 scaling
#: (factor 32, low / high frequency factors 1 / 4, original 8192 positions), rms_norm_eps 1e-5 (copies
#: of config.json whose _name_or_path is meta-llama/Llama-3.2-1B[-Instruct], e.g.
#: github.com/kevinstephano/thunder_model_blocks hf_llama/llama_config.py); gemma-2b: head_dim 256,
#: intermediate 16384, vocab 256000, rms_norm_eps 1e-6, RoPE theta 10000, tied embeddings (a copy of its
#: config.json with _name_or_path google/gemma-2b); its config.json says ``hidden_act: gelu``, but the
#: checkpoint was trained with the tanh approximation (transformers 4.x overrode the exact GeLU with
#: ``hidden_activation: gelu_pytorch_tanh``), which is what is used here; Qwen2-1.5B: intermediate 8960,
#: vocab 151936, RoPE theta 1e6, rms_norm_eps 1e-6, tied embeddings, no sliding window (the Qwen2
#: 0.5B/1.5B config.json layout, e.g. github.com/rwth-i6/i6_experiments qwen2_configs.py; widths as in
#: PAPER_MODELS); Falcon3-1B-Base: intermediate 8192, vocab 131072, RoPE theta 1000042, untied LM
#: head (Falcon3 config tables of public conversion scripts: 18 blocks of 2048, intermediate 8192,
#: 8 / 4 heads of 256, rope_theta 1000042.0, vocab 131072); its rms_norm_eps 1e-6 (as the tiny
#: ``falcon`` stand-in) and BOS / EOS id 11 were not found in a public copy of its config.json (neither
#: affects run time); mamba-1.4b-hf: state 16, expand 2 (intermediate 4096), conv kernel 4, dt rank
#: 128 (``"auto"``: ceil(hidden / 16)), vocab 50280 (50277 padded to a multiple of 8),
#: layer_norm_epsilon 1e-5 (the MambaConfig defaults of the state-spaces checkpoints, e.g. public
#: ports of transformers' MambaConfig; width and depth as in PAPER_MODELS);
#: SmolLM2-135M: 30 blocks of 576, intermediate 1536, 9 / 3 heads of 64, vocab 49152, RoPE theta 100000,
#: rms_norm_eps 1e-5, tied, 8192 positions (HuggingFaceTB/SmolLM2-135M config.json; the built-in's
#: de-quantized config.json agrees). Zamba2-1.2B has no entry: its config (Mamba2 heads, the shared
#: block's LoRA adapters, 32000-token Mistral vocabulary, smaller than SmolLM2's) is not reproduced here.
SHAPE_CONFIGS = {
    "meta-llama/Llama-3.2-1B": dict(
        config_class="LlamaConfig", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, vocab_size=128256, hidden_act="silu",
        max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
        rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192),
        attention_bias=False, mlp_bias=False, tie_word_embeddings=True, bos_token_id=128000, eos_token_id=128001),
    "google/gemma-2b": dict(
        config_class="GemmaConfig", hidden_size=2048, intermediate_size=16384, num_hidden_layers=18,
        num_attention_heads=8, num_key_value_heads=1, head_dim=256, vocab_size=256000,
        hidden_act="gelu_pytorch_tanh", max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=10000.0,
        attention_bias=False, tie_word_embeddings=True, bos_token_id=2, eos_token_id=1, pad_token_id=0),
    "Qwen/Qwen2-1.5B": dict(
        config_class="Qwen2Config", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
        num_attention_heads=12, num_key_value_heads=2, vocab_size=151936, hidden_act="silu",
        max_position_embeddings=131072, rms_norm_eps=1e-6, rope_theta=1000000.0, use_sliding_window=False,
        sliding_window=131072, max_window_layers=28, tie_word_embeddings=True, bos_token_id=151643,
        eos_token_id=151643),
    "tiiuae/Falcon3-1B-Base": dict(
        config_class="LlamaConfig", hidden_size=2048, intermediate_size=8192, num_hidden_layers=18,
        num_attention_heads=8, num_key_value_heads=4, head_dim=256, vocab_size=131072, hidden_act="silu",
        max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=1000042.0, attention_bias=False,
        mlp_bias=False, tie_word_embeddings=False, bos_token_id=11, eos_token_id=11),
    "state-spaces/mamba-1.4b-hf": dict(
        config_class="MambaConfig", hidden_size=2048, num_hidden_layers=48, vocab_size=50280, state_size=16,
        expand=2, conv_kernel=4, time_step_rank=128, layer_norm_epsilon=1e-5, use_bias=False, use_conv_bias=True,
        residual_in_fp32=True, hidden_act="silu", tie_word_embeddings=True, bos_token_id=0, eos_token_id=0,
        pad_token_id=0),
    "HuggingFaceTB/SmolLM2-135M": dict(
        config_class="LlamaConfig", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, head_dim=64, vocab_size=49152, hidden_act="silu",
        max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=100000.0, attention_bias=False,
        mlp_bias=False, tie_word_embeddings=True, bos_token_id=0, eos_token_id=0),
}


def shape_name(hf_id: str) -> str:
    """``shape-<short name>`` of a :data:`SHAPE_CONFIGS` id, e.g. ``shape-llama-3.2-1b``."""
    return "shape-" + hf_id.split("/")[-1].lower()


def parse_shape_name(name):
    """``shape_true_model`` arguments of a ``shape-...`` name, or None if it is not one."""
    match = re.fullmatch(r"(shape-.+?)(?:-L(\d+))?(?:-seed(\d+))?(?:-tok-(.+))?", str(name))
    if match is None or match.group(1) not in {shape_name(k) for k in SHAPE_CONFIGS}:
        return None
    short, layers, seed, tok = match.groups()
    return dict(hf_id=short, n_layers=None if layers is None else int(layers), seed=int(seed or 0),
                tokenizer_from=tok or "smollm2-135m")


def _shape_config(hf_id, n_layers=None):
    """The transformers config of :data:`SHAPE_CONFIGS` entry ``hf_id``, optionally with fewer blocks."""
    import transformers

    kwargs = dict(SHAPE_CONFIGS[hf_id])
    config_class = getattr(transformers, kwargs.pop("config_class"))
    full = kwargs["num_hidden_layers"]
    if n_layers is not None:
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or not 1 <= n_layers <= full:
            raise ValueError(f"n_layers must be an int from 1 to {full} (the blocks of {hf_id}), got {n_layers!r}.")
        kwargs["num_hidden_layers"] = n_layers
        if "max_window_layers" in kwargs:
            kwargs["max_window_layers"] = min(kwargs["max_window_layers"], n_layers)
    return config_class(**kwargs)


def _random_init_(model, seed):
    """Fill a model built without initialisation (:func:`transformers.initialization.no_init_weights`).

    The big matrices (every ``nn.Linear`` and ``nn.Embedding`` weight, shared ones once) are drawn
    from N(0, initializer_range^2) in one ``normal_`` call each; everything else (norms, biases,
    Mamba's A_log / D / dt, RoPE buffers) goes through the model's own ``initialize_weights``, which
    skips the tensors already filled. This is the cost of ``torch.randn`` (a few ns per weight), not
    that of ``from_config``'s two initialisation passes.
    """
    std = float(getattr(model.config, "initializer_range", None) or 0.02)
    torch.manual_seed(seed)
    seen = set()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)) and id(module.weight) not in seen:
                seen.add(id(module.weight))
                module.weight.normal_(0.0, std)
                module.weight._is_hf_initialized = True
    model.initialize_weights()


def shape_true_model(hf_id: str, tokenizer_from: str = "smollm2-135m", n_layers: int | None = None,
                     dtype=torch.float32, device: str = "cpu", seed: int = 0) -> LanguageModel:
    """A paper checkpoint at its real shape with random weights, for benchmarks (no download).

    Run time does not depend on the weights' values, so this times the paper's models exactly
    (same layers, widths, heads, vocabulary and LM head) without their gated or large downloads.
    The model is built without initialisation and its matrices are then filled with
    N(0, initializer_range^2) draws (0.02; Mamba's 0.1), so a 1B model takes seconds (about 12 s for
    Llama-3.2-1B on 2 busy CPU cores: the ``normal_`` calls) rather than a minute or more
    (``from_config``'s two initialisation passes took 12 s for its embeddings and 2 of its 16 blocks).

    Parameters
    ----------
    hf_id : str
        A key of :data:`SHAPE_CONFIGS` (e.g. ``"meta-llama/Llama-3.2-1B"``), or its short name with
        or without the ``shape-`` prefix (``"llama-3.2-1b"``, ``"shape-llama-3.2-1b"``).
    tokenizer_from : str
        Built-in whose tokenizer is used (:func:`builtin_tokenizer`): ``"smollm2-135m"`` (49152
        tokens, fewer than every model's vocabulary, so its ids are valid everywhere) or
        ``"tiny-random"`` (a small BPE, for quick tests). Sequences then have SmolLM2's lengths,
        not those of the checkpoint's own tokenizer.
    n_layers : int, optional
        Keep only the first ``n_layers`` decoder blocks (quick CPU runs); the full depth when None.
    dtype : torch.dtype
        Weights' dtype.
    device : str
        ``"cpu"``, ``"cuda"``, ``"auto"``, or ``"meta"`` (shapes only, no memory and no weights:
        for counting parameters).
    seed : int
        Seed of the random weights (seeds torch's global generator).

    Returns
    -------
    LanguageModel
        Named ``shape-<short name>`` (:func:`shape_name`), plus ``-L<n_layers>`` when truncated,
        ``-seed<seed>`` for a seed other than 0 and ``-tok-<tokenizer_from>`` for another tokenizer;
        :func:`load_model` loads these names back.
    """
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    by_short = {shape_name(k): k for k in SHAPE_CONFIGS}
    key = hf_id if hf_id in SHAPE_CONFIGS else by_short.get(hf_id, by_short.get("shape-" + str(hf_id).lower()))
    if key is None:
        raise ValueError(f"no shape config for {hf_id!r}; available: {', '.join(SHAPE_CONFIGS)} (or their short "
                         f"names {', '.join(by_short)}).")
    config = _shape_config(key, n_layers)
    tokenizer = builtin_tokenizer(tokenizer_from)
    if len(tokenizer) > config.vocab_size:
        raise ValueError(f"the {tokenizer_from} tokenizer has {len(tokenizer)} tokens, more than the "
                         f"{config.vocab_size} of {key}; use tokenizer_from='smollm2-135m' or 'tiny-random'.")
    device = resolve_device(device)
    with no_init_weights(), torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.tie_weights()                         # skipped under no_init_weights
    if device != "meta":
        _random_init_(model, seed)
    name = shape_name(key) + "".join(f"-{k}{v}" for k, v, d in (("L", n_layers, None), ("seed", seed, 0)) if v != d)
    if tokenizer_from != "smollm2-135m":
        name += f"-tok-{tokenizer_from}"
    blocks, full = config.num_hidden_layers, SHAPE_CONFIGS[key]["num_hidden_layers"]
    depth = f"the first {blocks} of {full} blocks" if n_layers else f"{blocks} blocks"
    description = (f"{key} at its real shape ({type(model).__name__}, {depth}, hidden {config.hidden_size}, "
                   f"vocabulary {config.vocab_size}) with random weights and the {tokenizer_from} tokenizer; "
                   "for benchmarks only, it knows no English")
    return wrap_model(name, model, tokenizer, description)
