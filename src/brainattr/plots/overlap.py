"""Chapter 4: overlap of the important words (Fig. 2, per model), spread (Fig. 3), effects with CIs.

Also the helpers of every per-model figure of chapters 4-6: :func:`pool_models`, :func:`model_grid`,
:func:`models_in`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ._style import TASK_COLORS, despine, new_axes, new_axes_grid


def iou_lines(iou, model, group_order=None, paper_iou=None, simulated=True, ax=None):
    """Fig. 2: IoU of the BA and NWP important-word sets against the threshold, with random sets.

    Parameters
    ----------
    iou : pandas.DataFrame
        :func:`brainattr.analysis.overlap` rows with ``layer_group`` (and any other keys):
        ``threshold``, ``tr``, ``iou``, ``random_iou`` (uniform chance) and, when present,
        ``position_null_iou`` (the chance level that keeps each task's positions,
        :func:`brainattr.pipeline.iou_against_nulls`).
    model : str
        For the title.
    group_order : list of str, optional
        Order of the layer groups (hue).
    paper_iou : float, optional
        The paper's IoU at t = 10 %, drawn as a dotted line.
    simulated : bool
        Say "simulated subjects" in the title.

    Returns
    -------
    matplotlib.axes.Axes
        One line per (layer group, sets), sets ``"BA vs NWP"``, ``"random sets of the same sizes"``
        and (when given) ``"position-preserving null"``.
    """
    import seaborn as sns

    df = iou.assign(**{"t (%)": iou["threshold"] * 100})
    keys = [c for c in ("subject", "layer_group", "tr", "t (%)") if c in df]
    names = {"iou": "BA vs NWP", "random_iou": "random sets of the same sizes",
             "position_null_iou": "position-preserving null (BA of TR i vs NWP of TR j)"}
    long = df.melt(id_vars=keys, value_vars=[c for c in names if c in df], var_name="sets", value_name="IoU")
    long["sets"] = long["sets"].map(names)
    ax = new_axes(ax, (8, 4))
    sns.lineplot(long, x="t (%)", y="IoU", hue="layer_group", hue_order=group_order, style="sets", marker="o",
                 ms=4, errorbar="se", ax=ax)
    if paper_iou is not None:
        ax.axhline(paper_iou, color="0.6", lw=0.8, ls=":")
        ax.text(1, paper_iou + 0.01, f"paper, t = 10 %: {paper_iou:g}", fontsize=8, color="0.4")
    note = "simulated subjects, " if simulated else ""
    ax.set(xlabel="threshold t (% of the attribution)", ylabel="IoU of important-word sets",
           title=f"{model}: BA vs NWP important words ({note}mean ± SE over TRs)")
    ax.legend(frameon=False, fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    despine(ax)
    ax.figure.tight_layout()
    return ax


def truth_iou_lines(truth_iou, ax=None):
    """IoU of each task's important words with the planted important words, against the threshold.

    Parameters
    ----------
    truth_iou : pandas.DataFrame
        :func:`brainattr.analysis.overlap` rows of each task against the planted truth, with
        ``task`` (``"BA"``, ``"NWP"``) and ``layer_group``.

    Returns
    -------
    matplotlib.axes.Axes
        Per (task, layer group) one line, plus the random-set baseline (grey, dashed).
    """
    import seaborn as sns

    df = truth_iou.assign(**{"t (%)": truth_iou["threshold"] * 100})
    ax = new_axes(ax, (8, 3.6))
    sns.lineplot(df, x="t (%)", y="iou", hue="task", style="layer_group", marker="o", ms=3, errorbar="se", ax=ax,
                 palette={"BA": TASK_COLORS["BA"], "NWP": TASK_COLORS["NWP"]})
    sns.lineplot(df, x="t (%)", y="random_iou", color="0.5", ls="--", errorbar=None, ax=ax, label="random sets")
    ax.set(xlabel="threshold t (%)", ylabel="IoU with the planted important words",
           title="agreement with the simulation's ground truth")
    ax.legend(frameon=False, fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    despine(ax)
    ax.figure.tight_layout()
    return ax


def spread_panels(sizes, groups, axes=None):
    """Fig. 3: words needed to reach each threshold, BA against NWP, one panel per layer group.

    Parameters
    ----------
    sizes : pandas.DataFrame
        :func:`brainattr.analysis.spread` rows with ``layer_group`` and ``task`` (``"BA"``,
        ``"NWP"``, ``"NWP (logit lens)"``: keys of :data:`TASK_COLORS`): ``threshold``, ``n_important``.
    groups : dict of str -> int
        Layer group -> layer, in panel order.
    axes : array of matplotlib Axes, optional
        One per group.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import seaborn as sns

    df = sizes.assign(**{"t (%)": sizes["threshold"] * 100})
    order = list(groups)
    fig, axes = new_axes_grid(axes, len(order), (4 * len(order), 3.4), sharey=True, squeeze=False)
    for ax, lg in zip(np.ravel(axes), order):
        sns.lineplot(df[df.layer_group == lg], x="t (%)", y="n_important", hue="task", marker="o", ms=3,
                     errorbar="se", ax=ax, palette={t: TASK_COLORS[t] for t in df["task"].unique()})
        ax.set(title=f"{lg} (layer {groups[lg]})", xlabel="threshold t (%)", ylabel="words needed")
        ax.legend(frameon=False)
    sns.despine(fig)
    fig.tight_layout()
    return fig


