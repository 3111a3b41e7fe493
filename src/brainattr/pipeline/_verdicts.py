"""One verdict rule over the paper's claims table, for every chapter."""
from __future__ import annotations


import numpy as np
import pandas as pd

from .. import claims, stats
from ..cache import VERDICT_STAGE, log_stage


# --------------------------------------------------------------------------------------------
# "Paper vs this run": one verdict rule
# --------------------------------------------------------------------------------------------
#: Columns of :func:`verdict_table`.
VERDICT_COLUMNS = ["claim", "paper", "paper_low", "paper_high", "direction", "estimate", "ci_low", "ci_high", "null",
                   "null used", "n_blocks", "verdict", "units", "in the paper"]


def verdict_table(rows):
    """A chapter's "paper vs this run" table: every verdict from :func:`brainattr.stats.verdict`.

    For each row, the paper's stated range (:func:`brainattr.claims.paper_range`) and direction
    (:func:`brainattr.claims.direction`) are read from the one table of the paper's claims, and
    :func:`brainattr.stats.verdict` compares them with this run's estimate and 95 % CI:
    "reproduced" when the CI overlaps the paper's range, "same direction" when the estimate lies
    on the paper's side of the null and the CI excludes the null, "not reproduced" otherwise,
    "not comparable" where the paper gives neither a number nor a direction (or this run has no
    CI). No chapter writes a verdict by hand.

    Parameters
    ----------
    rows : sequence of tuples
        ``(claim_id, estimate, null)`` or ``(claim_id, estimate, null, label)``: ``estimate`` is a
        mapping with ``estimate`` (or ``mean_difference``), ``ci_low``, ``ci_high`` (and
        optionally ``n_blocks``), e.g. a row of :func:`block_means` or of
        :func:`brainattr.stats.compare_auc_blocks`, in the claim's ``units`` (an empty mapping:
        no estimate, "not comparable"); ``null`` the no-effect value this
        run compares with (the claim's ``null`` says which); ``label`` replaces the claim's
        short label (e.g. to name a layer group or a threshold).

    Returns
    -------
    pandas.DataFrame
        :data:`VERDICT_COLUMNS`, one row per entry of ``rows``: the claim, the paper's statement,
        range (``paper_low``, ``paper_high``; NaN where open) and ``direction``; this run's
        ``estimate``, ``ci_low``, ``ci_high``, the ``null`` value and what it is (``null used``),
        ``n_blocks`` (independent units behind the CI), the ``verdict``, the ``units`` and where
        the claim is in the paper.
    """
    out = []
    for row in rows:
        claim_id, est, null, *label = row
        c = claims.claim(claim_id)
        low, high = claims.paper_range(claim_id)
        direction = claims.direction(claim_id)
        values = {k: est.get(k, np.nan) for k in ("estimate", "mean_difference", "ci_low", "ci_high", "n_blocks")}
        estimate = float(values["estimate"] if "estimate" in est else values["mean_difference"])
        ci_low, ci_high = float(values["ci_low"]), float(values["ci_high"])
        null_value = np.nan if null is None else float(null)
        verdict = stats.verdict(estimate, ci_low, ci_high, low, high,
                                null=0.0 if null is None else null_value, direction=direction)
        # the runner gathers these records into the figures index (brainattr.book.runner.verdicts_markdown)
        log_stage(VERDICT_STAGE, 0.0, claim_id=claim_id, claim=label[0] if label else c["claim"],
                  estimate=estimate, ci_low=ci_low, ci_high=ci_high, null=null_value, verdict=verdict,
                  paper=c["paper"], figure=c["figure"])
        out.append({"claim": label[0] if label else c["claim"], "paper": c["paper"],
                    "paper_low": np.nan if low is None else low, "paper_high": np.nan if high is None else high,
                    "direction": direction or "", "estimate": estimate, "ci_low": ci_low, "ci_high": ci_high,
                    "null": null_value, "null used": c["null"], "n_blocks": values["n_blocks"], "verdict": verdict,
                    "units": c["units"], "in the paper": c["figure"]})
    return pd.DataFrame(out, columns=VERDICT_COLUMNS)


def verdict_summary(table):
    """The verdicts of :func:`verdict_table` in plain words, one Markdown bullet per row.

    Each bullet names the claim, the verdict, this run's estimate with its 95 % CI and the null,
    and the paper's range or direction, so a chapter states what its numbers show (negative
    results included) whatever the run.

    Returns
    -------
    str
        Markdown.
    """
    def num(x):
        return "—" if not np.isfinite(x) else f"{x:.3g}"

    lines = []
    for _, r in table.iterrows():
        if np.isfinite(r["paper_low"]) or np.isfinite(r["paper_high"]):
            low, high = r["paper_low"], r["paper_high"]
            paper = (f"{num(low)}" if low == high else f"{num(low)} to {num(high)}" if np.isfinite(low) and
                     np.isfinite(high) else f"> {num(low)}" if np.isfinite(low) else f"< {num(high)}")
        else:
            paper = f"{r['direction']} than the null" if r["direction"] else "no number"
        null = num(r["null"])
        if r["null used"] and r["null used"] != null:
            null += f", {r['null used']}"
        lines.append(f"- **{r['claim']}**: {r['verdict']}. This run: {num(r['estimate'])} "
                     f"[{num(r['ci_low'])}, {num(r['ci_high'])}] ({r['units'] or 'no units'}; null {null}); "
                     f"the paper: {paper}.")
    return "\n".join(lines)
