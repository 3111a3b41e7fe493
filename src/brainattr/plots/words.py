"""Words shaded by their attribution (HTML), and one TR's two readings side by side."""
from __future__ import annotations

import html

import numpy as np


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
