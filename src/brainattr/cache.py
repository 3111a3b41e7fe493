"""On-disk cache location, atomic writes and locks (nothing half-written is ever left on disk).

Many processes, on one machine or on the nodes of a cluster, may share one cache folder
(``brainattr sweep``): every write goes to a hidden temporary name tagged with its writer
(host and process id) and is renamed into place when complete (:func:`atomic_path`,
:func:`atomic_dir`); a read-modify-write holds a :func:`file_lock`; temporaries left by writers
that died are recognised by their tag and removed (:func:`remove_dead_temporaries`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
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
#: Environment variable: set to 1 where the shared file system has no ``flock`` (e.g. Lustre mounted
#: without ``-o flock``); :func:`file_lock` then uses lock files created with ``O_EXCL`` instead.
SOFT_LOCKS_ENV = "BRAINATTR_SOFT_LOCKS"
#: A temporary of another host is removed only when older than this (seconds): its writer's
#: process cannot be checked from here, and no single write takes that long.
STALE_TEMPORARY_S = 6 * 3600

#: Hidden temporaries and backups: ``.<target>.<host>-<pid>.<random>.tmp`` (or ``.old``).
_TAGGED = re.compile(r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[^.]+\.(?P<kind>tmp|old)$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def writer_tag() -> str:
    """``<host>-<pid>`` of this process, as written into the names of its temporaries."""
    return f"{_host()}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_dead_temporaries(folder, max_age_s: float = STALE_TEMPORARY_S) -> list[Path]:
    """Remove the hidden temporaries in ``folder`` whose writer is dead; keep those being written.

    A temporary is dead when its tag names this host and a process that no longer runs, when
    it names another host and is older than ``max_age_s``, or when it carries no tag (written
    before tags existed). A live writer's temporary is never touched, so a concurrent job's write
    cannot be pulled from under it. A dead writer's ``.old`` backup (:func:`atomic_dir`) goes too,
    unless its folder is missing: then it is the copy :func:`restore_dir` puts back.

    Parameters
    ----------
    folder : path
    max_age_s : float

    Returns
    -------
    list of Path
        What was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed, host, now = [], _host(), time.time()
    for entry in folder.iterdir():
        if not (entry.name.startswith(".") and entry.name.endswith((".tmp", ".old"))):
            continue
        match = _TAGGED.match(entry.name)
        if match is not None and match["kind"] == "old" and not (folder / match["target"]).exists():
            continue
        if match is None:
            dead = entry.name.endswith(".tmp")
        elif match["host"] == host:
            dead = not _pid_alive(int(match["pid"]))
        else:
            try:
                dead = now - entry.stat().st_mtime > max_age_s
            except FileNotFoundError:  # its writer renamed it into place meanwhile
                continue
        if dead:
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def restore_dir(path) -> bool:
    """Put back the previous version of folder ``path`` if a swap by :func:`atomic_dir` was cut short.

    :func:`atomic_dir` replaces a folder in two renames (the old one aside, the new one in);
    a process killed between them leaves ``path`` missing and the old version under a hidden
    ``.old`` name. Call this, under the lock that guards ``path``, before reading it.

    Returns
    -------
    bool
        True if a previous version was restored.
    """
    path = Path(path)
    if path.exists() or not path.parent.is_dir():
        return False
    backups = [p for p in path.parent.glob(f".{path.name}.*.old")
               if (m := _TAGGED.match(p.name)) and m["target"] == path.name and any(p.iterdir())]
    if not backups:
        return False
    newest = max(backups, key=lambda p: p.stat().st_mtime)
    os.replace(newest, path)
    return True


def file_lock(path, timeout: float = -1):
    """An inter-process lock on ``path`` (created if missing), for a read-modify-write.

    ``filelock.FileLock`` (``flock``; works on local disks and NFSv4), or
    ``filelock.SoftFileLock`` when ``$BRAINATTR_SOFT_LOCKS`` is 1 (a file created with ``O_EXCL``,
    for shared file systems without ``flock``; a process killed while holding it leaves the file,
    which must then be deleted by hand).

    Parameters
    ----------
    path : path
        The lock file (e.g. ``folder / ".lock"``).
    timeout : float
        Seconds to wait; -1 waits forever, 0 fails at once (``filelock.Timeout``).

    Returns
    -------
    filelock.BaseFileLock
        Use as a context manager.
    """
    import filelock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = filelock.SoftFileLock if os.environ.get(SOFT_LOCKS_ENV) == "1" else filelock.FileLock
    return kind(str(path), timeout=timeout)


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

    A run killed inside the block leaves ``path`` untouched (old content or absent). The
    temporary's name carries this process's :func:`writer_tag`, so that
    :func:`remove_dead_temporaries` can tell a dead writer's leftovers from a live one's.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{writer_tag()}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        raise


def _swap_in(tmp: Path, path: Path) -> None:
    """Move folder ``tmp`` onto ``path``, an existing folder: old one aside, new one in, old one gone.

    Between the two renames ``path`` is briefly missing; :func:`restore_dir` undoes a swap cut
    there. (Deleting ``path`` first, as a plain replace would, could lose it for good.)
    """
    old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{writer_tag()}.", suffix=".old"))
    os.replace(path, old)  # onto the empty placeholder folder
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)  # a file still open elsewhere (NFS) may keep it: harmless


@contextlib.contextmanager
def atomic_dir(path, replace: bool = True):
    """Yield a temporary folder next to ``path``; move it onto ``path`` only if the block succeeds.

    Parameters
    ----------
    path : path
        The folder to write.
    replace : bool
        What to do when ``path`` exists when the block ends (e.g. another process wrote it
        meanwhile): True replaces it (:func:`_swap_in`; a read-modify-write of one folder must
        hold a :func:`file_lock`), False keeps the existing folder and drops this one (for
        content that any writer computes the same, such as a part of a table).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{writer_tag()}.", suffix=".tmp"))
    try:
        yield tmp
        try:
            os.rename(tmp, path)  # fails when path is a folder that is not empty
        except OSError:
            if not path.exists():
                raise
            if replace:
                _swap_in(tmp, path)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
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
