"""Execute the notebooks with papermill and build the book from the executed copies.

The flow (``brainattr book``):

1. :func:`run_notebooks` executes every notebook listed in ``params.yml``, in order, with the
   parameters of the chosen profile, into ``build/notebooks/NN_name.ipynb`` (the sources in
   ``notebooks/`` are never written). Wall time and status per notebook go to ``build/timings.json``.
   A failing notebook stops the run with :class:`NotebookFailed`, which names the notebook and the
   executed copy holding the traceback. In the executed copies, plumbing cells get the
   ``hide-input`` tag (:func:`plumbing_reason` states the rule). A run holds the build folder's
   lock (:data:`RUN_LOCK`) from start to end, so a second run into the same folder stops at once
   with :class:`BuildFolderBusy` instead of overwriting the first one's notebooks; give each run
   or model its own folder with ``--build-dir`` (``{profile}`` and ``{model}`` in it are filled
   in, :func:`expand_build_dir`). While a notebook runs, each
   pipeline stage it computes is printed as it finishes (:class:`StageProgress` tails the stage
   log), with a line every few minutes while nothing finishes, and on a terminal papermill's
   progress bar counts the cells.
2. :func:`write_book_inputs` writes the generated pages the book includes: ``build/parameters.md``
   (the parameter reference) and ``build/timings.md`` (the compute table); :func:`sync_toc` rewrites
   ``_toc.yml`` if the notebook list or titles in ``params.yml`` changed.
3. :func:`build_html` runs Jupyter Book 1 with execution off (``_config.yml``) and ``-W --keep-going``,
   so any Sphinx warning fails the build. HTML lands in ``_build/html``.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..cache import (
    CACHE_ENV,
    STAGE_LOG_ENV,
    atomic_path,
    cache_root,
    file_lock,
)
from .pages import STAGE_LOG, forget_stages, write_book_inputs
from .params import Config, ParamsError, load_config, resolve
from .progress import HEARTBEAT_S, StageProgress, format_duration, say

TOC_FILE = "_toc.yml"
CONFIG_FILE = "_config.yml"
#: Book pages (in ``book/``) placed before and after the notebooks in the table of contents.
PAGES_BEFORE = ["running", "teaching", "figures_index", "methods", "real_data"]
PAGES_AFTER = ["compute", "glossary", "bibliography"]

#: First line of a code cell that marks it as plumbing (hidden behind "Show code" in the book).
PLUMBING_MARKER = re.compile(r"^#\s*plumbing\b", re.IGNORECASE)
#: Tags that already decide how a cell's input is shown; a cell carrying one is left alone.
_VISIBILITY_TAGS = {"hide-input", "hide-cell", "remove-input", "remove-cell", "show-input"}


class NotebookFailed(RuntimeError):
    """A notebook raised during execution; ``output`` is the executed copy with the traceback."""

    def __init__(self, name: str, output: Path, detail: str):
        self.name, self.output, self.detail = name, output, detail
        super().__init__(f"Notebook {name} failed: {detail}\n"
                         f"The executed copy with the full traceback is {output}")


class BookBuildFailed(RuntimeError):
    """Jupyter Book reported an error or a warning."""


class BuildFolderBusy(RuntimeError):
    """Another run is executing notebooks into the same build folder."""


#: Lock file in a build folder, held by :func:`run_notebooks` for a whole run.
RUN_LOCK = ".run.lock"
#: Lock file in a build folder, held while ``timings.json`` is read, changed and written back.
TIMINGS_LOCK = ".timings.lock"
#: The ``notebook`` that a sweep's jobs give their stage-log records (:func:`record_sweep_stages`).
SWEEP_NOTEBOOK = "sweep"


# --------------------------------------------------------------------------- environment



def prepare_environment(config: Config | None = None) -> dict:
    """Set the environment the kernels inherit; return the values that matter (for the log).

    The cache is NOT moved: the kernels use :func:`brainattr.cache.cache_root`, the same folder as a
    notebook opened by hand (``$BRAINATTR_CACHE`` if set, else the platform's user cache folder). An
    explicit ``$BRAINATTR_CACHE`` is made absolute, because the kernels run in ``notebooks/``.

    Parameters
    ----------
    config : Config, optional
        Unused; kept so that callers written for earlier versions still work.

    Returns
    -------
    dict
        ``{"BRAINATTR_CACHE": <the cache folder the kernels will use>}``.
    """
    if os.environ.get(CACHE_ENV):
        os.environ[CACHE_ENV] = str(Path(os.environ[CACHE_ENV]).expanduser().absolute())
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # silences a debugger warning in the kernel
    return {CACHE_ENV: str(cache_root())}


def check_kernel(name: str) -> str:
    """Make sure kernel ``name`` runs this interpreter (so it sees this environment's brainattr).

    jupyter_client replaces a kernelspec's bare ``python``/``python3`` with ``sys.executable``.

    Parameters
    ----------
    name : str
        The kernel's name (``kernel:`` in params.yml).

    Returns
    -------
    str
        The interpreter the kernel runs.

    Raises
    ------
    ParamsError
        If there is no such kernel, or it runs another interpreter (the message holds the command
        that registers this environment's).
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise ParamsError(f"No Jupyter kernel named {name!r}. Register this environment's with: "
                          f"{sys.executable} -m ipykernel install --sys-prefix --name {name}") from None
    exe = spec.argv[0]
    bare = {"python", f"python{sys.version_info[0]}", "python%d.%d" % sys.version_info[:2]}
    if exe in bare:
        return sys.executable
    if Path(exe).resolve() != Path(sys.executable).resolve() and Path(exe).parent.resolve() != Path(
            sys.executable).parent.resolve():
        raise ParamsError(f"Kernel {name!r} runs {exe}, not this environment's {sys.executable}; the notebooks "
                          f"would not see this brainattr. Fix: {sys.executable} -m ipykernel install "
                          f"--sys-prefix --name {name}  (or set `kernel:` in params.yml).")
    return exe


# --------------------------------------------------------------------------- hiding plumbing


def _is_imports_only(source: str) -> bool:
    """True if every statement of ``source`` is an ``import`` (comments, blanks, magics ignored)."""
    import ast

    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    try:
        body = ast.parse(code).body
    except SyntaxError:
        return False
    return bool(body) and all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in body)


def plumbing_reason(cell, next_cell=None) -> str | None:
    """Why a code cell of an executed notebook is plumbing (input hidden in the book), or None.

    The rule, applied by the runner to the executed copies only (sources are never changed):

    1. a code cell whose first non-blank line is the comment ``# plumbing`` -> ``"marker"``;
    2. a code cell made only of ``import`` statements -> ``"imports"``;
    3. the cell tagged ``parameters``, when papermill's ``injected-parameters`` cell follows it
       -> ``"parameters"`` (it holds the notebook's defaults; the values this run used are in the
       injected cell, which stays visible).

    A cell that already carries ``hide-input``, ``hide-cell``, ``remove-input``, ``remove-cell`` or
    the opt-out tag ``show-input`` is left as it is. Everything else (the science) stays visible.

    Parameters
    ----------
    cell : dict
        A cell of an executed notebook.
    next_cell : dict, optional
        The cell after it (to see papermill's ``injected-parameters`` cell).

    Returns
    -------
    str or None
        ``"marker"``, ``"imports"`` or ``"parameters"``; None for a cell that stays visible.
    """
    if cell.get("cell_type") != "code":
        return None
    tags = set(cell.get("metadata", {}).get("tags", []))
    if tags & _VISIBILITY_TAGS:
        return None
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else source
    first = next((line for line in source.splitlines() if line.strip()), "")
    if PLUMBING_MARKER.match(first.strip()):
        return "marker"
    if "parameters" in tags:
        next_tags = (next_cell or {}).get("metadata", {}).get("tags", [])
        return "parameters" if "injected-parameters" in next_tags else None
    if "injected-parameters" not in tags and _is_imports_only(source):
        return "imports"
    return None


def tag_plumbing(nb) -> list[int]:
    """Add the ``hide-input`` tag to the plumbing cells of a notebook (:func:`plumbing_reason`).

    Parameters
    ----------
    nb : nbformat.NotebookNode
        An executed notebook, changed in place.

    Returns
    -------
    list of int
        The indices of the cells tagged now (cells tagged before are left alone).
    """
    tagged = []
    cells = nb["cells"]
    for i, cell in enumerate(cells):
        if plumbing_reason(cell, cells[i + 1] if i + 1 < len(cells) else None):
            cell.setdefault("metadata", {}).setdefault("tags", []).append("hide-input")
            tagged.append(i)
    return tagged


def tag_plumbing_file(path: Path) -> list[int]:
    """:func:`tag_plumbing` on a notebook file.

    Parameters
    ----------
    path : Path
        An executed notebook; rewritten only if a cell was tagged.

    Returns
    -------
    list of int
        The indices of the cells tagged.
    """
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    tagged = tag_plumbing(nb)
    if tagged:
        nbformat.write(nb, str(path))
    return tagged


# --------------------------------------------------------------------------- executing


@dataclass
class RunResult:
    """One executed notebook: its name, executed copy, wall time in seconds and status (``ok``)."""

    name: str
    output: Path
    seconds: float
    status: str


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def update_timings(build_dir: Path, entries: dict, profile: str) -> Path:
    """Merge per-notebook entries into ``build_dir/timings.json`` (written atomically).

    Parameters
    ----------
    build_dir : Path
        The build folder.
    entries : dict
        Notebook name -> its entry (profile, overrides, parameters, output, status, seconds, finished).
    profile : str
        The profile of this run (recorded as ``last_profile``, with the host).

    Returns
    -------
    Path
        The timings file.
    """
    path = Path(build_dir) / "timings.json"
    # a read-modify-write: under a lock, so two processes never drop each other's entries
    with file_lock(Path(build_dir) / TIMINGS_LOCK):
        data = {}
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError:
                data = {}
        data.setdefault("notebooks", {}).update(entries)
        data["updated"] = _now()
        data["last_profile"] = profile
        data["host"] = {"python": platform.python_version(), "platform": platform.platform(),
                        "machine": platform.machine(), "cpus": os.cpu_count()}
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def expand_build_dir(build_dir, profile: str, parameters: dict | None = None) -> Path:
    """A build folder with ``{profile}`` and ``{model}`` filled in, e.g. ``build/{model}``.

    Parameters
    ----------
    build_dir : str or Path
    profile : str
    parameters : dict, optional
        Resolved parameters holding ``model`` (its ``/`` become ``--``, as in the cache).

    Returns
    -------
    Path
    """
    model = re.sub(r"[^A-Za-z0-9._-]+", "--", str((parameters or {}).get("model", "default-model")))
    try:
        return Path(str(build_dir).format(profile=profile, model=model))
    except (KeyError, IndexError, ValueError) as exc:
        raise ParamsError(f"--build-dir {build_dir!r}: only {{profile}} and {{model}} can be filled in ({exc}).") from None


def _hold_build_folder(build_dir: Path):
    """Take the build folder's run lock, or raise :class:`BuildFolderBusy` at once."""
    import filelock

    lock = file_lock(build_dir / RUN_LOCK, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise BuildFolderBusy(f"Another run is executing notebooks into {build_dir} (it holds {build_dir / RUN_LOCK}); "
                              f"its executed notebooks and timings would be overwritten. Wait for it, or give this "
                              f"run its own folder: --build-dir {build_dir}-2 (or 'build/{{model}}', one per "
                              f"model).") from None
    return lock


def record_sweep_stages(build_dir: Path, records: list) -> Path:
    """Put a sweep's stage-log records into a build folder's stage log, replacing the previous sweep's.

    The jobs of ``brainattr sweep`` log what they compute into their own files; this merges them
    where the compute page reads the notebooks' records (their ``notebook`` is
    :data:`SWEEP_NOTEBOOK`), under the build folder's run lock.

    Parameters
    ----------
    build_dir : Path
    records : list of dict
        Stage-log records (:func:`brainattr.cache.read_stage_log`).

    Returns
    -------
    Path
        The stage log.
    """
    build_dir = Path(build_dir)
    stage_log = build_dir / STAGE_LOG
    lock = _hold_build_folder(build_dir)
    try:
        forget_stages(stage_log, SWEEP_NOTEBOOK)
        with open(stage_log, "a") as fh:
            for record in records:
                fh.write(json.dumps(dict(record, notebook=SWEEP_NOTEBOOK), default=str) + "\n")
    finally:
        lock.release()
    return stage_log


def execute_notebook(source: Path, output: Path, parameters: dict, kernel: str = "python3",
                     log_output: bool = False, timeout: float | None = None, cwd: Path | None = None,
                     progress_bar: bool = False) -> float:
    """Execute one notebook with papermill into ``output``.

    The executed copy appears at ``output`` only when execution ends, success or failure (it is
    written next to it under a hidden name meanwhile).

    Parameters
    ----------
    source, output : Path
        The notebook and where its executed copy goes (never ``source`` itself).
    parameters : dict
        Values papermill injects after the cell tagged ``parameters``.
    kernel : str
        The Jupyter kernel.
    log_output : bool
        Echo the cells' output while they run.
    timeout : float, optional
        Per-cell time limit in seconds.
    cwd : Path, optional
        The kernel's working folder (default: the notebook's folder, as when opened by hand).
    progress_bar : bool
        Show papermill's progress bar (cells done, on stderr).

    Returns
    -------
    float
        The wall time in seconds.

    Raises
    ------
    NotebookFailed
        If a cell raised; the executed copy at ``output`` holds the traceback.
    """
    import logging

    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    source, output = Path(source), Path(output)
    # papermill's own parameter check ("Passed unknown parameter") is redundant with brainattr.book.params
    # and trips on lines it cannot parse; silence its warnings, keep errors.
    logging.getLogger("papermill").setLevel(logging.ERROR if not log_output else logging.INFO)
    if source.resolve() == output.resolve():
        raise ValueError(f"Refusing to execute {source} onto itself.")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.stem}.partial.ipynb")
    name = source.stem
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(source), str(partial), parameters=parameters, kernel_name=kernel,
                            language="python", progress_bar=progress_bar, log_output=log_output,
                            cwd=str(cwd or source.parent), execution_timeout=timeout)
    except PapermillExecutionError as exc:
        if partial.exists():
            try:
                tag_plumbing_file(partial)
            except Exception:  # never mask the notebook's own error
                pass
            os.replace(partial, output)
        detail = f"cell {exc.exec_count} raised {exc.ename}: {exc.evalue}"
        raise NotebookFailed(name, output, detail) from None
    except BaseException as exc:
        if partial.exists() and not isinstance(exc, KeyboardInterrupt):
            os.replace(partial, output)
            raise NotebookFailed(name, output, f"{type(exc).__name__}: {exc}") from exc
        if partial.exists():
            partial.unlink()
        raise
    tag_plumbing_file(partial)  # hide plumbing inputs in the executed copy (see plumbing_reason)
    os.replace(partial, output)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- progress


def run_notebooks(config: Config, profile: str | None = None, overrides: dict | None = None,
                  notebooks: list[str] | None = None, build_dir: Path | None = None,
                  log_output: bool = False, timeout: float | None = None, echo=say,
                  progress: bool | None = None, heartbeat: float | None = HEARTBEAT_S) -> list[RunResult]:
    """Validate, then execute the selected notebooks (default: all) in params.yml order.

    Prints, through ``echo``, a line when each notebook starts (``[3/8] 03_attribution (...)``), one
    per pipeline stage it computes (:class:`StageProgress`), and one when it ends (``[3/8]
    03_attribution done in 148 s``).

    Parameters
    ----------
    config : Config
        The parameters file (:func:`brainattr.book.params.load_config`).
    profile : str, optional
        Profile name (default: ``config.default_profile``).
    overrides : dict, optional
        Command-line values (``-p name value``), applied last.
    notebooks : list of str, optional
        The notebooks to run, in any form :func:`brainattr.book.params.find_notebook` accepts.
    build_dir : Path, optional
        Where the executed copies go (``<build_dir>/notebooks/``); default: params.yml's.
        ``{profile}`` and ``{model}`` are filled in (:func:`expand_build_dir`).
    log_output : bool
        Echo the cells' output while they run.
    timeout : float, optional
        Per-cell time limit in seconds.
    echo : callable
        Called with each progress line.
    progress : bool, optional
        Show papermill's progress bar of cells (default: when stderr is a terminal).
    heartbeat : float, optional
        Seconds of silence after which a "still running" line is printed; None: never.

    Returns
    -------
    list of RunResult
        One per notebook, in order.

    Raises
    ------
    ParamsError
        Before anything runs, if the parameters do not validate.
    BuildFolderBusy
        Before anything runs, if another run is executing notebooks into the same build folder.
    NotebookFailed
        At the first notebook that fails (after recording it in ``timings.json``).
    """
    profile = profile or config.default_profile
    resolved = resolve(config, profile, overrides, notebooks, require_all=notebooks is None)
    build_dir = expand_build_dir(build_dir or config.build_dir, profile,
                                 resolved[0].parameters if resolved else None).absolute()
    env = prepare_environment(config)
    check_kernel(config.kernel)
    build_dir.mkdir(parents=True, exist_ok=True)
    lock = _hold_build_folder(build_dir)
    try:
        return _run_resolved(config, profile, overrides, resolved, build_dir, env, log_output, timeout, echo,
                             progress, heartbeat)
    finally:
        lock.release()


def _run_resolved(config, profile, overrides, resolved, build_dir, env, log_output, timeout, echo, progress,
                  heartbeat) -> list[RunResult]:
    """:func:`run_notebooks` once the parameters are checked and the build folder is held."""
    if progress is None:
        progress = sys.stderr.isatty()
    echo(f"brainattr: profile {profile!r}, {len(resolved)} notebook(s) -> {build_dir / 'notebooks'}; "
         f"cache {env[CACHE_ENV]}")
    results = []
    stage_log = build_dir / STAGE_LOG
    started = time.perf_counter()
    for i, r in enumerate(resolved, 1):
        counter = f"[{i}/{len(resolved)}] {r.spec.name}"
        output = build_dir / "notebooks" / f"{r.spec.name}.ipynb"
        stage_log.parent.mkdir(parents=True, exist_ok=True)
        forget_stages(stage_log, r.spec.name)  # the compute table shows each notebook's latest run
        os.environ[STAGE_LOG_ENV] = str(stage_log)   # the kernel inherits both: brainattr.cache.log_stage
        os.environ["BRAINATTR_NOTEBOOK"] = r.spec.name
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in r.parameters.items())
        echo(f"{counter}  ({shown or 'notebook defaults'})")
        start = time.perf_counter()
        shown_path = os.path.relpath(output, config.root) if output.is_relative_to(config.root) else str(output)
        changed = {k: v for k, v in (overrides or {}).items() if k in r.parameters}
        entry = {"profile": profile, "overrides": changed, "parameters": r.parameters, "output": shown_path,
                 "finished": None}
        try:
            with StageProgress(stage_log, r.spec.name, echo, heartbeat=heartbeat):
                seconds = execute_notebook(r.spec.path, output, r.parameters, kernel=config.kernel,
                                           log_output=log_output, timeout=timeout, progress_bar=progress)
        except NotebookFailed:
            entry.update(status="failed", seconds=round(time.perf_counter() - start, 2), finished=_now())
            update_timings(build_dir, {r.spec.name: entry}, profile)
            echo(f"{counter} FAILED after {format_duration(entry['seconds'])}")
            raise
        entry.update(status="ok", seconds=round(seconds, 2), finished=_now())
        update_timings(build_dir, {r.spec.name: entry}, profile)
        echo(f"{counter} done in {format_duration(seconds)}")
        results.append(RunResult(r.spec.name, output, seconds, "ok"))
    echo(f"brainattr: {len(results)} notebook(s) done in {format_duration(time.perf_counter() - started)}")
    return results


