"""Loading a language model by name: the built-ins, any Hugging Face id or local folder, test models.

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
import warnings

import numpy as np
import torch

from .builtin import BUILTIN_MODELS, load_builtin
from .model import LanguageModel, ModelNotAvailableError, wrap_model
from .precision import precision_suffix, resolve_device, resolve_dtype
from .shapes import parse_shape_name, shape_true_model
from .tiny import TINY_ARCHS, make_tiny_model


def _thirds(n_layers):
    """Blocks 1..n_layers cut into three contiguous groups, as :func:`brainattr.encoding.best_layers_by_group`."""
    edges = np.linspace(1, n_layers + 1, 4)
    layers = np.arange(1, n_layers + 1)
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
            return wrap_model(name_or_path, model, tokenizer, f"{name_or_path} (Hugging Face weights)")
        except Exception as err:  # noqa: BLE001 - any failure here means "not available"; re-raised below
            error = err
    raise ModelNotAvailableError(
        f"model '{name_or_path}' is not available offline. It is not a built-in ({', '.join(BUILTIN_MODELS)}), "
        f"{'the folder has no loadable model' if local else 'not a local folder'}, and not in the Hugging Face "
        "cache. On a machine with internet run `huggingface-cli download " + name_or_path + "` (gated models such "
        "as meta-llama/* and google/gemma-* need `huggingface-cli login` and accepting the licence first), then "
        "copy ~/.cache/huggingface to this machine, or pass the path of a folder holding config.json, the "
        f"weights and the tokenizer. Underlying error: {type(error).__name__}: {str(error)[:300]}") from error



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
    shape = parse_shape_name(name_or_path)
    if shape is not None:
        lm = shape_true_model(**shape, dtype=dtype, device=device)
    elif name_or_path == "tiny-random":
        lm = make_tiny_model()
    elif name_or_path.startswith("tiny-random-") and name_or_path[len("tiny-random-"):] in TINY_ARCHS:
        lm = make_tiny_model(name_or_path[len("tiny-random-"):])
    elif name_or_path in BUILTIN_MODELS:
        lm = load_builtin(name_or_path, progress=progress)
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




