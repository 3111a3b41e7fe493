"""Chapter 3: attribution by position, IG's path, recovery of the planted truth."""
from __future__ import annotations

from ..analysis import mean_weight_by_position, word_weights
from ._style import TASK_COLORS, despine, new_axes, new_axes_grid


def attribution_by_position(tables, example, subject, n_trs=None, axes=None):
    """Share of attribution at each position: one TR (left) and the mean over TRs (right), per task.

    Parameters
    ----------
    tables : dict of str -> table
        ``{"ba": ..., "nwp": ...}``: one subject's attribution tables (:data:`brainattr.attribution.COLUMNS`).
    example : int
        The TR of the left panel.
    subject : str
        For the title.
    n_trs : int, optional
        TRs averaged, for the title (default: the TRs in the tables).
    axes : two matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
        The right panel's legend gives each task's centre of mass (CoM, mean over TRs).
    """
    import seaborn as sns

    fig, axes = new_axes_grid(axes, 2, (12, 3.4), sharey=False)
    for task, color in (("ba", TASK_COLORS["BA"]), ("nwp", TASK_COLORS["NWP"])):
        w = word_weights(tables[task])
        n_trs = w["tr"].nunique() if n_trs is None else n_trs
        one = w[w["tr"] == example]
        axes[0].plot(one["position"], one["weight"], color=color, lw=1.2, label=task.upper())
        prof = mean_weight_by_position(tables[task])
        com = (w["weight"] * w["position"]).groupby(w["tr"]).sum().mean()
        axes[1].plot(prof.index, prof.values, color=color, lw=1.2, label=f"{task.upper()} (CoM {com:.1f})")
    axes[0].set(title=f"TR {example}", xlabel="position (words back from the most recent)",
                ylabel="share of |attribution|")
    axes[1].set(title=f"mean over {n_trs} TRs, {subject}", xlabel="position (words back from the most recent)")
    for ax in axes:
        ax.legend(frameon=False)
    sns.despine(fig)
    fig.tight_layout()
    return fig


def ig_paths(paths, nodes, tr, axes=None):
    """The BA and NWP targets along IG's straight path from each baseline to the input (log alpha).

    Parameters
    ----------
    paths : dict of str -> pandas.DataFrame
        Baseline name -> :func:`brainattr.attribution.ig_path` output (``alpha``, ``ba``, ``nwp``);
        the first row (``alpha = 0``) is left out of the log axis.
    nodes : array of float
        IG's quadrature nodes, drawn as grey lines.
    tr : int
        For the titles.
    axes : two matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import seaborn as sns

    fig, axes = new_axes_grid(axes, 2, (12, 3.2))
    for ax, task in zip(axes, ("ba", "nwp")):
        for (b, path), ls in zip(paths.items(), ("-", "--")):
            ax.semilogx(path["alpha"][1:], path[task][1:], "o" + ls, ms=3, label=f"from the {b} baseline")
        for a in nodes:
            ax.axvline(a, color="0.85", lw=0.8, zorder=0)
        ax.set(xlabel="alpha (0 = baseline, 1 = input; grey: quadrature nodes)", ylabel=f"F_{task.upper()}",
               title=f"TR {int(tr)}: {task.upper()} target along the IG path")
        ax.legend(frameon=False, loc="best")
    sns.despine(fig)
    fig.tight_layout()
    return fig


def recovery_boxes(recovery, ax=None):
    """Per-TR Spearman r with the planted word importance: box and strip per source and subject.

    Parameters
    ----------
    recovery : pandas.DataFrame
        One row per (source, subject, TR): ``source`` (``"BA (GxI)"``, ``"BA (IG)"``,
        ``"NWP (GxI)"``, ``"BA shuffled"``), ``subject`` and ``value``.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import seaborn as sns

    order = [s for s in ("BA (GxI)", "BA (IG)", "NWP (GxI)", "BA shuffled") if s in set(recovery["source"])]
    ax = new_axes(ax, (7, 3.6))
    sns.boxplot(recovery, x="source", y="value", hue="subject", order=order, ax=ax, fliersize=0, linewidth=0.8)
    sns.stripplot(recovery, x="source", y="value", hue="subject", order=order, dodge=True, ax=ax, size=2.5,
                  palette="dark:0.25", legend=False)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set(xlabel="", ylabel="Spearman r with planted word importance (per TR)",
           title="ground-truth recovery on simulated subjects")
    ax.legend(title="subject", frameon=False, fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    despine(ax)
    ax.figure.tight_layout()
    return ax
