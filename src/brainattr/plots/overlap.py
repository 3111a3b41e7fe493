"""Chapter 4: overlap of the important words (Fig. 2), spread (Fig. 3), effects with CIs."""
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
