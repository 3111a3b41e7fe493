"""On-disk cache location and atomic writes (nothing half-written is ever left on disk)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

#: Environment variable that moves the cache (models, features, fitted encoders, attributions).
CACHE_ENV = "BRAINATTR_CACHE"
#: Name of the cache folder in the platform's user cache folder (see :func:`cache_root`).
CACHE_APP = "brainattr"
#: The ``stage`` of the records a chapter's verdicts leave in the stage log (not a computation).
VERDICT_STAGE = "verdict"
#: Environment variable naming a JSON-lines file where computed stages log their cost (set by the runner).
STAGE_LOG_ENV = "BRAINATTR_STAGE_LOG"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_cache_root() -> Path:
    """The platform's user cache folder for brainattr, used when ``$BRAINATTR_CACHE`` is unset.

    ``platformdirs.user_cache_dir("brainattr")``: ``$XDG_CACHE_HOME/brainattr`` (default
    ``~/.cache/brainattr``) on Linux, ``~/Library/Caches/brainattr`` on macOS,
    ``%LOCALAPPDATA%\\brainattr\\Cache`` on Windows.
    """
    import platformdirs

    return Path(platformdirs.user_cache_dir(CACHE_APP, appauthor=False))


def cache_root() -> Path:
    """The cache folder every entry point shares (notebooks run by hand, the runner, the tests).

    Returns
    -------
    Path
        ``$BRAINATTR_CACHE`` if set (``~`` expanded), else :func:`default_cache_root`. Not created.
    """
    explicit = os.environ.get(CACHE_ENV)
    return Path(explicit).expanduser() if explicit else default_cache_root()


def cache_dir(*parts: str) -> Path:
    """The cache folder (:func:`cache_root`), or a sub-folder of it, created.

    Parameters
    ----------
    *parts : str
        Sub-folder names, e.g. ``cache_dir("features", key)``.

    Returns
    -------
    Path
        The folder, created with its parents if missing.
    """
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_key(**fields) -> str:
    """A short stable hash of keyword fields (JSON-serialisable values), for cache file names."""
    blob = json.dumps(fields, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def array_hash(*arrays) -> str:
    """A short stable hash of arrays' shapes, dtypes and bytes, for cache keys."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    A run killed inside the block leaves ``path`` untouched (old content or absent).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder next to ``path``; move it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_npz(path, **arrays) -> None:
    """``np.savez`` written atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_npz(path) -> dict:
    """Load an ``.npz`` written by :func:`save_npz` into a dict of arrays."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def log_stage(stage: str, seconds: float, **info) -> None:
    """Log the cost of one computed stage (see :func:`stage_timer`); no-op unless ``$BRAINATTR_STAGE_LOG`` is set.

    Appends one JSON line ``{"stage", "seconds", "notebook", **info}``: one short append per
    event, so concurrent writers never interleave a line.
    """
    path = os.environ.get(STAGE_LOG_ENV)
    if not path:
        return
    record = dict(stage=stage, seconds=round(float(seconds), 3), notebook=os.environ.get("BRAINATTR_NOTEBOOK"),
                  **info)
    with open(path, "a") as fh:
        fh.write(json.dumps(record, default=str) + "\n")


@contextlib.contextmanager
def stage_timer(stage: str, **info):
    """Time a block of real computation and :func:`log_stage` it when it finishes without error.

    Wrap only the computing branch, so cache hits are not logged.
    """
    start = time.perf_counter()
    yield
    log_stage(stage, time.perf_counter() - start, **info)


def read_stage_log(path) -> list[dict]:
    """The records of a stage log; a line cut short by a killed process is skipped."""
    records = []
    path = Path(path)
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