@dataclass(frozen=True)
class SweepNotebooks:
    """The book's side of a sweep (``brainattr sweep``): its check notebooks in stage C, every notebook at the end.

    Pickled into the jobs that need it (on SLURM, the stage-C jobs and the final job).

    Attributes
    ----------
    config : Config
    profile : str or None
    overrides : dict or None
        As for :func:`run_notebooks`.
    build_dir : str, Path or None
        Where the final step's executed notebooks go (default: params.yml's; ``{profile}``,
        ``{model}`` filled in).
    """

    config: Config
    profile: str | None = None
    overrides: dict | None = None
    build_dir: str | Path | None = None

    def run_one(self, name: str, output) -> float:
        """Stage C: execute notebook ``name`` with the profile's parameters into ``output``; its wall time in s.

        The stages it computes go to the job's own stage log (the job sets ``$BRAINATTR_STAGE_LOG``).
        """
        resolved = {r.spec.name: r for r in resolve(self.config, self.profile or self.config.default_profile,
                                                    self.overrides)}
        if name not in resolved:
            raise ParamsError(f"the sweep's check notebook {name!r} is not in {self.config.path}; plan the sweep "
                              "again with the same params.yml.")
        r = resolved[name]
        return execute_notebook(r.spec.path, Path(output), r.parameters, kernel=self.config.kernel)

    def __call__(self, stage_records: list) -> list[str]:
        """The final step: record the jobs' stage costs in the build folder, then run every notebook.

        Called once every job succeeded and the tables are merged, so the notebooks read the cache.

        Parameters
        ----------
        stage_records : list of dict
            The jobs' stage-log records (:func:`record_sweep_stages`).

        Returns
        -------
        list of str
            The notebooks run.
        """
        profile = self.profile or self.config.default_profile
        resolved = resolve(self.config, profile, self.overrides)
        folder = expand_build_dir(self.build_dir or self.config.build_dir, profile, resolved[0].parameters).absolute()
        record_sweep_stages(folder, stage_records)
        return [r.name for r in run_notebooks(self.config, profile, self.overrides, build_dir=folder, progress=False)]


