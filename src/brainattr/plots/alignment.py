"""Chapter 2: brain alignment per layer, region and model."""
from __future__ import annotations

import numpy as np

from ._style import VOXEL_COLORS, despine, new_axes, new_axes_grid


def alignment_by_layer(per_subject, model, ax=None):
    """Mean held-out r by layer, language-ROI against control voxels (mean ± SE over subjects).

    The transformer blocks (layers 1..L) are joined by lines; layer 0, the input embeddings, is
    drawn apart (open diamonds, not joined to the blocks) and named on the x axis: it is not a
    block and never one of the early / middle / late layers.

    Parameters
    ----------
    per_subject : pandas.DataFrame
        One row per (subject, layer, voxels): ``subject``, ``layer``, ``voxels`` (``"language ROI"``
        or ``"control"``) and ``r`` (mean over the subject's voxels of that set).
    model : str
        Model name, for the title.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import seaborn as sns

    ax = new_axes(ax, (8, 3.8))
    blocks, embeddings = per_subject[per_subject["layer"] > 0], per_subject[per_subject["layer"] == 0]
    sns.lineplot(blocks, x="layer", y="r", hue="voxels", marker="o", errorbar="se", ax=ax, palette=VOXEL_COLORS)
    if len(embeddings):
        stats = embeddings.groupby("voxels")["r"].agg(["mean", "sem"])
        for voxels, row in stats.iterrows():
            ax.errorbar(0, row["mean"], yerr=0 if not np.isfinite(row["sem"]) else row["sem"], fmt="D", mfc="none",
                        capsize=3, color=VOXEL_COLORS.get(voxels), label="_embeddings")
        ticks = sorted(int(x) for x in per_subject["layer"].unique())
        ax.set_xticks(ticks, ["0\n(embeddings)" if t == 0 else str(t) for t in ticks])
        ax.axvline(min(t for t in ticks if t > 0) / 2 if len(ticks) > 1 else 0.5, color="0.8", lw=0.8, ls=":")
    ax.axhline(0, color="0.5", lw=0.8)
    n = per_subject["subject"].nunique()
    ax.set(ylabel="mean held-out r (BA)", title=f"{model}: brain alignment by layer ({n} subjects, mean ± SE)")
    despine(ax)
    return ax


def region_boxes(scores, layer, ax=None):
    """Box plots of held-out r per brain region at one layer, regions by decreasing mean r.

    Parameters
    ----------
    scores : pandas.DataFrame
        One row per voxel (any subjects): ``label`` (region), ``r`` and ``voxels``.
    layer : int
        For the title.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import seaborn as sns

    ax = new_axes(ax, (10, 3.8))
    order = scores.groupby("label").r.mean().sort_values(ascending=False).index
    sns.boxplot(scores, x="label", y="r", order=order, hue="voxels", dodge=False, fliersize=1, ax=ax,
                palette=VOXEL_COLORS)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set(xlabel="", ylabel="held-out r", title=f"BA per region at layer {layer}, all subjects")
    despine(ax)
    return ax


def encoding_diagnostics(encoding, ceiling=None, is_language=None, axes=None):
    """Left: how many voxels chose each ridge penalty; right: held-out r against the planted ceiling.

    Parameters
    ----------
    encoding : brainattr.encoding.EncodingResult
    ceiling : array of shape (n_voxels,), optional
        Each voxel's true-signal correlation (simulated subjects); without it the right panel
        stays empty.
    is_language : array of bool, shape (n_voxels,), optional
        Voxels drawn on the right (default: all).
    axes : two matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import seaborn as sns
    from himalaya.viz import plot_alphas_diagnostic

    fig, axes = new_axes_grid(axes, 2, (12, 3.6))
    plot_alphas_diagnostic(best_alphas=encoding.alphas.ravel(), alphas=encoding.alpha_grid, ax=axes[0])
    axes[0].set_title("chosen ridge penalties (all folds, all voxels)")
    if ceiling is not None:
        lang = np.ones(len(ceiling), dtype=bool) if is_language is None else np.asarray(is_language, dtype=bool)
        ceiling = np.asarray(ceiling)
        axes[1].scatter(ceiling[lang], encoding.scores[lang], s=4, alpha=0.5, color="C3")
        lim = [0, np.nanmax(ceiling[lang])]
        axes[1].plot(lim, lim, color="0.5", lw=0.8)
        axes[1].set(xlabel="true-signal r (ceiling)", ylabel="held-out r (BA)",
                    title="BA against the planted ceiling, language voxels")
    sns.despine(fig)
    fig.tight_layout()
    return fig


def alignment_by_depth(per_model, ax=None):
    """Mean language-ROI r against relative depth, one line per model (the paper's Appendix G).

    Parameters
    ----------
    per_model : pandas.DataFrame
        :func:`brainattr.pipeline.alignment_by_model` output (``model``, ``relative_depth``, ``r``).

    Returns
    -------
    matplotlib.axes.Axes
    """
    import seaborn as sns

    ax = new_axes(ax, (7, 3.4))
    sns.lineplot(per_model, x="relative_depth", y="r", hue="model", marker="o", errorbar="se", ax=ax)
    ax.set(xlabel="relative depth (layer / number of layers)", ylabel="mean language-ROI r")
    despine(ax)
    return ax
