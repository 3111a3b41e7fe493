"""Figures of the book: one function per figure kind, each drawing tables the chapters compute.

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
from __future__ import annotations

import html

import numpy as np
import pandas as pd

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


def _ax(ax, figsize):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _axes(axes, ncols, figsize, **kw):
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, ncols, figsize=figsize, **kw)
    else:
        fig = np.ravel(axes)[0].figure
    return fig, axes


def _despine(ax):
    import seaborn as sns

    sns.despine(ax=ax)


# --------------------------------------------------------------------------------------------
# Brain maps and word shading
# --------------------------------------------------------------------------------------------
def voxel_image(values, coords, reference=None):
    """Put per-voxel values into a 3-D MNI image (NaN-free: empty voxels are 0), for nilearn plots.

    Parameters
    ----------
    values : array of shape (n_voxels,)
    coords : array of shape (n_voxels, 3)
        MNI coordinates in mm.
    reference : nibabel image or None
        Grid to use; default nilearn's 3 mm MNI152 brain mask.

    Returns
    -------
    nibabel.Nifti1Image
    """
    import nibabel as nib
    from nilearn.datasets import load_mni152_brain_mask

    ref = reference if reference is not None else load_mni152_brain_mask(resolution=3)
    ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(ref.affine), np.asarray(coords))).astype(int)
    data = np.zeros(ref.shape[:3], dtype=np.float32)
    inside = np.all((ijk >= 0) & (ijk < np.array(ref.shape[:3])), axis=1)
    data[tuple(ijk[inside].T)] = np.asarray(values, dtype=np.float32)[inside]
    return nib.Nifti1Image(data, ref.affine)


def glass_brain(values, coords, title=None, cmap="RdBu_r", vmax=None, threshold=1e-6, colorbar=True, figure=None,
                axes=None):
    """Glass-brain views (left, top, right) of per-voxel values, symmetric around 0.

    Parameters
    ----------
    values : array of shape (n_voxels,)
    coords : array of shape (n_voxels, 3)
        MNI coordinates in mm (:func:`voxel_image`).
    title : str or None
    cmap : str
    vmax : float or None
        Colour range ``[-vmax, vmax]``; default the 99th percentile of ``|values|``.
    threshold : float
        Values with a smaller magnitude are not drawn.
    colorbar : bool
    figure, axes : matplotlib Figure or Axes, optional
        Where to draw (nilearn's arguments).

    Returns
    -------
    nilearn.plotting.displays.LZRProjector
        Its ``axes`` dict holds the ``"l"``, ``"z"`` and ``"r"`` views.
    """
    from nilearn import plotting

    values = np.asarray(values, dtype=float)
    vmax = float(np.percentile(np.abs(values), 99)) if vmax is None else float(vmax)
    return plotting.plot_glass_brain(voxel_image(values, coords), display_mode="lzr", plot_abs=False, cmap=cmap,
                                     vmin=-vmax, vmax=vmax, colorbar=colorbar, threshold=threshold, title=title,
                                     figure=figure, axes=axes)


def shade_words(words, weights, color=(214, 39, 40), max_weight=None):
    """HTML of words with a background whose opacity grows with each word's weight.

    Parameters
    ----------
    words : sequence of str, length n
    weights : array of float, shape (n,)
        Non-negative (e.g. normalised magnitudes, :func:`brainattr.analysis.word_weights`).
    color : (int, int, int)
        RGB of the strongest shade.
    max_weight : float, optional
        Weight given full opacity (default: the largest weight).

    Returns
    -------
    str
    """
    weights = np.asarray(weights, dtype=float)
    top = float(max_weight if max_weight is not None else (weights.max() if weights.size else 1.0)) or 1.0
    r, g, b = color
    spans = [f'<span style="background: rgba({r},{g},{b},{min(max(w / top, 0.0), 1.0):.2f}); padding: 1px 2px; '
             f'border-radius: 3px" title="{w:.4f}">{html.escape(str(word))}</span>'
             for word, w in zip(words, weights)]
    return " ".join(spans)


def two_readings(ba, nwp, caption=""):
    """HTML table of one window shaded twice: by BA's word weights (left) and by NWP's (right).

    Parameters
    ----------
    ba, nwp : pandas.DataFrame
        One TR's rows of :func:`brainattr.analysis.word_weights` (``word``, ``weight``).
    caption : str
        HTML put above the table.

    Returns
    -------
    str
        Each column is shaded on its own scale: its largest weight is fully opaque.
    """
    cell = '<td style="vertical-align: top; width: 50%; padding: 6px; line-height: 1.9">{}</td>'
    return (caption + "<table><tr><th>BA (brain alignment), GxI</th><th>NWP (next word), GxI</th></tr><tr>"
            + cell.format(shade_words(ba["word"], ba["weight"], color=(31, 119, 180)))
            + cell.format(shade_words(nwp["word"], nwp["weight"], color=(214, 39, 40)))
            + "</tr></table>")


# --------------------------------------------------------------------------------------------
# Chapter 1: the stimulus and the simulated subjects
# --------------------------------------------------------------------------------------------
def rsvp_timeline(stimulus, n_words=24, axes=None):
    """Left: the first words of run 0 on a time axis with the TR starts; right: words per TR.

    Parameters
    ----------
    stimulus : brainattr.schema.Stimulus
    n_words : int
        Words of run 0 shown on the time axis.
    axes : two matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import seaborn as sns

    stim = stimulus
    fig, axes = _axes(axes, 2, (12, 3.2), gridspec_kw=dict(width_ratios=[2, 1]))
    first = np.flatnonzero(stim.word_runs == 0)[:n_words]
    ax = axes[0]
    for t in stim.tr_times[(stim.tr_times < stim.word_onsets[first[-1]] + 2) & (stim.tr_runs == 0)]:
        ax.axvline(t, color="0.85", lw=1)
    for i in first:
        ax.text(stim.word_onsets[i], (i % 4) * 0.25, stim.words[i], fontsize=8, rotation=0)
    ax.set(xlim=(stim.word_onsets[first[0]] - 1, stim.word_onsets[first[-1]] + 1.5), ylim=(-0.2, 1.1), yticks=[],
           xlabel="time in run 0 (s); grey lines: TR starts", title="RSVP: one word every 0.5 s")
    counts = np.bincount(stim.word_trs[stim.word_trs >= 0], minlength=stim.n_trs)
    axes[1].hist(counts, bins=np.arange(counts.max() + 2) - 0.5, color="C0")
    axes[1].set(xlabel="words per TR", ylabel="TRs", title="words shown in each TR")
    sns.despine(fig)
    fig.tight_layout()
    return fig


def pos_counts(annotations, ax=None):
    """Bar chart of how many words have each universal part of speech (``annotations["pos"]``).

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _ax(ax, (8, 2.8))
    annotations["pos"].value_counts().plot.bar(ax=ax, color="C0")
    ax.set(ylabel="words", title="universal part of speech")
    _despine(ax)
    return ax


def simulated_voxels(meta, axes=None):
    """Three panels about the simulated language voxels: dominant driver, window, true-signal r.

    Parameters
    ----------
    meta : pandas.DataFrame
        One row per language voxel: ``dominant driver`` (str), ``window (words)`` and
        ``true-signal r``.
    axes : three matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import seaborn as sns

    fig, axes = _axes(axes, 3, (13, 3.2))
    meta["dominant driver"].value_counts().plot.bar(ax=axes[0], color="C1", title="dominant driver group")
    axes[1].hist(meta["window (words)"], bins=20, color="C2")
    axes[1].set(xlabel="integration window (words)", title="how far back voxels integrate")
    axes[2].hist(meta["true-signal r"], bins=30, color="C3")
    axes[2].set(xlabel="corr(clean signal, response)", title="signal-to-noise across voxels")
    sns.despine(fig)
    fig.tight_layout()
    return fig


def voxel_trace(times, measured, clean, title, ax=None):
    """One voxel's z-scored response against its planted clean signal, over time.

    Parameters
    ----------
    times : array of shape (n_trs,)
        Seconds.
    measured, clean : arrays of shape (n_trs,)
    title : str

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _ax(ax, (12, 3))
    z = lambda x: (x - x.mean()) / x.std()  # noqa: E731
    ax.plot(times, z(np.asarray(measured)), color="0.6", lw=1, label="measured (signal + noise)")
    ax.plot(times, z(np.asarray(clean)), color="C3", lw=1.5, label="planted clean signal")
    ax.set(xlabel="time in run 1 (s)", ylabel="z-scored BOLD", title=title)
    ax.legend(loc="upper right", frameon=False)
    _despine(ax)
    return ax


def planted_positions(share, n_trs=100, ax=None):
    """Bar chart of the share of the planted word importance at each position.

    Parameters
    ----------
    share : pandas.Series indexed by position
        Sums to 1.
    n_trs : int
        TRs pooled (for the title).

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _ax(ax, (8, 3))
    ax.bar(share.index, share.values, color="C3")
    ax.set(xlabel="position (words back from the most recent word; 0 = most recent)",
           ylabel="share of true importance", title=f"where the planted drivers lie, {n_trs} TRs of run 1")
    _despine(ax)
    return ax


# --------------------------------------------------------------------------------------------
# Chapter 2: brain alignment
# --------------------------------------------------------------------------------------------
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

    ax = _ax(ax, (8, 3.8))
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
    _despine(ax)
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

    ax = _ax(ax, (10, 3.8))
    order = scores.groupby("label").r.mean().sort_values(ascending=False).index
    sns.boxplot(scores, x="label", y="r", order=order, hue="voxels", dodge=False, fliersize=1, ax=ax,
                palette=VOXEL_COLORS)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set(xlabel="", ylabel="held-out r", title=f"BA per region at layer {layer}, all subjects")
    _despine(ax)
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

    fig, axes = _axes(axes, 2, (12, 3.6))
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

    ax = _ax(ax, (7, 3.4))
    sns.lineplot(per_model, x="relative_depth", y="r", hue="model", marker="o", errorbar="se", ax=ax)
    ax.set(xlabel="relative depth (layer / number of layers)", ylabel="mean language-ROI r")
    _despine(ax)
    return ax


# --------------------------------------------------------------------------------------------
# Chapter 3: attribution
# --------------------------------------------------------------------------------------------
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

    from .analysis import mean_weight_by_position, word_weights

    fig, axes = _axes(axes, 2, (12, 3.4), sharey=False)
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

    fig, axes = _axes(axes, 2, (12, 3.2))
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
    ax = _ax(ax, (7, 3.6))
    sns.boxplot(recovery, x="source", y="value", hue="subject", order=order, ax=ax, fliersize=0, linewidth=0.8)
    sns.stripplot(recovery, x="source", y="value", hue="subject", order=order, dodge=True, ax=ax, size=2.5,
                  palette="dark:0.25", legend=False)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set(xlabel="", ylabel="Spearman r with planted word importance (per TR)",
           title="ground-truth recovery on simulated subjects")
    ax.legend(title="subject", frameon=False, fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    _despine(ax)
    ax.figure.tight_layout()
    return ax


# --------------------------------------------------------------------------------------------
# Chapter 4: overlap (Fig. 2) and spread (Fig. 3)
# --------------------------------------------------------------------------------------------
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
    ax = _ax(ax, (8, 4))
    sns.lineplot(long, x="t (%)", y="IoU", hue="layer_group", hue_order=group_order, style="sets", marker="o",
                 ms=4, errorbar="se", ax=ax)
    if paper_iou is not None:
        ax.axhline(paper_iou, color="0.6", lw=0.8, ls=":")
        ax.text(1, paper_iou + 0.01, f"paper, t = 10 %: {paper_iou:g}", fontsize=8, color="0.4")
    note = "simulated subjects, " if simulated else ""
    ax.set(xlabel="threshold t (% of the attribution)", ylabel="IoU of important-word sets",
           title=f"{model}: BA vs NWP important words ({note}mean ± SE over TRs)")
    ax.legend(frameon=False, fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    _despine(ax)
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
    ax = _ax(ax, (8, 3.6))
    sns.lineplot(df, x="t (%)", y="iou", hue="task", style="layer_group", marker="o", ms=3, errorbar="se", ax=ax,
                 palette={"BA": TASK_COLORS["BA"], "NWP": TASK_COLORS["NWP"]})
    sns.lineplot(df, x="t (%)", y="random_iou", color="0.5", ls="--", errorbar=None, ax=ax, label="random sets")
    ax.set(xlabel="threshold t (%)", ylabel="IoU with the planted important words",
           title="agreement with the simulation's ground truth")
    ax.legend(frameon=False, fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    _despine(ax)
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
    fig, axes = _axes(axes, len(order), (4 * len(order), 3.4), sharey=True, squeeze=False)
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

    ax = _ax(ax, (7, 3.4))
    sns.boxplot(auc, x="layer_group", y="auc", hue="task", order=group_order, fliersize=1, ax=ax,
                palette={t: TASK_COLORS[t] for t in auc["task"].unique()})
    ax.set(xlabel="layer group", ylabel="AUC of words needed", title="spread per layer group (all subjects)")
    ax.legend(frameon=False)
    _despine(ax)
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
    ax = _ax(ax, (7, 3.4))
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
    _despine(ax)
    return ax


# --------------------------------------------------------------------------------------------
# Chapter 5: linguistic categories (Fig. 4)
# --------------------------------------------------------------------------------------------
def category_bars(shares, col="t", row=None, col_order=None, truth=False, errorbar="se", height=3.4, aspect=1.0,
                  ylabel="share of the category's words", title=None):
    """Fig. 4: share of each category's words marked important by BA only, both, or NWP only.

    A seaborn ``catplot`` (it makes its own figure): one panel per ``col`` (and ``row``) value,
    bars per category, one hue per marked-by group.

    Parameters
    ----------
    shares : pandas.DataFrame
        :func:`brainattr.analysis.category_shares` rows (``threshold``, ``category``,
        ``marked_by``, ``share``) plus the columns named by ``col`` and ``row``; ``col="t"`` is
        made from ``threshold`` ("10 %") when missing.
    col, row : str or None
    col_order : list, optional
    truth : bool
        Add the ``"planted truth"`` hue (rows whose ``marked_by`` is ``"planted truth"``).
    errorbar : str or None
    height, aspect : float
    ylabel : str
    title : str, optional
        Figure title, above the panels.

    Returns
    -------
    seaborn.FacetGrid
    """
    import seaborn as sns

    from .analysis import CATEGORIES

    df = shares
    if col == "t" and "t" not in df:
        df = df.assign(t=(df["threshold"] * 100).round().astype(int).astype(str) + " %")
    grid = sns.catplot(df, x="category", y="share", hue="marked_by", col=col, row=row, col_order=col_order,
                       kind="bar", errorbar=errorbar, order=list(CATEGORIES),
                       hue_order=MARKED + (["planted truth"] if truth else []), palette=MARKED_COLORS,
                       height=height, aspect=aspect)
    grid.set_axis_labels("", ylabel)
    if title:
        grid.figure.suptitle(title, y=1.03)
    return grid


# --------------------------------------------------------------------------------------------
# Chapter 6: positions (Fig. 5, Appendix F)
# --------------------------------------------------------------------------------------------
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
    ax = _ax(ax, (10, 4))
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
    _despine(ax)
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

    ax = _ax(ax, (8, 3.4))
    sns.boxplot(com, x="layer_group", y="all words", hue="task", order=list(group_order) + ["any"],
                palette=TASK_COLORS, fliersize=1, ax=ax)
    ax.set(xlabel="layer group (NWP: any)", ylabel="centre of mass (words back)", title="CoM per TR, all subjects")
    ax.legend(frameon=False)
    _despine(ax)
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
    fig, axes = _axes(axes, len(order), (4.2 * len(order), 3.2), sharey=True, squeeze=False)
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
    ax = _ax(ax, (9, 3.4))
    for (m, task), d in profiles.groupby(["method", "task"]):
        ax.plot(d["position"], d["smoothed share"], color=TASK_COLORS[task], ls="-" if m == "GXI" else "--",
                label=f"{task}, {m} (CoM {d['CoM'].iloc[0]:.1f})")
    ax.set(xlabel="position", ylabel="share of important words", title=title)
    ax.set_yscale("log")
    ax.legend(frameon=False, fontsize=8)
    _despine(ax)
    ax.figure.tight_layout()
    return ax


# --------------------------------------------------------------------------------------------
# Chapter 7: masking (Appendix C)
# --------------------------------------------------------------------------------------------

#: Chapter 7's masked word sets (:data:`brainattr.masking.SELECTIONS`, the masked task's own top words first).
SELECTION_ORDER = ["top words", "random same positions", "random anywhere"]
#: What chapter 7 scores after masking, as the y labels say it.
TARGET_LABELS = {"nwp": "NWP cross-entropy", "ba_r": "BA r over the TRs", "ba_mse": "BA squared error"}


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


# --------------------------------------------------------------------------------------------
# Chapter 8: controls (Appendix H, I)
# --------------------------------------------------------------------------------------------
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
    from .analysis import positional_profile

    ax = _ax(ax, (10, 3.6))
    for ls, (cond, g) in zip(["-", "--", ":"], tables.groupby("condition", sort=False)):
        for task in ("ba", "nwp"):
            p = pd.concat([positional_profile(d, threshold / 100) for _, d in g[g.task == task].groupby("subject")])
            p = p.groupby("position")["share"].mean().rolling(3, center=True, min_periods=1).mean()
            ax.plot(p.index, p.values, color=TASK_COLORS[task.upper()], ls=ls, lw=1.3, label=f"{task.upper()}, {cond}")
    ax.set(xlabel="position (words back from the most recent word)", ylabel=f"share of important words (t = {threshold} %)",
           title=title)
    ax.set_yscale("log")
    ax.legend(frameon=False, fontsize=8)
    _despine(ax)
    ax.figure.tight_layout()
    return ax