# --------------------------------------------------------------------------- book inputs


def render_toc(config: Config) -> str:
    """The book's table of contents for params.yml.

    Parameters
    ----------
    config : Config
        The parameters file: its notebooks, in order, with their titles.

    Returns
    -------
    str
        ``_toc.yml`` (Jupyter Book 1 format): :data:`PAGES_BEFORE`, then the executed notebooks in
        ``<build_dir>/notebooks/``, then :data:`PAGES_AFTER`.
    """
    build = os.path.relpath(config.build_dir, config.root).replace(os.sep, "/")
    toc = {
        "format": "jb-book",
        "root": "book/intro",
        "parts": [
            {"caption": "Using this book", "chapters": [{"file": f"book/{p}"} for p in PAGES_BEFORE]},
            {"caption": "Notebooks",
             "chapters": [{"file": f"{build}/notebooks/{nb.name}", "title": nb.title} for nb in config.notebooks]},
            {"caption": "Appendix", "chapters": [{"file": f"book/{p}"} for p in PAGES_AFTER]},
        ],
    }
    header = ("# Generated from params.yml by `brainattr book` (brainattr.book.runner.render_toc); do not edit.\n"
              "# Notebook chapters point at the EXECUTED copies in build/notebooks/, not at notebooks/.\n")
    return header + yaml.safe_dump(toc, sort_keys=False)


