"""Chapter 1: the stimulus's timing and the simulated subjects."""
from __future__ import annotations

import numpy as np

from ._style import despine, new_axes, new_axes_grid


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
    fig, axes = new_axes_grid(axes, 2, (12, 3.2), gridspec_kw=dict(width_ratios=[2, 1]))
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
    ax = new_axes(ax, (8, 2.8))
    annotations["pos"].value_counts().plot.bar(ax=ax, color="C0")
    ax.set(ylabel="words", title="universal part of speech")
    despine(ax)
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

    fig, axes = new_axes_grid(axes, 3, (13, 3.2))
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
    ax = new_axes(ax, (12, 3))
    z = lambda x: (x - x.mean()) / x.std()  # noqa: E731
    ax.plot(times, z(np.asarray(measured)), color="0.6", lw=1, label="measured (signal + noise)")
    ax.plot(times, z(np.asarray(clean)), color="C3", lw=1.5, label="planted clean signal")
    ax.set(xlabel="time in run 1 (s)", ylabel="z-scored BOLD", title=title)
    ax.legend(loc="upper right", frameon=False)
    despine(ax)
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
    ax = new_axes(ax, (8, 3))
    ax.bar(share.index, share.values, color="C3")
    ax.set(xlabel="position (words back from the most recent word; 0 = most recent)",
           ylabel="share of true importance", title=f"where the planted drivers lie, {n_trs} TRs of run 1")
    despine(ax)
    return ax
