"""Chapter 3: attribution by position, IG's path, recovery of the planted truth."""
from __future__ import annotations

import numpy as np

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


#: Panels of :func:`recovery_bars`: score -> (title, the reference drawn beside the estimate).
RECOVERY_PANELS = {
    "per_tr": ("per-TR Spearman (position alone passes)", "position_prior", "position prior"),
    "word_identity": ("word identity (position held fixed)", "word_identity_class_prior", "word-class prior"),
    "precision_at_k": ("precision@k, sparse plant", "precision_at_k_prior", "position prior"),
}


def _errorbar(ax, x, row, color, label=None):
    ax.errorbar([x], [row["estimate"]], yerr=[[row["estimate"] - row["ci_low"]], [row["ci_high"] - row["estimate"]]],
                fmt="o", color=color, capsize=3, label=label)


def recovery_bars(scores, axes=None):
    """Chapter 3's recovery scores per source, with 95 % CIs and each score's null or prior.

    Parameters
    ----------
    scores : pandas.DataFrame
        :func:`brainattr.pipeline.recovery_table` output, indexed by (source, score).
    axes : three matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
        Left: per-TR Spearman, with the leave-one-TR-out position prior (grey diamonds). Middle:
        word identity, with the 95 % upper end of its within-position shuffle null (grey bar) and
        the word-class prior (grey diamonds, where the table has it).
        Right: precision@k on the sparse plant, with the position prior and chance (dashed).
    """
    sources = list(dict.fromkeys(scores.index.get_level_values("source")))
    fig, axes = new_axes_grid(axes, 3, (13, 3.6))
    colors = {s: f"C{i}" for i, s in enumerate(sources)}
    for ax, (score, (title, reference, reference_label)) in zip(np.ravel(axes), RECOVERY_PANELS.items()):
        for x, src in enumerate(sources):
            if (src, score) not in scores.index:
                continue
            row = scores.loc[(src, score)]
            _errorbar(ax, x, row, colors[src])
            if reference is not None and (src, reference) in scores.index:
                ref = scores.loc[(src, reference)]
                ax.plot([x + 0.25], [ref["estimate"]], "D", color="0.55", ms=5,
                        label=reference_label if x == 0 else None)
            if score == "word_identity" and np.isfinite(row["null_high"]):
                ax.plot([x - 0.3, x + 0.3], [row["null_high"]] * 2, color="0.55", lw=2,
                        label="shuffle null, 95 %" if x == 0 else None)
            if score == "precision_at_k":
                ax.plot([x - 0.3, x + 0.3], [row["null"]] * 2, color="0.55", ls="--", lw=1,
                        label="chance" if x == 0 else None)
        ax.axhline(0, color="0.8", lw=0.8)
        ax.set_xticks(range(len(sources)), sources, rotation=20, ha="right", fontsize=8)
        ax.set(title=title, xlim=(-0.6, len(sources) - 0.4))
        ax.legend(frameon=False, fontsize=7)
        despine(ax)
    np.ravel(axes)[0].set_ylabel("score (95 % CI over TRs)")
    fig.suptitle("recovery of the planted words (simulated subjects)", fontsize=10)
    fig.tight_layout()
    return fig


def ladder_bars(ladder, ax=None):
    """The oracle ladder: word identity (and per-TR Spearman) of each rung, with 95 % CIs.

    Parameters
    ----------
    ladder : pandas.DataFrame
        :func:`brainattr.pipeline.oracle_ladder`'s first output, indexed by (rung, score).

    Returns
    -------
    matplotlib.axes.Axes
    """
    rungs = list(dict.fromkeys(ladder.index.get_level_values("rung")))
    ax = new_axes(ax, (8, 0.45 * len(rungs) + 1.2))
    for y, rung in enumerate(rungs):
        for score, color, dy in (("word_identity", "C0", -0.12), ("per_tr", "0.6", 0.12)):
            row = ladder.loc[(rung, score)]
            ax.errorbar([row["estimate"]], [y + dy], xerr=[[row["estimate"] - row["ci_low"]],
                                                          [row["ci_high"] - row["estimate"]]],
                        fmt="o", color=color, capsize=2, label=score.replace("_", " ") if y == 0 else None)
    ax.axvline(0.95, color="C2", ls="--", lw=0.8, label="positive-control target 0.95")
    ax.axvline(0, color="0.8", lw=0.8)
    ax.set_yticks(range(len(rungs)), rungs, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="recovery of the planted words (95 % CI over TRs)", title="where recovery is lost")
    ax.legend(frameon=False, fontsize=7, loc="lower left")
    despine(ax)
    ax.figure.tight_layout()
    return ax


def noise_curve(sweep, ax=None):
    """Word identity against the noise level: the oracle's prediction and squared-error target, and the LM's.

    Parameters
    ----------
    sweep : pandas.DataFrame
        :func:`brainattr.pipeline.noise_sweep` output, optionally with
        :func:`brainattr.pipeline.lm_noise_sweep`'s rows (one line per ``source`` and ``target``).

    Returns
    -------
    matplotlib.axes.Axes
        Each tick gives the noise level and the voxels' mean true-signal correlation there.
    """
    ax = new_axes(ax, (6.5, 3.6))
    if "source" not in sweep:
        sweep = sweep.assign(source="oracle LM")
    for ((src, target), g), color in zip(sweep.groupby(["source", "target"], sort=False), ("C0", "C3", "C1")):
        g = g.sort_values("noise")
        ax.plot(g["noise"], g["estimate"], "o-", color=color, label=f"{src}, {target.replace('_', ' ')}")
        ax.fill_between(g["noise"], g["ci_low"], g["ci_high"], color=color, alpha=0.2)
    levels = sweep.drop_duplicates("noise").sort_values("noise")
    if len(levels) > 1:
        ax.set_xscale("log")
        ax.set_xlim(levels["noise"].min() / 1.3, levels["noise"].max() * 1.3)
    # each tick names the noise and the voxels' mean correlation between clean signal and measurement
    ax.set_xticks(levels["noise"], [f"{n:g}\n(r {r:.2f})" for n, r in zip(levels["noise"], levels["mean_true_r"])])
    ax.minorticks_off()
    ax.axhline(0, color="0.8", lw=0.8)
    ax.set(xlabel="noise sd (the book's default: 5); r: mean corr(clean, measured)", ylabel="word identity (95 % CI)",
           title="recovery against noise (simulated subjects)")
    ax.legend(frameon=False, fontsize=8)
    despine(ax)
    ax.figure.tight_layout()
    return ax
