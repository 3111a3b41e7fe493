"""Figures of the book: one function per figure kind, each drawing tables the chapters compute.

One module per chapter's figures (:mod:`.brain`, :mod:`.words`, :mod:`.stimulus`, :mod:`.alignment`,
:mod:`.attribution`, :mod:`.overlap`, :mod:`.categories`, :mod:`.positions`, :mod:`.masking`), the
shared colours and axes helpers in :mod:`._style`; everything is re-exported here.

Every function takes the table(s) it draws and an optional ``ax`` (one panel) or ``axes`` (several
panels; seaborn's figure-level ``catplot`` figures make their own) and returns what it drew on:
the Axes for one panel, the Figure for several, the :class:`seaborn.FacetGrid` for catplots. When
no Axes are given, the figure is made at the size the book uses. Titles say "simulated subjects"
when ``simulated`` is true (the built-in dataset).

- chapter 1: :func:`rsvp_timeline`, :func:`pos_counts`, :func:`simulated_voxels`,
  :func:`voxel_trace`, :func:`planted_positions`
- chapter 2: :func:`alignment_by_layer`, :func:`glass_brain`, :func:`region_boxes`,
  :func:`marker_map`, :func:`brain_maps` (chapters 2, 3, 6 and App. D: brain maps),
  :func:`encoding_diagnostics`, :func:`alignment_by_depth`
- chapter 3: :func:`shade_words`, :func:`two_readings`, :func:`attribution_by_position`,
  :func:`ig_paths`, :func:`recovery_bars`, :func:`ladder_bars`, :func:`noise_curve`
- chapter 4 (Fig. 2, Fig. 3): :func:`iou_lines`, :func:`truth_iou_lines`, :func:`spread_panels`,
  :func:`auc_boxes`
- chapters 4-7, every difference a figure claims: :func:`effect_intervals` (estimates with CIs)
- chapter 5 (Fig. 4): :func:`category_bars`
- chapter 6 (Fig. 5, App. F): :func:`position_profiles`, :func:`com_boxes`, :func:`position_bars`,
  :func:`method_profiles`
- chapters 4-6, one panel per model and the pooled one (as the paper's Figs. 2 and 5):
  :func:`iou_by_model`, :func:`position_profiles_by_model`, with :func:`pool_models` (each
  model's means as rows of :data:`ALL_MODELS`), :func:`model_grid`, :func:`models_in`
- chapter 7 (App. C): :func:`masking_sweep`, :func:`masking_by_sign`
- chapter 8 (App. H, I): :func:`condition_profiles`
"""


from ._style import (
    MARKED,
    MARKED_COLORS,
    MASKINGS,
    SELECTION_ORDER,
    TARGET_LABELS,
    TASK_COLORS,
    TASK_LABELS,
    VOXEL_COLORS,
)
from .alignment import (
    alignment_by_depth,
    alignment_by_layer,
    encoding_diagnostics,
    region_boxes,
)
from .attribution import attribution_by_position, ig_paths, ladder_bars, noise_curve, recovery_bars
from .brain import brain_maps, glass_brain, marker_map, voxel_image
from .categories import category_bars
from .masking import masking_by_sign, masking_sweep
from .overlap import (
    auc_boxes,
    effect_intervals,
    iou_lines,
    spread_panels,
    truth_iou_lines,
)
from .positions import (
    com_boxes,
    condition_profiles,
    method_profiles,
    position_bars,
    position_profiles,
)
from .stimulus import (
    planted_positions,
    pos_counts,
    rsvp_timeline,
    simulated_voxels,
    voxel_trace,
)
from .words import shade_words, two_readings

__all__ = ["MARKED", "MARKED_COLORS", "MASKINGS", "SELECTION_ORDER", "TARGET_LABELS", "TASK_COLORS", "TASK_LABELS",
           "VOXEL_COLORS", "alignment_by_depth", "alignment_by_layer", "attribution_by_position", "auc_boxes",
           "category_bars", "com_boxes", "condition_profiles", "effect_intervals", "encoding_diagnostics",
           "glass_brain", "ig_paths", "iou_lines", "masking_by_sign", "masking_sweep", "method_profiles",
           "planted_positions", "pos_counts", "position_bars", "position_profiles", "recovery_bars", "ladder_bars", "noise_curve", "region_boxes", "rsvp_timeline",
           "shade_words", "simulated_voxels", "spread_panels", "truth_iou_lines", "two_readings", "voxel_image",
           "voxel_trace"]
__all__ += ["brain_maps", "marker_map"]  # brain maps (chapters 2, 3, 6, App. D)
from .overlap import ALL_MODELS, iou_by_model, model_grid, models_in, pool_models  # noqa: E402  (chapters 4-6 per model)
from .positions import position_profiles_by_model  # noqa: E402

__all__ += ["ALL_MODELS", "iou_by_model", "model_grid", "models_in", "pool_models", "position_profiles_by_model"]
