"""Chapters 6 and 8: positional profiles and centres of mass (Fig. 5 per model, App. F, H, I)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis import positional_profile
from ._style import TASK_COLORS, despine, new_axes, new_axes_grid
from .overlap import ALL_MODELS, in_depth_order, model_grid, models_in, pool_models


def position_profiles(profiles, groups, model, context, threshold, simulated=True, ax=None):
    """Fig. 5: smoothed share of important words at each position, BA per layer group, NWP, truth.

    Parameters
    ----------
    profiles : pandas.DataFrame
        One row per (task, layer group, position): ``task`` (``"BA"``, ``"NWP"``,
        ``"NWP (logit lens)"``, ``"planted truth"``), ``layer_group`` (a group of ``groups``, or any
        other name, e.g. ``"any"``, for a line that is the same at every layer), ``position`` and
        ``smoothed share``.
    groups : dict of str -> int
        Layer group -> layer (line styles of the per-layer tasks, in order: solid, dashed, dotted).
    model : str
    context : int
    threshold : int or float
        The threshold t in %, for the y label.
    simulated : bool

    Returns
    -------
    matplotlib.axes.Axes
        Log y axis.
    """
    ax = new_axes(ax, (10, 4))
    styles = dict(zip(groups, ["-", "--", ":"]))
    for (task, lg), d in profiles.groupby(["task", "layer_group"]):
        label = f"{task}, {lg} (layer {groups[lg]})" if lg in groups else task
        ax.plot(d["position"], d["smoothed share"], color=TASK_COLORS[task], ls=styles.get(lg, "-"), lw=1.4,
                label=label)
    note = "simulated subjects, " if simulated else ""
    ax.set(xlabel="position (words back from the most recent word)", ylabel=f"share of important words (t = {threshold} %)",
           title=f"{model}: where the important words are ({note}{context}-word context)")
    ax.set_yscale("log")
    ax.legend(frameon=False, fontsize=8)
    despine(ax)
    ax.figure.tight_layout()
    return ax


def com_boxes(com, group_order, ax=None):
    """Box plots of the centre of mass per TR, BA per layer group and NWP (``"any"``).

    Parameters
    ----------
    com : pandas.DataFrame
        One row per (subject, task, TR): ``task``, ``layer_group`` and ``all words`` (the CoM).
    group_order : list of str

    Returns
    -------
    matplotlib.axes.Axes
    """
    import seaborn as sns

    ax = new_axes(ax, (8, 3.4))
    sns.boxplot(com, x="layer_group", y="all words", hue="task", order=list(group_order) + ["any"],
                palette=TASK_COLORS, fliersize=1, ax=ax)
    ax.set(xlabel="layer group (NWP: any)", ylabel="centre of mass (words back)", title="CoM per TR, all subjects")
    ax.legend(frameon=False)
    despine(ax)
    return ax


def position_bars(profiles, groups, axes=None):
    """Share of important words at each position, BA against NWP, one panel per layer group.

    Parameters
    ----------
    profiles : pandas.DataFrame
        One subject's profiles: ``task``, ``layer_group`` (NWP: ``"any"``), ``position``, ``share``.
    groups : dict of str -> int
    axes : array of matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
        Log y axes.
    """
    import seaborn as sns

    order = list(groups)
    fig, axes = new_axes_grid(axes, len(order), (4.2 * len(order), 3.2), sharey=True, squeeze=False)
    for ax, lg in zip(np.ravel(axes), order):
        for task, d in profiles[profiles.layer_group.isin([lg, "any"])].groupby("task"):
            ax.bar(d["position"], d["share"], width=1.0, alpha=0.55, color=TASK_COLORS[task], label=task)
        ax.set(title=f"{lg} (layer {groups[lg]})", xlabel="position", ylabel="share of important words")
        ax.set_yscale("log")
        ax.legend(frameon=False, fontsize=8)
    sns.despine(fig)
    fig.tight_layout()
    return fig


def method_profiles(profiles, title, ax=None):
    """Positional profiles of GxI (solid) and IG (dashed), BA and NWP, with each one's CoM.

    Parameters
    ----------
    profiles : pandas.DataFrame
        One row per (method, task, position): ``method`` (``"GXI"``, ``"IG"``), ``task``,
        ``position``, ``smoothed share`` and ``CoM``.
    title : str

    Returns
    -------
    matplotlib.axes.Axes
        Log y axis.
    """
    ax = new_axes(ax, (9, 3.4))
    for (m, task), d in profiles.groupby(["method", "task"]):
        ax.plot(d["position"], d["smoothed share"], color=TASK_COLORS[task], ls="-" if m == "GXI" else "--",
                label=f"{task}, {m} (CoM {d['CoM'].iloc[0]:.1f})")
    ax.set(xlabel="position", ylabel="share of important words", title=title)
    ax.set_yscale("log")
    ax.legend(frameon=False, fontsize=8)
    despine(ax)
    ax.figure.tight_layout()
    return ax


def condition_profiles(tables, threshold, title, ax=None):
    """Positional profiles of BA and NWP per condition (line style), mean over subjects, smoothed.

    Parameters
    ----------
    tables : pandas.DataFrame
        :func:`brainattr.pipeline.condition_tables` outputs, concatenated (``condition``,
        ``subject``, ``task`` and the attribution columns).
    threshold : int or float
        The important-word threshold t in % (10 = 10 %).
    title : str

    Returns
    -------
    matplotlib.axes.Axes
        One line per (condition, task); log y axis.
    """
    ax = new_axes(ax, (10, 3.6))
    for ls, (cond, g) in zip(["-", "--", ":"], tables.groupby("condition", sort=False)):
        for task in ("ba", "nwp"):
            p = pd.concat([positional_profile(d, threshold / 100) for _, d in g[g.task == task].groupby("subject")])
            p = p.groupby("position")["share"].mean().rolling(3, center=True, min_periods=1).mean()
            ax.plot(p.index, p.values, color=TASK_COLORS[task.upper()], ls=ls, lw=1.3, label=f"{task.upper()}, {cond}")
    ax.set(xlabel="position (words back from the most recent word)", ylabel=f"share of important words (t = {threshold} %)",
           title=title)
    ax.set_yscale("log")
    ax.legend(frameon=False, fontsize=8)
    despine(ax)
    ax.figure.tight_layout()
    return ax


def position_profiles_by_model(profiles, groups, context, threshold, model_order=None, simulated=True, ncols=3,
                               axes=None):
    """Fig. 5 per model: the positional profiles, one panel per model and one pooled over models.

    Each model's panel draws what :func:`position_profiles` draws for one model (BA and the
    logit-lens NWP per layer group, line style by group; the final-layer NWP once; the planted
    truth); its title gives the model's layers. The last panel, ``"all models"``, averages over
    the models (each model weighs the same), position by position, the lines every model has
    (e.g. only the middle group's BA when the other models were attributed there only). One
    legend, beside the last panel.

    Parameters
    ----------
    profiles : pandas.DataFrame
        One row per (model, task, layer group, position): ``model``, ``task`` (keys of
        :data:`TASK_COLORS`), ``layer_group`` (a group name, or e.g. ``"any"`` for a line that is
        the same at every layer), ``position`` and ``smoothed share``.
    groups : dict of str -> dict of str -> int
        Per model, its layer groups -> layers (:attr:`brainattr.pipeline.ChapterTables.groups`).
    context : int
    threshold : int or float
        The threshold t in %, for the y label.
    model_order : list of str, optional
        Panel order (default: the categorical order of ``model``, else as they appear).
    simulated : bool
    ncols : int
        Panels per row.
    axes : array of matplotlib Axes, optional
        One per model, plus one for the pooled panel.

    Returns
    -------
    matplotlib.figure.Figure
        Log y axes, shared.
    """
    models = models_in(profiles, model_order)
    df = profiles.assign(model=profiles["model"].astype(str))
    names = in_depth_order(g for m in models for g in groups[m])
    styles = dict(zip(names, ["-", "--", ":", "-."]))
    tasks = list(TASK_COLORS)  # legend order: BA, NWP, NWP (logit lens), planted truth
    fig, panels = model_grid(len(models) + 1, (5.0, 3.6), ncols=ncols, axes=axes, sharey=True)
    pooled = pool_models(df, "smoothed share", ["task", "layer_group", "position"], common=["task", "layer_group"])
    pooled = pooled.groupby(["task", "layer_group", "position"], sort=False)["smoothed share"].mean().reset_index()
    for ax, name, d in zip(panels, models + [ALL_MODELS], [df[df["model"] == m] for m in models] + [pooled]):
        keys = sorted(d.groupby(["task", "layer_group"]).groups, key=lambda k: (
            tasks.index(k[0]) if k[0] in tasks else len(tasks), names.index(k[1]) if k[1] in names else len(names)))
        for task, lg in keys:
            line = d[(d["task"] == task) & (d["layer_group"] == lg)].sort_values("position")
            ax.plot(line["position"], line["smoothed share"], color=TASK_COLORS[task], ls=styles.get(lg, "-"),
                    lw=1.3, label=f"{task}, {lg}" if lg in styles else task)
        layers = ", ".join(f"{g} {layer}" for g, layer in groups[name].items()) if name in groups else ""
        ax.set_title(f"{name} (layers: {layers})" if layers else f"{name} ({len(models)}: mean over models)",
                     fontsize=10)
        ax.set(xlabel="position (words back)", ylabel=f"share of important words (t = {threshold} %)")
        ax.set_yscale("log")
        despine(ax)
    handles, labels = panels[-1].get_legend_handles_labels()
    panels[-1].legend(handles, labels, frameon=False, fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    note = "simulated subjects, " if simulated else ""
    fig.suptitle(f"where the important words are, per model ({note}{context}-word context)", y=1.0)
    fig.tight_layout()
    return fig
