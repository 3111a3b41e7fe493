"""Any text as the stimulus: a plain-text file of paragraphs, or a table of word timings.

The built-in simulated subjects can read any text (``load_dataset("builtin", text=path)``):

- a **plain-text file** (UTF-8): paragraphs separated by blank lines, or one paragraph per line
  when there is no blank line. It is shown word by word like the built-in text (RSVP,
  :func:`~brainattr.data.builtin.rsvp_timing`), in runs cut at paragraph boundaries
  (:func:`~brainattr.data.builtin.split_runs`; at sentence ends when there are fewer paragraphs
  than runs);
- a **word-timing table** (``.tsv``, tab-separated, UTF-8) with columns ``word``, ``onset``
  (seconds from the start of the word's run, as in BIDS events files), ``run`` and optionally
  ``duration`` (seconds): its timing is used as given, each run's TRs running from its start to
  ``lead_out`` seconds after its last word; ``timing="rsvp"`` shows its words with RSVP timing
  instead.

Characters and dialogue are inferred from the text (:func:`~brainattr.data.annotate.annotate_words`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd

from ..schema import DataError, Stimulus
from ..trs import TRIM
from ._common import MIN_RUN_TRS, cut_stimulus
from .annotate import word_annotations
from .builtin import paragraph_stimulus

#: Suffixes read as word-timing tables; anything else is read as plain text.
TIMING_SUFFIXES = (".tsv",)
#: Columns a word-timing table must have; ``duration`` is optional.
TIMING_COLUMNS = ("word", "onset", "run")
#: Cells read as "no value" in a timing table (BIDS writes ``n/a``).
NA_VALUES = ("", "n/a", "N/A", "NaN", "nan")
#: Fewest paragraphs per run for runs to be cut at paragraph boundaries; fewer: at sentence ends.
UNITS_PER_RUN = 3
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*$")


def read_utf8(path) -> str:
    """The text of a UTF-8 file (a byte-order mark is dropped).

    Raises
    ------
    DataError
        The file is missing, is not UTF-8 (naming the first bad byte and how to convert it), or
        holds no word.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"text file {path} not found; give the path of a UTF-8 plain-text file (.txt) or word-timing "
                        "table (.tsv).")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise DataError(f"{path} is not UTF-8 text: byte {raw[err.start:err.start + 1]!r} at offset {err.start} "
                        f"(line {line}) cannot be decoded. Convert the file to UTF-8, e.g. `iconv -f latin1 -t utf-8 "
                        f"{path.name} > {path.stem}.utf8{path.suffix}` (use the file's real encoding), or re-save it "
                        "as UTF-8 in your editor.") from None
    if not text.split():
        raise DataError(f"{path} holds no words ({len(raw)} bytes, all blank); give a text with words in it.")
    return text


def text_paragraphs(text: str) -> list:
    """Paragraphs of a plain text, each a list of its whitespace-separated words.

    Paragraphs are separated by blank lines (hard-wrapped lines within one are joined); a text
    with no blank line has one paragraph per non-empty line (the built-in text's layout).

    Returns
    -------
    list of list of str
    """
    lines = text.splitlines()
    if any(not ln.strip() for ln in lines[1:-1]) and sum(1 for ln in lines if ln.strip()) > 1:
        blocks = re.split(r"\n\s*\n", "\n".join(lines))
    else:
        blocks = lines
    return [b.split() for b in blocks if b.split()]


def sentence_units(paragraphs, n_runs: int) -> list:
    """``paragraphs``, or their sentences when there are fewer than :data:`UNITS_PER_RUN` paragraphs per run.

    Runs are cut between units; a text of a few long paragraphs still splits into runs of
    similar length.

    Returns
    -------
    list of list of str
    """
    if len(paragraphs) >= UNITS_PER_RUN * n_runs:
        return paragraphs
    units = []
    for p in paragraphs:
        current = []
        for w in p:
            current.append(w)
            if _SENTENCE_END.search(w):
                units.append(current)
                current = []
        if current:
            units.append(current)
    return units


