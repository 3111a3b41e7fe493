"""Device and weight precision: ``auto`` device, precision names, the ``auto`` rule (bf16 on a GPU, fp32 on CPU) and cache-name suffixes."""
from __future__ import annotations

import copy
import dataclasses

import torch

from .model import LanguageModel

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
    dtype = resolve_dtype(precision, next(lm.model.parameters()).device.type)
    base = lm.name.removesuffix(precision_suffix(next(lm.model.parameters()).dtype))
    return dataclasses.replace(lm, model=copy.deepcopy(lm.model).to(dtype), name=base + precision_suffix(dtype))


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` → ``"cuda"`` if a GPU is visible, else ``"cpu"``; other values are returned as given."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