def auc_boxes(auc, group_order, ax=None):
    """Box plots of the area under the words-needed curve per layer group, BA against NWP.

    Parameters
    ----------
    auc : pandas.DataFrame
        :func:`brainattr.analysis.spread_auc` rows: ``layer_group``, ``task``, ``auc``.
    group_order : list of str

    Returns
    -------
    matplotlib.axes.Axes
    """
    import seaborn as sns

    ax = new_axes(ax, (7, 3.4))
    sns.boxplot(auc, x="layer_group", y="auc", hue="task", order=group_order, fliersize=1, ax=ax,
                palette={t: TASK_COLORS[t] for t in auc["task"].unique()})
    ax.set(xlabel="layer group", ylabel="AUC of words needed", title="spread per layer group (all subjects)")
    ax.legend(frameon=False)
    despine(ax)
    return ax


def effect_intervals(estimates, x, y="estimate", low="ci_low", high="ci_high", hue=None, hue_order=None, order=None,
                     ref=0.0, palette=None, xlabel=None, ylabel=None, title=None, ax=None):
    """Point estimates with their confidence intervals, one marker and bar per (x, hue).

    The figure for every difference a chapter claims: the estimate (e.g. BA - NWP spread AUC per
    layer group, IoU minus its position-preserving chance level per threshold, a masking effect
    per k) with the 95 % interval whose unit is a block of text (:func:`brainattr.pipeline.block_means`),
    and the no-effect line.

    Parameters
    ----------
    estimates : pandas.DataFrame
        One row per (x, hue): columns ``x``, ``y``, ``low``, ``high`` (and ``hue``).
    x, y, low, high, hue : str
    hue_order, order : list, optional
        Orders of the hue values and of the x values (default: as they appear; numeric x as is).
    ref : float or None
        The no-effect value, drawn as a grey line (None: no line).
    palette : dict, optional
        Hue value -> colour.
    xlabel, ylabel, title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
        One errorbar container per hue value, labelled with it.
    """
    ax = new_axes(ax, (7, 3.4))
    df = estimates.reset_index(drop=True)
    numeric = pd.api.types.is_numeric_dtype(df[x]) and order is None
    levels = None if numeric else list(order if order is not None else dict.fromkeys(df[x]))
    hues = [None] if hue is None else list(hue_order if hue_order is not None else dict.fromkeys(df[hue]))
    width = 0.6 if numeric else 0.5
    for k, h in enumerate(hues):
        d = df if h is None else df[df[hue] == h]
        pos = d[x].to_numpy(dtype=float) if numeric else np.array([levels.index(v) for v in d[x]], dtype=float)
        if len(hues) > 1:
            step = (np.nanmin(np.diff(np.unique(pos))) if numeric and np.unique(pos).size > 1 else 1.0) * width
            pos = pos + (k - (len(hues) - 1) / 2) * step / len(hues)
        est = d[y].to_numpy(dtype=float)
        err = np.vstack([est - d[low].to_numpy(dtype=float), d[high].to_numpy(dtype=float) - est])
        ax.errorbar(pos, est, yerr=np.where(np.isfinite(err), err, 0.0), fmt="o", ms=4, capsize=3, lw=1.2,
                    color=None if palette is None or h is None else palette.get(h), label=None if h is None else str(h))
    if not numeric:
        ax.set_xticks(range(len(levels)), [str(v) for v in levels])
    if ref is not None:
        ax.axhline(ref, color="0.5", lw=0.8)
    ax.set(xlabel=x if xlabel is None else xlabel, ylabel=y if ylabel is None else ylabel, title=title or "")
    if hue is not None:
        ax.legend(frameon=False, fontsize=8)
    despine(ax)
    return ax


