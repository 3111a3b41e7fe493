"""Chapter 7: the masking sweep (App. C), and the masking at one k by sign (the paper's 640-word top 1 %)."""
from __future__ import annotations

import numpy as np

from ._style import SELECTION_ORDER, TARGET_LABELS, TASK_LABELS
from .overlap import effect_intervals


def masking_sweep(summary, sign="abs", targets=("nwp", "ba_r"), axes=None):
    """Chapter 7: relative change of each target after masking k words, top words against the controls.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`brainattr.masking.masking_sweep`'s summary (``masked_task``, ``selection``,
        ``sign``, ``k``, ``target``, ``relative``, ``rel_ci_low``, ``rel_ci_high``).
    sign : {"abs", "pos", "neg"}
        The rows drawn.
    targets : sequence of str
        One row of panels per target; one column per masked task (whose attribution ranks the words).
    axes : 2-d array of matplotlib Axes, optional
        ``len(targets) x n_masked_tasks``.

    Returns
    -------
    matplotlib.figure.Figure
        Per panel, the change in % of the unmasked value (95 % CI) against k, one series per
        masked set: the task's top words and the two random controls.
    """
    import matplotlib.pyplot as plt

    df = summary[summary["sign"] == sign].copy()
    df["set"] = np.where(df["selection"].str.startswith("top"), "top words", df["selection"])
    for c in ("relative", "rel_ci_low", "rel_ci_high"):
        df[c] = 100 * df[c]
    tasks = list(dict.fromkeys(df["masked_task"]))
    if axes is None:
        fig, axes = plt.subplots(len(targets), len(tasks), figsize=(5.5 * len(tasks), 3.2 * len(targets)),
                                 squeeze=False, sharex=True)
    else:
        axes = np.atleast_2d(axes)
        fig = axes[0, 0].figure
    colors = {"top words": "C3", "random same positions": "C0", "random anywhere": "0.5"}
    for i, target in enumerate(targets):
        for j, task in enumerate(tasks):
            d = df[(df["target"] == target) & (df["masked_task"] == task)]
            effect_intervals(d, "k", "relative", "rel_ci_low", "rel_ci_high", hue="set",
                             hue_order=[h for h in SELECTION_ORDER if h in set(d["set"])], palette=colors,
                             xlabel="words masked per TR (k)", ylabel=f"{TARGET_LABELS.get(target, target)}: % change",
                             title=f"masking {TASK_LABELS.get(task, task)}'s top words ({sign})", ax=axes[i, j])
    fig.tight_layout()
    return fig


def masking_by_sign(summary, targets=("nwp", "ba_r"), title=None, axes=None):
    """Chapter 7 at one ``k`` (e.g. the paper's top 1 % of a 640-word window): every sign side by side.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`brainattr.masking.masking_sweep`'s summary at one ``k`` or share (``masked_task``,
        ``selection``, ``sign``, ``target``, ``relative``, ``rel_ci_low``, ``rel_ci_high``).
    targets : sequence of str
        One row of panels per target; one column per masked task (whose attribution ranks the words).
    title : str, optional
        Added before each panel's title (e.g. ``"640 words"``).
    axes : 2-d array of matplotlib Axes, optional
        ``len(targets) x n_masked_tasks``.

    Returns
    -------
    matplotlib.figure.Figure
        Per panel, the change in % of the unmasked value (95 % CI) for each sign (by magnitude,
        the most positive words, the most negative words), one marker per masked set: the task's
        top words and the random controls. The panels of the other task's target are the
        cross-task bars.
    """
    import matplotlib.pyplot as plt

    df = summary.copy()
    df["set"] = np.where(df["selection"].str.startswith("top"), "top words", df["selection"])
    df["ranked by"] = df["sign"].map({"abs": "magnitude", "pos": "most positive", "neg": "most negative"})
    for c in ("relative", "rel_ci_low", "rel_ci_high"):
        df[c] = 100 * df[c]
    tasks = list(dict.fromkeys(df["masked_task"]))
    if axes is None:
        fig, axes = plt.subplots(len(targets), len(tasks), figsize=(5.5 * len(tasks), 3.2 * len(targets)),
                                 squeeze=False)
    else:
        axes = np.atleast_2d(axes)
        fig = axes[0, 0].figure
    colors = {"top words": "C3", "random same positions": "C0", "random anywhere": "0.5"}
    order = [s for s in ("magnitude", "most positive", "most negative") if s in set(df["ranked by"])]
    for i, target in enumerate(targets):
        for j, task in enumerate(tasks):
            d = df[(df["target"] == target) & (df["masked_task"] == task)]
            panel = f"masking {TASK_LABELS.get(task, task)}'s top words"
            effect_intervals(d, "ranked by", "relative", "rel_ci_low", "rel_ci_high", hue="set", order=order,
                             hue_order=[h for h in SELECTION_ORDER if h in set(d["set"])], palette=colors,
                             xlabel="words ranked by", ylabel=f"{TARGET_LABELS.get(target, target)}: % change",
                             title=f"{title}: {panel}" if title else panel,
                             ax=axes[i, j])
    fig.tight_layout()
    return fig
