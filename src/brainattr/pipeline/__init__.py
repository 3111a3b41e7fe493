"""Chapter-level calls: the stages chained the way the book's chapters use them.

Each function here only strings together the public calls of the stage modules
(:mod:`brainattr.encoding`, :mod:`brainattr.attribution`, ...), so a reader can follow a chapter's
pipeline in one place and rerun it on other data.

- :func:`alignment_scores`: chapter 2's sweep, every subject's held-out r at every scored layer;
  :func:`alignment_by_model` the same summarised per model (the paper's Appendix G).
- :func:`chapter_tables`: the load step of chapters 4-7 (subjects, model, best layers, GxI tables)
  in one call, returning a :class:`ChapterTables`.
- :func:`attribute_layers`: BA for every layer and subject, NWP once; one long table.
- :func:`gxi_and_ig`: a few TRs of one subject re-attributed with GxI and IG (Appendix E).
- :func:`method_agreement`: how far GxI and IG agree on those TRs.
- :func:`logit_lens_tables`: NWP read out at each analysed layer (the logit lens), beside the
  final-layer NWP of :func:`chapter_tables` (chapters 4-6).
- :func:`truth_tables`, :func:`ground_truth_targets`, :func:`ground_truth_attributions`, :func:`recovery_table`,
  :func:`oracle_ladder`, :func:`noise_sweep`, :func:`lm_noise_sweep`: chapter 3's checks against the
  simulated subjects' planted truth (scores position alone cannot pass, the sparse plant, the
  oracle ladder, noise).
- :func:`block_means`: per-TR quantities averaged over subjects and layers, with CIs over blocks of
  text whose windows share no word (the unit of every chapter's verdict).
- :func:`iou_against_nulls`: Fig. 2's IoU with the uniform and the position-preserving chance level.
- :func:`category_marks`, :func:`position_summary`: Fig. 4's and Fig. 5's quantities per TR.
- :func:`masking_effects`: chapter 7's fair masking sweep (all ``k`` by magnitude, a few by sign);
  :func:`masking_at_context` the same at the paper's 640-word context (chapter 8's tables);
  :func:`masking_verdict_rows`, :func:`masking_control_gaps` its rows against the paper and the control.
- :func:`verdict_table`: every chapter's "paper vs this run" table, each verdict from
  :func:`brainattr.stats.verdict` with the paper's range and direction read from
  :mod:`brainattr.claims`.
- :func:`condition_tables`, :func:`compare_conditions`: chapter 8's controls (another model,
  another context length).

The functions live in private modules by stage, all re-exported here: ``_tables`` (chapters 2, 4-8:
alignment, the attribution tables, the controls), ``_ground_truth`` (chapter 3), ``_estimates``
(per-TR estimates with CIs over blocks of text, GxI against IG), ``_masking`` (chapter 7),
``_verdicts`` (the verdict rule).
"""
from __future__ import annotations

from ._verdicts import VERDICT_COLUMNS, verdict_summary, verdict_table
from ._tables import (
    ChapterTables,
    LAYER_GROUPS,
    LENS_TASK,
    alignment_by_model,
    alignment_scores,
    attribute_layers,
    chapter_tables,
    chapter_tables_by_model,
    compare_conditions,
    condition_tables,
    logit_lens_tables,
    model_tables,
)
from ._estimates import (
    BLOCK_COLUMNS,
    MethodTables,
    block_means,
    category_marks,
    gxi_and_ig,
    iou_against_nulls,
    method_agreement,
    position_summary,
)
from ._ground_truth import (
    LADDER,
    ground_truth_attributions,
    ground_truth_targets,
    has_plant,
    lm_noise_sweep,
    noise_sweep,
    oracle_ladder,
    plant_views,
    recovery_table,
    truth_tables,
)
from ._masking import (
    masking_at_context,
    masking_control_gaps,
    masking_effects,
    masking_verdict_rows,
)

__all__ = ["BLOCK_COLUMNS", "ChapterTables", "LADDER", "LAYER_GROUPS", "LENS_TASK", "MethodTables", "VERDICT_COLUMNS", "alignment_by_model", "alignment_scores", "attribute_layers", "block_means", "category_marks", "chapter_tables", "chapter_tables_by_model", "compare_conditions", "condition_tables", "ground_truth_attributions", "ground_truth_targets", "gxi_and_ig", "has_plant", "iou_against_nulls", "lm_noise_sweep", "logit_lens_tables", "masking_at_context", "masking_control_gaps", "masking_effects", "masking_verdict_rows", "method_agreement", "model_tables", "noise_sweep", "oracle_ladder", "plant_views", "position_summary", "recovery_table", "truth_tables", "verdict_summary", "verdict_table"]