# --------------------------------------------------------------------------------------------
# One panel per model, the pooled summary beside them (chapters 4-6, as the paper's Figs. 2 and 5)
# --------------------------------------------------------------------------------------------
#: The name of the pooled panel (and rows) of the per-model figures.
ALL_MODELS = "all models"
#: Layer groups in depth order (:data:`brainattr.pipeline.LAYER_GROUPS`), for the per-model legends.
DEPTH_ORDER = ("early", "middle", "late")


def in_depth_order(names):
    """``names`` (layer groups) without repeats: early, middle, late first, then the others as they come."""
    names = list(dict.fromkeys(names))
    return [g for g in DEPTH_ORDER if g in names] + [g for g in names if g not in DEPTH_ORDER]


def pool_models(table, values, by, model="model", label=ALL_MODELS, common=None):
    """Each model's mean of ``values`` at each ``by`` key, as rows of one more "model", ``label``.

    Drawn as one more panel, these rows' mean is the mean over models (each model weighs the same,
    whatever its number of TRs, subjects or layer groups) and their spread is the spread between
    models. With ``common``, only the values of that column every model has are pooled (e.g. the
    middle layer group when the other models were attributed there only), so that the pooled
    rows compare like with like.

    Parameters
    ----------
    table : pandas.DataFrame
        Long table with a ``model`` column, the ``by`` columns and the ``values`` columns.
    values : str or list of str
    by : list of str
        Keys kept (e.g. ``["threshold", "category", "marked_by"]``); every other column is
        averaged away within a model.
    model, label : str
        The model column; the name of the pooled rows.
    common : str, list of str or None
        Columns (e.g. ``"layer_group"``, or ``["task", "layer_group"]`` for lines) whose values
        (combinations) shared by every model are kept; when the models share none, every row is
        kept.

    Returns
    -------
    pandas.DataFrame
        One row per (model, ``by`` key): ``model`` = ``label``, ``source_model`` (the model the row
        averages), the ``by`` columns and the ``values``.
    """
    values = [values] if isinstance(values, str) else list(values)
    if common is not None:
        keys = pd.MultiIndex.from_frame(table[[common] if isinstance(common, str) else list(common)])
        shared = set.intersection(*(set(keys[(table[model] == m).to_numpy()]) for m in table[model].unique()))
        table = table[keys.isin(list(shared))] if shared else table
    means = table.groupby([model] + list(by), observed=True, sort=False)[values].mean().reset_index()
    return means.rename(columns={model: "source_model"}).assign(**{model: label})


def model_grid(n_panels, panel_size=(4.6, 3.4), ncols=3, axes=None, **kw):
    """``(figure, axes)``: ``n_panels`` panels, ``ncols`` per row, the unused ones of the last row hidden.

    Parameters
    ----------
    n_panels : int
    panel_size : (float, float)
        Inches per panel.
    ncols : int
        At most; fewer when there are fewer panels.
    axes : array of matplotlib Axes, optional
        Use these instead (at least ``n_panels``).
    **kw
        Passed to :func:`matplotlib.pyplot.subplots` (``sharey``, ...).

    Returns
    -------
    (matplotlib.figure.Figure, list of matplotlib.axes.Axes)
        The first ``n_panels`` axes, in reading order.
    """
    import matplotlib.pyplot as plt

    if axes is not None:
        flat = list(np.ravel(axes))
        if len(flat) < n_panels:
            raise ValueError(f"{n_panels} panels need {n_panels} axes, got {len(flat)}.")
        return flat[0].figure, flat[:n_panels]
    ncols = max(1, min(int(ncols), n_panels))
    nrows = -(-n_panels // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows), squeeze=False,
                             **kw)
    flat = list(grid.ravel())
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def models_in(table, model_order=None, model="model"):
    """The models of ``table`` (as str) in ``model_order`` (default: the categorical order of the
    column, else as they appear); a ValueError when none of ``model_order`` is in ``table``."""
    present = list(dict.fromkeys(table[model].astype(str)))
    if model_order is None:
        col = table[model]
        model_order = list(col.cat.categories) if isinstance(col.dtype, pd.CategoricalDtype) else present
    order = [str(m) for m in model_order if str(m) in present]
    if not order:
        raise ValueError(f"none of the models {list(model_order)} is in the table (it holds {present}).")
    return order


