"""Colours, labels and axes helpers shared by the book's figures."""
from __future__ import annotations

import numpy as np

#: Colours of the two tasks (and of the simulation's planted truth) in every figure.
TASK_COLORS = {"BA": "C0", "NWP": "C3", "NWP (logit lens)": "C1", "planted truth": "0.35"}
#: Display names of the tables' ``task`` values (``"nwp_lens"``: NWP read out at the layer, the logit lens).
TASK_LABELS = {"ba": "BA", "nwp": "NWP", "nwp_lens": "NWP (logit lens)"}
#: Fig. 4's groups of marked words, in plotting order.
MARKED = ["BA only", "both", "NWP only"]
#: Fig. 4's colours.
MARKED_COLORS = {"BA only": "C0", "both": "C4", "NWP only": "C3", "planted truth": "0.35"}
#: Voxel sets of chapter 2.
VOXEL_COLORS = {"language ROI": "C3", "control": "C0"}
#: Chapter 7's maskings, in plotting order.
MASKINGS = ["none", "random", "top NWP", "top BA"]


def new_axes(ax, figsize):
    """``ax``, or one new Axes of ``figsize`` (inches) when it is None."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def new_axes_grid(axes, ncols, figsize, **kw):
    """``(figure, axes)``: the given axes and their figure, or a new row of ``ncols`` panels."""
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, ncols, figsize=figsize, **kw)
    else:
        fig = np.ravel(axes)[0].figure
    return fig, axes


def despine(ax):
    """Remove the top and right spines (seaborn's look), for the book's figures."""
    import seaborn as sns

    sns.despine(ax=ax)
#: Chapter 7's masked word sets (:data:`brainattr.masking.SELECTIONS`, the masked task's own top words first).
SELECTION_ORDER = ["top words", "random same positions", "random anywhere"]
#: What chapter 7 scores after masking, as the y labels say it.
TARGET_LABELS = {"nwp": "NWP cross-entropy", "ba_r": "BA r over the TRs", "ba_mse": "BA squared error"}