def read_word_timing(path, run=None) -> pd.DataFrame:
    """Read and check a word-timing table (tab-separated, UTF-8).

    Parameters
    ----------
    path : str or Path
        Columns ``word``, ``onset`` (seconds from the start of the word's run), ``run`` (any
        labels, e.g. 1, 2, ... or BIDS run labels) and optionally ``duration`` (seconds); other
        columns are ignored. Rows whose ``word`` is empty or ``n/a`` (e.g. silence events) are
        dropped.
    run : str or None
        The run of every row of a table without a ``run`` column (a BIDS events file of one run).

    Returns
    -------
    pandas.DataFrame
        Columns ``word`` (str), ``onset``, ``duration`` (float; 0 where not given), ``run`` (str),
        ``line`` (the row's line in the file), in file order.

    Raises
    ------
    DataError
        Naming the file, the line and the fix: missing columns, non-numeric or negative onsets,
        runs not in contiguous blocks, onsets going back in time within a run, no word at all.
    """
    path = Path(path)
    text = read_utf8(path)
    try:
        table = pd.read_csv(StringIO(text), sep="\t", dtype=str, keep_default_na=False)
    except pd.errors.ParserError as err:
        raise DataError(f"{path} is not a tab-separated table ({err}); write one row per word with tab-separated "
                        f"columns {', '.join(TIMING_COLUMNS)} (and optionally duration).") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    if run is not None and "run" not in table.columns:
        table["run"] = str(run)
    missing = [c for c in TIMING_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: the word-timing table lacks column(s) {missing} (it has {list(table.columns)}); "
                        f"give a header row with tab-separated columns {', '.join(TIMING_COLUMNS)} (and optionally "
                        "duration); onsets in seconds from the start of each run.")
    table["line"] = np.arange(len(table)) + 2            # line 1 is the header
    table["word"] = table["word"].str.strip()
    table = table[~table["word"].isin(NA_VALUES)].reset_index(drop=True)
    if table.empty:
        raise DataError(f"{path}: the word-timing table has no word (every `word` cell is empty or n/a).")
    out = pd.DataFrame({"word": table["word"], "run": table["run"].str.strip(), "line": table["line"]})
    for col in ("onset", "duration"):
        raw = table[col].str.strip() if col in table else pd.Series("0", index=table.index)
        values = pd.to_numeric(raw.where(~raw.isin(NA_VALUES), "0" if col == "duration" else "nan"), errors="coerce")
        bad = np.flatnonzero(~np.isfinite(values.to_numpy(dtype=float)) | (values.to_numpy(dtype=float) < 0))
        if bad.size:
            i = bad[0]
            raise DataError(f"{path} line {table['line'][i]}: {col} {raw[i]!r} of word {table['word'][i]!r} is not a "
                            f"non-negative number of seconds ({bad.size} such row(s)); fill in the {col}s, in seconds "
                            "from the start of the run.")
        out[col] = values.to_numpy(dtype=float)
    if out["run"].isin(NA_VALUES).any():
        i = int(np.flatnonzero(out["run"].isin(NA_VALUES))[0])
        raise DataError(f"{path} line {out['line'][i]}: word {out['word'][i]!r} has no run; give every word its run.")
    run_order = list(dict.fromkeys(out["run"]))
    blocks = 1 + int(np.count_nonzero(out["run"].to_numpy()[1:] != out["run"].to_numpy()[:-1]))
    if blocks != len(run_order):
        raise DataError(f"{path}: the rows of each run must be together, in run order, but the run column switches "
                        f"back to an earlier run ({blocks} blocks for {len(run_order)} runs); sort the rows by run, "
                        "then onset.")
    back = np.flatnonzero((np.diff(out["onset"]) < 0) & (out["run"].to_numpy()[1:] == out["run"].to_numpy()[:-1]))
    if back.size:
        i = back[0] + 1
        raise DataError(f"{path} line {out['line'][i]}: onset {out['onset'][i]} s of {out['word'][i]!r} is before the "
                        f"previous word's ({out['onset'][i - 1]} s) in run {out['run'][i]}; sort the words of each run "
                        "by onset (onsets are seconds from the start of the run).")
    return out


def timing_stimulus(table, *, name: str, source: str, tr: float = 2.0, lead_out: float = 10.0) -> Stimulus:
    """A stimulus with the word timing of a :func:`read_word_timing` table, runs laid end to end.

    Each run's TRs start at its onset 0 and last until ``lead_out`` seconds after its last word
    ends (``onset + duration``).

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``word``, ``onset``, ``duration``, ``run`` (runs in contiguous blocks).
    name, source : str
    tr, lead_out : float

    Returns
    -------
    Stimulus
        Without annotations.
    """
    runs = list(dict.fromkeys(table["run"]))
    onsets, word_runs, tr_times, tr_runs, start = [], [], [], [], 0.0
    for k, run in enumerate(runs):
        rows = table[table["run"] == run]
        end = float((rows["onset"] + rows["duration"]).max()) + lead_out
        n_trs = max(int(np.ceil(end / tr)), int(np.floor(rows["onset"].max() / tr)) + 1)
        onsets.append(start + rows["onset"].to_numpy(dtype=float))
        word_runs.append(np.full(len(rows), k))
        tr_times.append(start + tr * np.arange(n_trs))
        tr_runs.append(np.full(n_trs, k))
        start += tr * n_trs
    return Stimulus(name=name, words=table["word"].to_numpy(dtype=str), word_onsets=np.concatenate(onsets),
                    word_runs=np.concatenate(word_runs), tr_times=np.concatenate(tr_times),
                    tr_runs=np.concatenate(tr_runs), tr=tr, source=source)