def sync_toc(config: Config) -> bool:
    """Rewrite ``_toc.yml`` (atomically) if it differs from :func:`render_toc`.

    Returns
    -------
    bool
        True if the file was written.
    """
    path = config.root / TOC_FILE
    text = render_toc(config)
    if path.is_file() and path.read_text() == text:
        return False
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return True



def check_executed(config: Config, build_dir: Path | None = None) -> None:
    """Make sure every notebook has a successfully executed copy (for ``book --no-run``).

    Raises
    ------
    BookBuildFailed
        Naming the notebooks without an executed copy, or whose last run failed.
    """
    build_dir = Path(build_dir or config.build_dir)
    path = build_dir / "timings.json"
    entries = json.loads(path.read_text()).get("notebooks", {}) if path.is_file() else {}
    bad = [nb.name for nb in config.notebooks
           if not (build_dir / "notebooks" / f"{nb.name}.ipynb").is_file() or entries.get(nb.name, {}).get("status") != "ok"]
    if bad:
        raise BookBuildFailed(f"No successful executed copy for: {', '.join(bad)}. Run `python -m brainattr run-all` "
                              f"first (or `book` without --no-run).")


def build_html(config: Config, strict: bool = True, echo=say) -> Path:
    """Build the HTML book with Jupyter Book 1 (execution off).

    Parameters
    ----------
    config : Config
    strict : bool
        ``-W --keep-going`` (default): every warning is reported, and any warning fails the build.
    echo : callable
        Called with the command and the result.

    Returns
    -------
    Path
        ``_build/html/index.html``.

    Raises
    ------
    BookBuildFailed
        With the warnings and errors of the build log.
    """
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(config.root), "--builder", "html"]
    cmd.append("--all")  # re-read every page: a warning must recur on every build, not only the first
    if strict:
        cmd += ["-W", "--keep-going"]
    echo("brainattr: " + " ".join(cmd))
    proc = subprocess.run(cmd, cwd=config.root, capture_output=True, text=True)
    log = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    html = config.root / "_build" / "html" / "index.html"
    if proc.returncode != 0 or not html.is_file():
        problems = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line or "Error" in line]
        tail = "\n".join(problems[-30:]) or log[-4000:]
        raise BookBuildFailed(f"Jupyter Book build failed (exit {proc.returncode}):\n{tail}")
    echo(f"brainattr: book built: {html}")
    return html


