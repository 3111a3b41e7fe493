"""The :class:`LanguageModel` record every stage passes around, and the error for a model not at hand."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .layers import decoder_layers


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


def _max_positions(config):
    for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(config, key, None)
        if value:
            return int(value)
    return None


def wrap_model(name, model, tokenizer, description=""):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return LanguageModel(name=name, model=model, tokenizer=tokenizer, n_layers=len(decoder_layers(model)),
                         hidden_size=int(model.config.hidden_size), max_positions=_max_positions(model.config),
                         description=description)
