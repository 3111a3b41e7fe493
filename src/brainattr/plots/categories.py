"""Chapter 5: linguistic categories of the important words (Fig. 4)."""
from __future__ import annotations

from ..analysis import CATEGORIES
from ._style import MARKED, MARKED_COLORS


def category_bars(shares, col="t", row=None, col_order=None, truth=False, errorbar="se", height=3.4, aspect=1.0,
                  ylabel="share of the category's words", title=None, row_order=None):
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
        E.g. ``row="model"`` with :func:`brainattr.plots.pool_models` rows for Fig. 4 per model
        and pooled.
    col_order, row_order : list, optional
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

    df = shares
    if col == "t" and "t" not in df:
        df = df.assign(t=(df["threshold"] * 100).round().astype(int).astype(str) + " %")
    grid = sns.catplot(df, x="category", y="share", hue="marked_by", col=col, row=row, col_order=col_order,
                       row_order=row_order,
                       kind="bar", errorbar=errorbar, order=list(CATEGORIES),
                       hue_order=MARKED + (["planted truth"] if truth else []), palette=MARKED_COLORS,
                       height=height, aspect=aspect)
    if row is not None and col is not None:  # seaborn's "row = a | col = b" overflows narrow panels
        grid.set_titles("{row_name} | " + ("t = {col_name}" if col == "t" else "{col_name}"), size=9)
    grid.set_axis_labels("", ylabel)
    if title:
        grid.figure.suptitle(title, y=1.03)
    return grid
