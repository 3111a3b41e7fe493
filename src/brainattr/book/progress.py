"""Progress of long runs on a terminal: each notebook's computed stages as they finish, a heartbeat."""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from ..cache import VERDICT_STAGE


def say(message: str) -> None:
    """Print a line on stdout without breaking a progress bar that is being drawn (``tqdm.write``)."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()


#: Fields of a stage record shown in its progress line, in this order (with their labels).
_STAGE_FIELDS = (("method", "{}"), ("model", "{}"), ("layer", "layer {}"), ("layers", "{} layer(s)"),
                 ("context", "{}-word context"), ("trs", "{} TR(s)"), ("subjects", "{} subject(s)"),
                 ("voxels", "{} voxels"))


#: Seconds between two "still running" lines while a notebook computes and no stage finishes.
HEARTBEAT_S = 300.0


def format_duration(seconds: float) -> str:
    """``42 s``, ``12.5 min`` or ``3.2 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_stage(record: dict) -> str:
    """One line for a stage record of the stage log, e.g. ``attribution (gxi, smollm2-135m, layer 15) 12 s``.

    Parameters
    ----------
    record : dict
        A record written by :func:`brainattr.cache.log_stage` (``stage``, ``seconds`` and details).

    Returns
    -------
    str
    """
    details = [label.format(record[key]) for key, label in _STAGE_FIELDS if record.get(key) not in (None, "")]
    shown = f" ({', '.join(str(d) for d in details)})" if details else ""
    return f"{record.get('stage', '?')}{shown} in {format_duration(float(record.get('seconds') or 0))}"


class StageProgress:
    """Print a notebook's computed stages while papermill runs it, by tailing the stage log.

    The notebooks' pipeline stages append one JSON line each to the stage log when they finish
    (:func:`brainattr.cache.log_stage`, through ``$BRAINATTR_STAGE_LOG``). A background thread reads
    the lines appended since the notebook started and echoes each of this notebook's stages
    (:func:`format_stage`); when nothing has been printed for ``heartbeat`` seconds it prints that
    the notebook is still running, so a run at paper scale never stays silent for hours.

    Parameters
    ----------
    path : Path
        The stage log.
    notebook : str
        Only records of this notebook (their ``notebook`` field; records without one too) are shown.
    echo : callable
        Called with each line (from the background thread).
    interval : float
        Seconds between two reads of the log.
    heartbeat : float, optional
        Seconds of silence before a "still running" line (default :data:`HEARTBEAT_S`); None: never.
    prefix : str
        Put before each line (indentation).

    Examples
    --------
    >>> with StageProgress(log, "03_attribution", print):      # doctest: +SKIP
    ...     execute_notebook(...)
    """

    def __init__(self, path: Path, notebook: str, echo=say, interval: float = 1.0,
                 heartbeat: float | None = HEARTBEAT_S, prefix: str = "      "):
        self.path, self.notebook, self.echo = Path(path), notebook, echo
        self.interval, self.heartbeat, self.prefix = interval, heartbeat, prefix
        self.stages: list[dict] = []
        self._offset = 0
        self._rest = b""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = self._last_said = time.monotonic()

    def __enter__(self) -> StageProgress:
        self._offset = self.path.stat().st_size if self.path.is_file() else 0  # earlier lines are not this run's
        self._started = self._last_said = time.monotonic()
        self._thread = threading.Thread(target=self._watch, name=f"stage-progress-{self.notebook}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.poll()  # stages logged just before the notebook ended

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
                now = time.monotonic()
                if self.heartbeat is not None and now - self._last_said >= self.heartbeat:
                    last = f"; last stage: {self.stages[-1].get('stage')}" if self.stages else ""
                    self.say(f"… {self.notebook} still running ({format_duration(now - self._started)} so far{last})")
            except Exception:  # progress must never break a run
                pass

    def say(self, line: str) -> None:
        self._last_said = time.monotonic()
        self.echo(self.prefix + line)

    def poll(self) -> list[dict]:
        """Read the lines appended since the last call; echo this notebook's stages; return them."""
        if not self.path.is_file():
            return []
        size = self.path.stat().st_size
        if size < self._offset:  # the log was rewritten (another notebook's records dropped)
            self._offset, self._rest = 0, b""
        if size == self._offset:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read(size - self._offset)
        self._offset += len(data)
        *lines, self._rest = (self._rest + data).split(b"\n")
        new = []
        for line in lines:
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(record, dict) and record.get("notebook") in (self.notebook, None):
                new.append(record)
                self.stages.append(record)
                if record.get("stage") != VERDICT_STAGE:  # a verdict is not a stage that took time
                    self.say(format_stage(record))
        return new