def check_stimulus_length(stimulus: Stimulus, path, context=None, trim=TRIM, min_run_trs=MIN_RUN_TRS) -> None:
    """Raise :class:`DataError` if a text is too short for the pipeline.

    Parameters
    ----------
    stimulus : Stimulus
    path : str or Path
        The text's file, named in the error.
    context : int or None
        Words of context each attributed TR reads; the text must be longer.
    trim : (int, int)
        TRs the pipeline drops at each end of each run.
    min_run_trs : int
        Fewest TRs a run needs: the trim plus a few for leave-one-run-out.
    """
    n = stimulus.n_words
    if context is not None and n <= int(context):
        raise DataError(f"{path} has {n} words, no more than the context of {int(context)} words each attributed TR "
                        "reads; use a longer text or a smaller `context`.")
    runs, counts = np.unique(stimulus.tr_runs, return_counts=True)
    if runs.size < 2:
        raise DataError(f"{path} gives {runs.size} run; leave-one-run-out cross-validation needs at least 2. Give a "
                        "text of several paragraphs (or sentences), or, for a timing table, a run column with at "
                        "least 2 runs.")
    if counts.min() < min_run_trs:
        raise DataError(f"{path} is too short: its {n} words make {runs.size} runs of {counts.min()} to {counts.max()} "
                        f"TRs (about {n / runs.size:.0f} words per run), but the pipeline drops {trim[0]} + {trim[1]} "
                        f"TRs at the ends of every run and needs at least {min_run_trs} TRs in each. Use a longer text "
                        "or fewer runs (n_runs; for a timing table, fewer run labels).")


def _first_words(paragraphs, n):
    kept, total = [], 0
    for p in paragraphs:
        if total >= n:
            break
        kept.append(p[:n - total])
        total += len(kept[-1])
    return kept


def load_text_stimulus(path, *, timing=None, n_runs: int = 4, word_duration: float = 0.5, tr: float = 2.0,
                       lead_in: float = 20.0, lead_out: float = 10.0, max_words: int | None = None,
                       annotate: bool = True, context: int | None = None) -> Stimulus:
    """Read a text (plain or word-timing table) as the stimulus of simulated subjects.

    Parameters
    ----------
    path : str or Path
        A UTF-8 plain-text file (paragraphs), or a ``.tsv`` word-timing table
        (:func:`read_word_timing`).
    timing : {"rsvp", "given"} or None
        ``"rsvp"``: one word every ``word_duration`` s, runs cut at paragraph (or sentence)
        boundaries; ``"given"`` (tables only): the table's onsets and runs. None: ``"given"`` for
        tables, ``"rsvp"`` for plain text.
    n_runs : int
        Runs of the RSVP presentation (fewer when there are fewer paragraphs and sentences).
    word_duration, tr, lead_in, lead_out : float
        Seconds each word is shown (RSVP), repetition time, fixation before the first word of
        each run (RSVP) and after its last word.
    max_words : int or None
        Keep the first ``max_words`` words (RSVP), or about ``max_words`` words spread over the
        runs (given timing, :func:`~brainattr.data.cut_stimulus`).
    annotate : bool
        Attach spaCy annotations, the characters inferred from the text.
    context : int or None
        Words of context an attributed TR reads: a text not longer than that is an error.

    Returns
    -------
    Stimulus
        Named ``text_<file stem>``; ``source`` names the file and its SHA-256.

    Raises
    ------
    DataError
        A missing, empty or non-UTF-8 file, a malformed table, or a text too short for the
        pipeline (:func:`check_stimulus_length`).
    """
    path = Path(path)
    is_table = path.suffix.lower() in TIMING_SUFFIXES
    timing = timing or ("given" if is_table else "rsvp")
    if timing not in ("rsvp", "given"):
        raise DataError(f"timing must be 'rsvp' or 'given', got {timing!r}.")
    if timing == "given" and not is_table:
        raise DataError(f"{path}: timing='given' needs a word-timing table (.tsv with columns word, onset, run); a "
                        "plain text has no timing, use timing='rsvp'.")
    digest = hashlib.sha256(read_utf8(path).encode("utf-8")).hexdigest()[:12]
    name = "text_" + (re.sub(r"[^A-Za-z0-9]+", "_", path.stem).strip("_") or "stimulus")
    source = f"{path.name} (sha256 {digest})"
    rsvp = dict(word_duration=word_duration, tr=tr, lead_in=lead_in, lead_out=lead_out, max_words=max_words,
                annotate=False)
    if is_table:
        table = read_word_timing(path)
        if timing == "rsvp":
            paragraphs = [list(table.loc[table["run"] == r, "word"]) for r in dict.fromkeys(table["run"])]
            stimulus = paragraph_stimulus(paragraphs, name=name, source=source + ", RSVP timing",
                                          n_runs=len(paragraphs), **rsvp)
        else:
            full = timing_stimulus(table, name=name, source=source + ", its own timing", tr=tr, lead_out=lead_out)
            stimulus, _ = cut_stimulus(full, max_words)
    else:
        paragraphs = text_paragraphs(read_utf8(path))
        if max_words is not None:       # cut first, so the runs are balanced over the words kept
            paragraphs = _first_words(paragraphs, int(max_words))
        units = sentence_units(paragraphs, n_runs)
        stimulus = paragraph_stimulus(units, name=name, source=source + ", RSVP timing", n_runs=n_runs, **rsvp)
    check_stimulus_length(stimulus, path, context)      # before spaCy runs
    if annotate:
        stimulus = dataclasses.replace(stimulus, annotations=word_annotations(stimulus.words))
    return stimulus
