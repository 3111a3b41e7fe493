"""Language models: loading, device and precision, decoder layers, word/token spans, test models.

- :mod:`.load`       :func:`load_model` by name (built-in, Hugging Face id or folder, test models);
  :data:`PAPER_MODELS`, the paper's checkpoints; slow-kernel warnings for state-space models
- :mod:`.model`      :class:`LanguageModel`, the record every stage passes around
- :mod:`.precision`  device (``auto``) and weight precision (``auto``: bf16 on a GPU, fp32 on CPU)
- :mod:`.layers`     :func:`decoder_layers`, :func:`layer_states` (stops after the last layer asked for)
- :mod:`.tokens`     :func:`word_token_spans`, :func:`special_prefix` (BOS or fixed start token), :func:`check_context_fits`
- :mod:`.builtin`    the GGUF built-ins shipped in PyPI wheels
- :mod:`.tiny`, :mod:`.shapes`  tiny random models for tests; shape-true paper models for benchmarks

Layer convention used everywhere in brainattr: layer 0 is the token-embedding output and layer
``l`` (1..n_layers) is the output of decoder block ``l``, before any final norm.
"""
from .builtin import BUILTIN_MODELS, builtin_tokenizer
from .layers import (
           base_model,
           block_input,
           block_output,
           decoder_layers,
           forward_kwargs,
           layer_states,
)
from .load import (
           PAPER_MODELS,
           SSM_MODEL_TYPES,
           SlowKernelWarning,
           load_model,
           missing_kernels,
)
from .model import LanguageModel, ModelNotAvailableError
from .precision import (
           PRECISIONS,
           precision_suffix,
           resolve_device,
           resolve_dtype,
           with_precision,
)
from .shapes import SHAPE_CONFIGS, shape_name, shape_true_model
from .tiny import TINY_ARCHS, make_tiny_model, train_tiny_tokenizer
from .tokens import START_TOKEN_CANDIDATES, check_context_fits, special_prefix, start_token_id, tokenizer_prefix, word_token_spans

__all__ = ["BUILTIN_MODELS", "LanguageModel", "ModelNotAvailableError", "PAPER_MODELS", "PRECISIONS", "SHAPE_CONFIGS",
           "SSM_MODEL_TYPES", "SlowKernelWarning", "TINY_ARCHS", "base_model", "block_input", "block_output",
           "builtin_tokenizer", "check_context_fits", "decoder_layers", "forward_kwargs", "layer_states",
           "load_model", "make_tiny_model", "missing_kernels", "precision_suffix", "resolve_device", "resolve_dtype",
           "shape_name", "shape_true_model", "special_prefix", "start_token_id", "tokenizer_prefix", "START_TOKEN_CANDIDATES", "train_tiny_tokenizer", "with_precision",
           "word_token_spans"]