def build_book(config: Config, profile: str | None = None, overrides: dict | None = None, run: bool = True,
               strict: bool = True, log_output: bool = False, timeout: float | None = None, echo=say,
               progress: bool | None = None, heartbeat: float | None = HEARTBEAT_S) -> Path:
    """Run every notebook, write the generated pages, sync the table of contents, build the HTML.

    Parameters
    ----------
    config : Config
    profile, overrides, log_output, timeout, echo, progress, heartbeat
        As for :func:`run_notebooks`.
    run : bool
        Run the notebooks first (default); False builds from the executed copies already there
        (:func:`check_executed`).
    strict : bool
        Any Sphinx warning fails the build (default).

    Returns
    -------
    Path
        ``_build/html/index.html``.
    """
    if run:
        run_notebooks(config, profile, overrides, log_output=log_output, timeout=timeout, echo=echo,
                      progress=progress, heartbeat=heartbeat)
    else:
        check_executed(config)
    write_book_inputs(config)
    if sync_toc(config):
        echo(f"brainattr: {TOC_FILE} updated from {config.path.name}")
    return build_html(config, strict=strict, echo=echo)


# --------------------------------------------------------------------------- Sphinx hook


def _launch_sources(app, pagename, templatename, context, doctree) -> None:
    """Point a notebook chapter's launch buttons (Binder, Colab) at its source notebook.

    The book renders the executed copies in ``build/notebooks/``, which are not in the repository;
    sphinx-book-theme builds the launch URLs from the page name, so they would open a missing file.
    This rewrites ``build/notebooks/NAME.ipynb`` to ``notebooks/NAME.ipynb`` (paths from params.yml).
    """
    try:
        config = load_config(Path(app.confdir) / "params.yml")
        build = os.path.relpath(config.build_dir, config.root).replace(os.sep, "/")
        source = os.path.relpath(config.notebooks_dir, config.root).replace(os.sep, "/")
    except Exception:
        build, source = "build", "notebooks"
    prefix = f"{build}/notebooks/"
    if not pagename.startswith(prefix):
        return
    old, new = f"{pagename}.ipynb", f"{source}/{pagename[len(prefix):]}.ipynb"
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            if isinstance(button.get("url"), str):
                button["url"] = button["url"].replace(old, new)


def _unique_scripts(app, pagename, templatename, context, doctree) -> None:
    """Drop repeated ``<script>`` entries from a page.

    With Jupyter Book 1.0.4, sphinx-thebe 0.3.1 adds its inline configuration script twice
    (``const THEBE_JS_URL = ...``), and the second copy is a JavaScript error on every page
    (``Identifier 'THEBE_JS_URL' has already been declared``), which ``brainattr check-book`` reports.
    """
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, unique = set(), []
    for js in scripts:
        # the copies differ only in filename None versus "" (an inline script): same HTML
        attributes = getattr(js, "attributes", {}) or {}
        key = (getattr(js, "filename", js) or "", getattr(js, "priority", 500), repr(sorted(attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def setup(app):
    """Sphinx extension (``sphinx: extra_extensions: [brainattr.book.runner]`` in ``_config.yml``)."""
    app.connect("html-page-context", _launch_sources, priority=600)  # after the theme's (501)
    app.connect("html-page-context", _unique_scripts, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
