"""The pages the book includes that a run generates: parameters, timings, stage costs, verdicts, benchmarks."""
from __future__ import annotations

import json
from pathlib import Path

from ..cache import VERDICT_STAGE, atomic_path, read_stage_log
from .params import Config, parameter_reference

#: Per-stage cost records of the notebooks' runs (JSON lines, see :func:`brainattr.cache.log_stage`).
STAGE_LOG = "stages.jsonl"


#: The paper's Appendix J, hours on one H100, per stage (for the compute table).
PAPER_HOURS = {"feature extraction": "≈ 2 h (5 models × 2 datasets)", "encoding": "≈ 219 h",
               "attribution (gxi)": "≈ 1,501 h (BA); NWP ≈ 3.6 h", "attribution (ig)": "≈ 329 h"}


def forget_stages(path: Path, notebook: str) -> None:
    """Drop one notebook's records from the stage log (atomically), before it runs again."""
    records = read_stage_log(path)
    if not any(r.get("notebook") == notebook for r in records):
        return
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records if r.get("notebook") != notebook))


def stages_markdown(build_dir: Path) -> str:
    """What each pipeline stage cost in the latest run of every notebook, beside the paper's Appendix J.

    Parameters
    ----------
    build_dir : Path
        The build folder holding the stage log (:data:`STAGE_LOG`).

    Returns
    -------
    str
        A Markdown table: stage, seconds in this run, seconds per unit (layer, fit or subject-TR),
        the notebooks that computed it, and the paper's hours (:data:`PAPER_HOURS`).
    """
    records = [r for r in read_stage_log(Path(build_dir) / STAGE_LOG) if r.get("stage") != VERDICT_STAGE]
    if not records:
        return "*No stage was computed in the recorded runs (everything came from the cache).*\n"
    rows = {}
    for r in records:
        # attribution rows per method and context; the paper's hours are per method
        paper_key = r["stage"] if r["stage"] != "attribution" else f"attribution ({r.get('method')})"
        key = paper_key if r["stage"] != "attribution" else \
            f"attribution ({r.get('method')}, {r.get('context')}-word context)"
        row = rows.setdefault(key, {"seconds": 0.0, "events": 0, "units": 0, "notebooks": set(),
                                    "paper": PAPER_HOURS.get(paper_key, "")})
        row["seconds"] += float(r["seconds"])
        row["events"] += 1
        # an attribution unit is one TR of one subject (a pass shared by subjects counts each)
        row["units"] += int(r.get("trs") or r.get("layers") or 0) * int(r.get("subjects") or 1) \
            if r["stage"] != "encoding" else 1
        row["notebooks"].add(r.get("notebook") or "?")
    unit = {"feature extraction": "layer", "encoding": "fit"}
    lines = ["| Stage | This run | Per unit | Notebooks | The paper (one H100) |", "|---|---|---|---|---|"]
    for key in sorted(rows):
        row = rows[key]
        u = unit.get(key, "subject-TR")
        per = f"{row['seconds'] / row['units']:.2f} s per {u}" if row["units"] else ""
        lines.append(f"| {key} | {row['seconds']:.0f} s ({row['events']} runs) | {per} | "
                     f"{', '.join(sorted(row['notebooks']))} | {row['paper']} |")
    return "\n".join(lines) + "\n"