def iou_by_model(iou, model_order=None, paper_iou=None, simulated=True, ncols=3, axes=None):
    """Fig. 2 per model: IoU of the BA and NWP important words, one panel per model and one pooled.

    Each model's panel: the IoU per layer group (mean ± SE over TRs), the position-preserving
    null and the uniform null (means over its layer groups). The last panel, ``"all models"``:
    each model's IoU (mean over the layer groups every model has, else over its own), their mean
    over models (black; each model weighs the same) and the two nulls averaged the same way.

    Parameters
    ----------
    iou : pandas.DataFrame
        :func:`brainattr.pipeline.iou_against_nulls`' per-TR rows of each model, with ``model``:
        ``model``, ``layer_group``, ``threshold``, ``tr``, ``iou``, ``random_iou`` and
        ``position_null_iou``.
    model_order : list of str, optional
        Panel order (default: the categorical order of ``model``, else as they appear).
    paper_iou : float, optional
        The paper's IoU at t = 10 %, a dash-dotted line in every panel (in the pooled panel's legend).
    simulated : bool
        Say "simulated subjects" in the title.
    ncols : int
        Panels per row.
    axes : array of matplotlib Axes, optional
        One per model, plus one for the pooled panel.

    Returns
    -------
    matplotlib.figure.Figure
        Panels titled with the model names and :data:`ALL_MODELS`.
    """
    import seaborn as sns

    models = models_in(iou, model_order)
    df = iou.assign(model=iou["model"].astype(str), **{"t (%)": iou["threshold"] * 100})
    nulls = {"position_null_iou": ("position-preserving null", "--", "0.15"),
             "random_iou": ("random sets of the same sizes", ":", "0.5")}
    nulls = {c: v for c, v in nulls.items() if c in df}
    fig, panels = model_grid(len(models) + 1, (4.6, 3.4), ncols=ncols, axes=axes, sharey=True)
    for ax, name in zip(panels, models):
        d = df[df["model"] == name]
        sns.lineplot(d, x="t (%)", y="iou", hue="layer_group", hue_order=in_depth_order(d["layer_group"]), marker="o",
                     ms=3, errorbar="se", ax=ax)
        for column, (label, ls, color) in nulls.items():
            m = d.groupby("t (%)")[column].mean()
            ax.plot(m.index, m.to_numpy(), ls=ls, color=color, lw=1.1, label=label)
        ax.set_title(f"{name} ({d['tr'].nunique()} TRs)", fontsize=10)
    pooled = pool_models(df, ["iou"] + list(nulls), ["t (%)"], common="layer_group")
    ax = panels[-1]
    for k, (name, d) in enumerate(pooled.groupby("source_model", sort=False)):
        ax.plot(d["t (%)"], d["iou"], color=f"C{k}", lw=1, alpha=0.8, marker="o", ms=2, label=name)
    mean = pooled.groupby("t (%)")[["iou"] + list(nulls)].mean()
    ax.plot(mean.index, mean["iou"], color="k", lw=2, marker="o", ms=3, label="BA vs NWP, mean over models")
    for column, (label, ls, color) in nulls.items():
        ax.plot(mean.index, mean[column], ls=ls, color=color, lw=1.1, label=label)
    shared = set.intersection(*(set(d["layer_group"]) for _, d in df.groupby("model")))
    where = f", {', '.join(in_depth_order(shared))}" if shared and shared != set(df["layer_group"]) else ""
    ax.set_title(f"{ALL_MODELS} ({len(models)}: mean over models{where})", fontsize=10)
    for ax in panels:
        if paper_iou is not None:
            ax.axhline(paper_iou, color="C4", lw=0.8, ls="-.", alpha=0.7,
                       label=f"the paper, t = 10 %: {paper_iou:g}" if ax is panels[-1] else None)
        ax.set(xlabel="threshold t (%)", ylabel="IoU of important-word sets")
        ax.legend(frameon=False, fontsize=7)
        despine(ax)
    note = "simulated subjects, " if simulated else ""
    fig.suptitle(f"BA vs NWP important words per model ({note}mean ± SE over TRs)", y=1.0)
    fig.tight_layout()
    return fig
