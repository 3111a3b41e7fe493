"""What an attribution run computes, in one frozen object: :class:`AttributionSettings`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..trs import TR_FEATURES

#: Attribution targets: brain alignment (MSE of the encoding head) and next-word prediction.
TASKS = ("ba", "nwp")
#: Attribution methods: Gradient x Input and Integrated Gradients (the input embeddings), Gradient x
#: Activation (layer L's states, the ones the BA head reads; chapter 3's diagnosis).
METHODS = ("gxi", "ig", "gxa")
#: IG baselines: the all-zero embedding (the paper's), or the padding / end-of-text token's embedding.
IG_BASELINES = ("zero", "pad", "eos")
#: How the NWP target is read out at layer L: the whole model's loss ("final", the paper's; the same at
#: every layer), or the final norm + LM head on layer L's states ("logit_lens"; blocks 1..L only).
NWP_READOUTS = ("final", "logit_lens")
#: Word pooling over a word's sub-word tokens.
POOLINGS = ("last", "mean")
#: Precision names :func:`brainattr.lm.with_precision` takes.
PRECISION_NAMES = ("auto", "fp32", "bf16", "fp16")
#: TRs per pass for ``batch_size="auto"`` on CPU, where larger batches do not pay (2 cores, measured).
CPU_BATCH_SIZE = 4


@dataclass(frozen=True)
class AttributionSettings:
    """Everything besides the model, subjects, layer and TRs that changes an attribution run.

    Parameters
    ----------
    context : int
        Words before the first word of the delay TRs (paper: 640 for HP).
    pooling : {"last", "mean"}
        How a word's tokens are pooled; must match the encoding model's features.
    tasks : tuple of {"ba", "nwp"}
    methods : tuple of {"gxi", "ig", "gxa"}
        Gradient x Input, Integrated Gradients, Gradient x Activation at layer L (no final-readout
        NWP: it runs the blocks past L).
    voxel_set : str or array of bool, shape (n_voxels,)
        Voxels whose MSE is the BA target (see :func:`brainattr.attribution.voxel_mask`).
    ig_steps : int
        Integration steps of IG (paper: 20).
    ig_baseline : {"zero", "pad", "eos"}
        IG's baseline on the window's tokens.
    batch_size : int or "auto"
        TRs per forward pass (GxI), and TRs whose IG steps are chunked together. ``"auto"``:
        :data:`CPU_BATCH_SIZE` on CPU, on a GPU as many as
        :func:`brainattr.attribution.auto_batch_size` estimates fit in its free memory. A batch
        that runs out of memory is split in two and retried.
    ig_rows : int
        Rows (TR x step) per IG forward pass: the memory knob of IG.
    precision : {"fp32", "bf16", "fp16", "auto"} or None
        Run the LM in this precision (a converted copy; see :func:`brainattr.lm.with_precision`);
        None: as loaded.
    nwp_readout : {"final", "logit_lens"}
        ``"final"`` (default, the paper's): NWP is the whole model's next-word loss, the same scalar
        at every layer. ``"logit_lens"``: the final norm and LM head read layer L's hidden states
        (nostalgebraist's logit lens), so NWP depends on the layer and, like BA, only blocks 1..L
        run (:func:`brainattr.attribution.targets.compute_targets`). Stored tables of the default
        keep their keys; the logit lens gets its own.
    tr_features : {"average", "lanczos"}
        How the encoding model's features turned word embeddings into TR features
        (:func:`brainattr.trs.word_tr_weights`); must match them, as ``pooling`` must. The BA head
        pools the words with the same weights, and for ``"lanczos"`` each window widens to every
        word those weights reach (:func:`brainattr.attribution.batch.covering_window`). Stored
        tables of the default keep their keys; Lanczos gets its own.
    """

    context: int = 80
    pooling: str = "last"
    tasks: tuple = TASKS
    methods: tuple = ("gxi",)
    voxel_set: object = "language"
    ig_steps: int = 20
    ig_baseline: str = "zero"
    batch_size: object = "auto"
    ig_rows: int = 8
    precision: object = None
    nwp_readout: str = "final"
    tr_features: str = "average"

    def __post_init__(self):
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "methods", tuple(self.methods))
        for t in self.tasks:
            if t not in TASKS:
                raise ValueError(f"tasks: unknown task {t!r}; use one of {TASKS}.")
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"methods: unknown method {m!r}; use one of {METHODS} (Gradient x Input, "
                                 "Integrated Gradients, Gradient x Activation at layer L).")
        if "gxa" in self.methods and "nwp" in self.tasks and self.nwp_readout == "final":
            raise ValueError("methods: 'gxa' attributes layer L's states, and NWP read out by the final layers runs "
                             "the blocks past L; attribute tasks=('ba',), or NWP with nwp_readout='logit_lens'.")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling: unknown pooling {self.pooling!r}; use 'last' or 'mean'.")
        if self.nwp_readout not in NWP_READOUTS:
            raise ValueError(f"nwp_readout: unknown NWP readout {self.nwp_readout!r}; use one of {NWP_READOUTS}.")
        if self.tr_features not in TR_FEATURES:
            raise ValueError(f"tr_features: unknown method {self.tr_features!r}; use one of {TR_FEATURES} (per-TR "
                             "averaging, the paper's; or Lanczos resampling), the one the encoding features used.")
        if self.ig_baseline not in IG_BASELINES:
            raise ValueError(f"ig_baseline: unknown IG baseline {self.ig_baseline!r}; use one of {IG_BASELINES}.")
        if self.batch_size != "auto" and not (isinstance(self.batch_size, (int, np.integer))
                                              and not isinstance(self.batch_size, bool) and self.batch_size >= 1):
            raise ValueError(f"batch_size must be a positive int or 'auto', got {self.batch_size!r}.")
        for name in ("context", "ig_steps", "ig_rows"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < (0 if name == "context"
                                                                                               else 1):
                raise ValueError(f"{name} must be a {'non-negative' if name == 'context' else 'positive'} int, "
                                 f"got {value!r}.")

        if isinstance(self.precision, str) and self.precision not in PRECISION_NAMES:
            raise ValueError(f"precision: unknown precision {self.precision!r}; use one of {PRECISION_NAMES}, a "
                             "torch.dtype, or None (the model as loaded).")

    def replace(self, **changes) -> "AttributionSettings":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
