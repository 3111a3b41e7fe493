"""Input attribution for brain alignment (BA) and next-word prediction (NWP).

For one target TR ``t`` (paper, Sec. 4; Fig. 1):

- **the window**: the words of the delay TRs ``t-4 ... t-1`` plus ``context`` words before the
  first of them (:func:`tr_window`). Position 0 is the most recent word (the last word of the
  latest delay TR that has words); positions count back from it.
- **BA target**: the frozen LM truncated after layer L (deeper blocks are never run for BA alone),
  word pooling and per-TR averaging exactly as in :mod:`brainattr.features`, the fold's ridge
  weights split per delay with the run's feature z-scoring and the intercept folded in
  (:class:`BAHead`), giving the predicted voxel activity of TR ``t``; the scalar explained is the
  mean squared error against the measured (z-scored) activity over a voxel set
  (:func:`voxel_mask`).
- **NWP target**: for the same window, the mean cross-entropy over the sub-word tokens of the word
  that follows, with teacher forcing; the LM head is applied only at those positions.
- **methods**: Gradient x Input (``"gxi"``, Shrikumar et al. 2016) and Integrated Gradients
  (``"ig"``, Sundararajan et al. 2017; Gauss-Legendre steps as in captum, all-zero embedding
  baseline by default, see below) on the input embeddings of the window's tokens, summed over
  the embedding dimension and over each word's tokens. Special tokens (BOS) and the teacher-forced tokens of the next word
  are held fixed: they are not attributed.

Each TR is attributed with the encoding model of the fold that held it out
(:meth:`brainattr.encoding.EncodingResult.fold_of`). When both tasks are asked for, one forward
pass of the full model serves both: layer L is captured with a hook and two backward passes
share the graph. Subjects who read the same text share the LM's work too
(:func:`compute_attributions`, :func:`attribute`: both take a list of subjects): one forward pass
feeds every subject's head, and their gradients go back in one batched backward pass (one cotangent per
subject). The head and the loss run in at least float32 when the LM runs in bfloat16
(:func:`compare_precision` checks what bfloat16 changes). Batches hold ``batch_size`` TR windows
(``"auto"``: sized to a GPU's free memory, :func:`auto_batch_size`, :func:`batch_size_for`; stored
parts hold four batches); a batch that runs out of
memory is split in two and retried, and a single window that does not fit raises a
``MemoryError`` saying which setting to lower.

IG baselines: ``"zero"`` (the paper's all-zero embedding), ``"pad"`` or ``"eos"`` (the padding
or end-of-text token's embedding at every window position). With the zero baseline, in models whose blocks start with
RMSNorm and that have no BOS token (SmolLM2), the targets swing wildly for tiny ``alpha`` along the
path and jump at ``alpha = 0``, so the attributions do not sum to ``F(x) - F(0)``
(:func:`ig_completeness`, :func:`ig_path`) and more steps do not fix it. A token baseline's path stays
among embeddings of ordinary size, and the BA target along it is smooth enough for completeness.
The NWP target is not smooth along either path (the cross-entropy of one word jumps by nats
between nearby ``alpha``), so NWP's IG is incomplete at any affordable number of steps. GxI, the
paper's primary method, is unaffected.

Results are tidy tables (one row per TR and word), stored with the ``datasets`` library
(:func:`attribute`): written in atomic parts, so a killed run resumes where it stopped.

Two entry points, one :class:`AttributionSettings`:

- :func:`compute_attributions` (in memory) and :func:`attribute` (stored, resumable), each for a
  list of subjects who read one text, at one layer.

The room, one module per step: :mod:`.settings` (what is computed), :mod:`.windows` (which TRs,
words and voxels), :mod:`.head` (the BA head), :mod:`.batch` (token windows padded together),
:mod:`.targets` (BA's MSE, NWP's cross-entropy), :mod:`.methods` (GxI, IG), :mod:`.engine`
(batches, subjects, OOM splitting), :mod:`.store` (tables on disk), :mod:`.checks` (bf16 vs fp32,
IG completeness and path).
"""
from .checks import compare_precision, ig_completeness, ig_path
from .engine import COLUMNS, auto_batch_size, batch_size_for, compute_attributions, predict_trs, resolve_batch_size
from .head import BAHead, tr_features_from_states
from .methods import ig_alphas
from .settings import (
           CPU_BATCH_SIZE,
           IG_BASELINES,
           METHODS,
           POOLINGS,
           TASKS,
           AttributionSettings,
)
from .store import TABLE_VERSION, attribute, table_path
from .windows import Window, evenly_spaced, held_out_trs, tr_window, voxel_mask

__all__ = ["AttributionSettings", "BAHead", "COLUMNS", "CPU_BATCH_SIZE", "IG_BASELINES", "METHODS", "NWP_READOUTS",
           "POOLINGS", "TASKS", "TABLE_VERSION", "Window", "attribute", "auto_batch_size", "batch_size_for",
           "compare_precision", "compute_attributions", "evenly_spaced", "held_out_trs", "ig_alphas", "ig_completeness",
           "ig_path", "predict_trs", "resolve_batch_size", "table_path", "tr_features_from_states", "tr_window", "voxel_mask"]
