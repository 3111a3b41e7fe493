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
  :func:`encoding_diagnostics`, :func:`alignment_by_depth`
- chapter 3: :func:`shade_words`, :func:`two_readings`, :func:`attribution_by_position`,
  :func:`ig_paths`, :func:`recovery_boxes`
- chapter 4 (Fig. 2, Fig. 3): :func:`iou_lines`, :func:`truth_iou_lines`, :func:`spread_panels`,
  :func:`auc_boxes`
- chapters 4-7, every difference a figure claims: :func:`effect_intervals` (estimates with CIs)
- chapter 5 (Fig. 4): :func:`category_bars`
- chapter 6 (Fig. 5, App. F): :func:`position_profiles`, :func:`com_boxes`, :func:`position_bars`,
  :func:`method_profiles`
- chapter 7 (App. C): :func:`masking_sweep`
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
from .attribution import attribution_by_position, ig_paths, recovery_boxes
from .brain import glass_brain, voxel_image
from .categories import category_bars
from .masking import masking_sweep
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
           "glass_brain", "ig_paths", "iou_lines", "masking_sweep", "method_profiles", "planted_positions",
           "pos_counts", "position_bars", "position_profiles", "recovery_boxes", "region_boxes", "rsvp_timeline",
           "shade_words", "simulated_voxels", "spread_panels", "truth_iou_lines", "two_readings", "voxel_image",
           "voxel_trace"]