def verdicts_markdown(build_dir: Path) -> str:
    """Every verdict of the latest run of every notebook, as the chapters computed them.

    Parameters
    ----------
    build_dir : Path
        The build folder holding the stage log (:data:`STAGE_LOG`), where
        :func:`brainattr.pipeline.verdict_table` leaves one record per verdict.

    Returns
    -------
    str
        A Markdown table: chapter, claim, this run's estimate with its 95 % CI, the null, the
        paper's statement and figure, and the verdict.
    """
    records = [r for r in read_stage_log(Path(build_dir) / STAGE_LOG) if r.get("stage") == VERDICT_STAGE]
    if not records:
        return "*No verdict was recorded: run the chapters (`brainattr run-all`) to fill this table.*\n"

    def number(x):
        return "—" if x is None or x != x else f"{float(x):.3g}"

    lines = ["| Chapter | Claim | This run [95 % CI] | Null | The paper | Verdict |", "|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (str(r.get("notebook")), str(r.get("claim_id")))):
        ci = f" [{number(r.get('ci_low'))}, {number(r.get('ci_high'))}]"
        lines.append(f"| {r.get('notebook') or '?'} | {r.get('claim')} (`{r.get('claim_id')}`) | "
                     f"{number(r.get('estimate'))}{ci} | {number(r.get('null'))} | {r.get('paper')} "
                     f"({r.get('figure')}) | **{r.get('verdict')}** |")
    return "\n".join(lines) + "\n"


def timings_markdown(build_dir: Path, names: list[str] | None = None) -> str:
    """The compute table (from ``timings.json``) as Markdown.

    Parameters
    ----------
    build_dir : Path
        The build folder holding ``timings.json``.
    names : list of str, optional
        The notebooks to list, in order (default: every one recorded); one not recorded is "not run".

    Returns
    -------
    str
        The host, then a table of notebook, profile (and overrides), status and wall time, with the total.
    """
    path = Path(build_dir) / "timings.json"
    if not path.is_file():
        return "*No timings recorded yet: run `python -m brainattr run-all`.*\n"
    data = json.loads(path.read_text())
    host = data.get("host", {})
    lines = [f"Measured on {host.get('cpus', '?')} CPU core(s), {host.get('platform', '?')}, "
             f"Python {host.get('python', '?')}; last updated {data.get('updated', '?')}.", "",
             "| Notebook | Profile | Status | Wall time |", "|---|---|---|---|"]
    total = 0.0
    recorded = data.get("notebooks", {})
    for name in (names if names is not None else list(recorded)):
        if name not in recorded:
            lines.append(f"| `{name}` | | not run | |")
            continue
        e = recorded[name]
        secs = float(e.get("seconds") or 0)
        total += secs
        extra = "".join(f" `{k}={json.dumps(v)}`" for k, v in (e.get("overrides") or {}).items())
        lines.append(f"| `{name}` | `{e.get('profile', '?')}`{extra} | {e.get('status', '?')} | "
                     f"{secs / 60:.1f} min ({secs:.0f} s) |")
    lines.append(f"| **total** | | | **{total / 60:.1f} min** |")
    return "\n".join(lines) + "\n"


#: Committed benchmark results (JSON written by ``benchmarks/bench_*.py``), relative to the repository.
BENCHMARK_RESULTS = Path("benchmarks") / "results"


def _times(value, digits=2):
    """``1.23×``, or "not measured" for a ratio a benchmark skipped (None or absent)."""
    return "not measured" if value is None else f"{value:.{digits}f}×"


def _seconds(value):
    return "not measured" if value is None else f"{value:.3g} s"


def _hours(value):
    return f"{value:,.0f} h" if value >= 10 else f"{value:.1f} h" if value >= 1 else f"{value:.3f} h"


def benchmarks_markdown(results_dir: Path) -> str:
    """The committed benchmark results as Markdown tables (for App. J): attribution, ridge, GPU targets.

    Parameters
    ----------
    results_dir : Path
        Folder of ``bench_attribution*.json``, ``bench_ridge*.json`` and ``gpu_check_*.json`` files
        (``benchmarks/gpu_check.py`` writes the last: each GPU target against its threshold).

    Returns
    -------
    str
        One Markdown table per kind of result, or a sentence saying none is committed.
    """
    results_dir = Path(results_dir)
    attribution = [json.loads(p.read_text()) for p in sorted(results_dir.glob("bench_attribution*.json"))]
    ridge = [json.loads(p.read_text()) for p in sorted(results_dir.glob("bench_ridge*.json"))]
    checks = [json.loads(p.read_text()) for p in sorted(results_dir.glob("gpu_check_*.json"))]
    if not attribution and not ridge and not checks:
        return "*No benchmark results are committed yet: run the scripts in `benchmarks/`.*\n"
    lines = []

    def where(r):
        m = r["machine"]
        return m.get("gpu") or f"CPU, {m.get('threads', '?')} threads"
    if checks:
        lines += ["| GPU target | Device, date | Measured | Target | Met? |", "|---|---|---|---|---|"]
        for check in checks:
            for name, t in check["targets"].items():
                value = "not measured" if t["value"] is None else f"{t['value']:.3g}"
                met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
                lines.append(f"| {t['what']} | {check['device'].upper()}, {check['date']} | {value} | "
                             f"{t['comparison']} {t['threshold']:g} | {met} |")
        lines.append("")
    if attribution:
        lines += ["| Model | Device | Precision | Context (tokens / TR) | Subjects | Ceiling fwd+bwd | BA GxI | "
                  "BA GxI / first-L ceiling | BA GxI / whole-model ceiling | NWP GxI / ceiling | "
                  "Shared pass, per subject-TR | vs one call per subject | Naive captum loop | Ours vs naive | "
                  "IG per TR | Paper's GxI for this model at this context, on this device |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in attribution:
            s, t, sec, x = r["setup"], r["tokens_per_second"], r["seconds_per_subject_tr"], r["extrapolation"]
            ratio = r["ratios"]
            lines.append(
                f"| {s['model']} (layer {s['layer']}/{s['n_layers']}) | {where(r)} | {s['precision']} | "
                f"{s['context']} words ({s['tokens'] / s['trs']:.0f}) | {s['subjects']} | "
                f"{t['ceiling_fwd_bwd']:,.0f} tok/s | {t['ours_ba_gxi']:,.0f} tok/s | "
                f"{_times(ratio.get('ba_gxi_over_first_L_ceiling'))} | {_times(ratio['ba_gxi_over_ceiling'])} | "
                f"{_times(ratio.get('nwp_gxi_over_ceiling'))} | {sec['ours_subjects_shared']:.3g} s | "
                f"{ratio['subjects_shared_speedup']:.2f}× faster | {_seconds(sec.get('naive_ba_gxi'))} | "
                f"{_times(ratio.get('shared_vs_naive_speedup'), 1)} | {_seconds(sec.get('ours_ig'))} | "
                f"{_hours(x['paper_gxi_hours_for_this_model'])} |")
        lines.append("")
    if ridge:
        lines += ["| Ridge fit | Device | Backend, dtype | Voxels × features × TRs | Outer × inner folds, penalties | "
                  "Wall time |", "|---|---|---|---|---|---|"]
        for r in ridge:
            s = r["setup"]
            lines.append(f"| leave-one-run-out, per-voxel λ | {where(r)} | {s['backend']}, {s['dtype']} | "
                         f"{s['voxels']:,} × {s['design_columns']:,} × {s['trs']:,} | {s['outer_folds']} × "
                         f"{s['inner_folds']}, {s['alphas']} | {r['seconds']['fit']:.1f} s |")
        lines.append("")
    return "\n".join(lines)


def write_book_inputs(config: Config, build_dir: Path | None = None) -> list[Path]:
    """Write the generated pages the book includes: parameters, timings, stage costs, benchmarks.

    Parameters
    ----------
    config : Config
    build_dir : Path, optional
        Where the pages go (default: params.yml's build folder).

    Returns
    -------
    list of Path
        ``parameters.md``, ``timings.md``, ``stages.md``, ``verdicts.md`` and ``benchmarks.md``, each
        written atomically.
    """
    build_dir = Path(build_dir or config.build_dir)
    written = []
    for name, text in (("parameters.md", parameter_reference(config)),
                       ("timings.md", timings_markdown(build_dir, config.names)),
                       ("stages.md", stages_markdown(build_dir)),
                       ("verdicts.md", verdicts_markdown(build_dir)),
                       ("benchmarks.md", benchmarks_markdown(config.root / BENCHMARK_RESULTS))):
        path = build_dir / name
        with atomic_path(path) as tmp:
            tmp.write_text(text)
        written.append(path)
    return written
