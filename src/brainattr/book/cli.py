"""Run the book's notebooks with checked parameters, build the HTML book and check it in a browser.

Examples::

    python -m brainattr book                          # run every notebook (profile quick), build the HTML
    python -m brainattr run 02 -p context 640         # one notebook, one parameter changed
    python -m brainattr run-all --profile paper       # every notebook at paper scale
    python -m brainattr sweep --profile paper --dry-run   # the paper's grid as jobs (run them: --executor slurm)
    python -m brainattr sweep --profile paper --status    # jobs done / running / failed per stage
    python -m brainattr params --profile tiny         # the resolved parameters, per notebook
    python -m brainattr params --table                # the parameter reference (Markdown)
    python -m brainattr check-book _build/html        # open every page in headless Chromium
    python -m brainattr download hp                   # a real dataset (needs pooch)

Everything heavy (papermill, nbformat, selenium, torch, the science modules) is imported only by
the command that needs it, so ``--help`` and ``--version`` are fast and work on every platform.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from .. import __version__

#: What the tool does, in one sentence: the first line of ``brainattr --help``.
SUMMARY = __doc__.split("\n")[0]
#: The examples of the docstring, shown at the end of ``brainattr --help``.
EXAMPLES = "Examples:\n\n" + __doc__.split("Examples::", 1)[1].split("\n\n")[1].rstrip() + "\n"


class _Parser(argparse.ArgumentParser):
    """The top-level parser: its help starts with the one-sentence summary, before the usage."""

    def format_help(self) -> str:
        return f"brainattr: {SUMMARY[0].lower()}{SUMMARY[1:]}\n\n{super().format_help()}"


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params-file", default=None, help="parameters file (default: params.yml at the repo root)")
    common.add_argument("--profile", default=None,
                        help="profile in params.yml: quick (default), paper, tiny, ...")
    run_opts = argparse.ArgumentParser(add_help=False)
    run_opts.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                          help="override a parameter (value parsed as YAML: 640, [1, 2], null, text)")
    run_opts.add_argument("--build-dir", default=None, help="where executed notebooks go (default: build/)")
    run_opts.add_argument("--log-output", action="store_true", help="echo the notebooks' output while they run")
    run_opts.add_argument("--timeout", type=float, default=None, help="per-cell time limit in seconds")
    run_opts.add_argument("--no-progress", action="store_true",
                          help="no progress bar of cells (each computed stage is still printed as it finishes)")

    parser = _Parser(prog="brainattr", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    parser.add_argument("--version", action="version", version=f"brainattr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=argparse.ArgumentParser)
    p = sub.add_parser("run", parents=[common, run_opts], help="execute one or more notebooks")
    p.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", help="02, 02_brain_alignment or brain_alignment")
    sub.add_parser("run-all", parents=[common, run_opts], help="execute every notebook in params.yml order")
    p = sub.add_parser("book", parents=[common, run_opts], help="run every notebook, then build the HTML book")
    p.add_argument("--no-run", action="store_true", help="build from the executed copies already in build/")
    p.add_argument("--no-strict", action="store_true", help="do not turn Sphinx warnings into errors")
    p = sub.add_parser("params", parents=[common], help="print resolved parameters or the reference table")
    p.add_argument("notebooks", nargs="*", metavar="NOTEBOOK")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[])
    p.add_argument("--table", action="store_true", help="print the parameter reference as Markdown")
    from . import check  # standard library only; selenium is imported when a browser starts

    check.add_arguments(sub.add_parser("check-book", help="check the built book's pages in headless Chromium"))
    _add_download_parser(sub)
    _add_sweep_parser(sub, common)
    return parser


def main(argv=None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "download":
        return _download(args)
    if args.command == "sweep":
        return _sweep(args)
    if args.command == "check-book":
        from . import check

        return check.main(args)
    if getattr(args, "log_output", False):
        import logging

        logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .params import ParamsError

    failures: tuple = (ParamsError,)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = lambda message, *a, **k: print(f"brainattr: warning: {message}", file=sys.stderr)
            if args.command == "params":
                _params(args)
            else:
                from . import runner

                failures = (ParamsError, runner.NotebookFailed, runner.BookBuildFailed)
                _run(args, runner)
    except BrokenPipeError:  # e.g. `brainattr params --table | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("brainattr: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not isinstance(exc, failures):
            raise
        print(f"brainattr: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _params(args) -> None:
    """``brainattr params``: the resolved parameters as YAML, or the reference table."""
    from .params import load_config, parameter_reference, parse_overrides, resolve, resolved_as_yaml

    config = load_config(args.params_file)
    if args.table:
        print(parameter_reference(config))
    else:
        resolved = resolve(config, args.profile, parse_overrides(args.parameter), args.notebooks or None)
        print(resolved_as_yaml(resolved, args.profile or config.default_profile), end="")


def _run(args, runner) -> None:
    """``brainattr run``, ``run-all`` and ``book``."""
    from .params import ParamsError, load_config, parse_overrides

    config = load_config(args.params_file)
    overrides = parse_overrides(args.parameter)
    progress = False if args.no_progress else None  # None: a bar when stderr is a terminal
    if args.command in ("run", "run-all"):
        names = args.notebooks if args.command == "run" else None
        runner.run_notebooks(config, args.profile, overrides, names, build_dir=args.build_dir,
                             log_output=args.log_output, timeout=args.timeout, progress=progress)
    elif args.command == "book":
        if args.build_dir:
            raise ParamsError("book always uses the build_dir of params.yml (the book's _toc.yml points there).")
        runner.build_book(config, args.profile, overrides, run=not args.no_run, strict=not args.no_strict,
                          log_output=args.log_output, timeout=args.timeout, progress=progress)


def _add_sweep_parser(sub, common) -> None:
    p = sub.add_parser("sweep", parents=[common], help="run the profile's whole grid as jobs (SLURM, local, debug)",
                       description="Run a profile's grid as jobs on submitit: stage A (features, encoding) per "
                                   "(model, layer), stage B (attribution) per (model, layer group, chunk of TRs) "
                                   "after its model's stage A, then merge the tables and run the notebooks. "
                                   "Rerunning skips what is done.")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                   help="override a parameter, as for run-all")
    p.add_argument("--executor", default="local", help="slurm, local (default: jobs on this machine) or debug "
                                                       "(in this process, one after the other)")
    p.add_argument("--partition", default=None, help="SLURM partition")
    p.add_argument("--gpus-per-job", type=int, default=0, help="GPUs per job (local: one job per that many "
                                                               "visible GPUs); default 0")
    p.add_argument("--time", type=int, default=240, help="time limit per job in minutes (default 240); a job "
                                                         "still running then is requeued and resumes")
    p.add_argument("--array-parallelism", type=int, default=64, help="SLURM: jobs of one array at once (default 64)")
    p.add_argument("--slurm-extra", action="append", default=[], metavar="KEY=VALUE",
                   help="another sbatch option, e.g. account=mylab or mem=64G (repeatable)")
    p.add_argument("--jobs", type=int, default=1, help="local: CPU jobs at once (default 1)")
    p.add_argument("--trs-per-job", type=int, default=64, help="held-out TRs per stage-B job (default 64)")
    p.add_argument("--build-dir", default=None, help="where the final step's notebooks go (default: build/; "
                                                     "{profile} and {model} are filled in)")
    p.add_argument("--no-notebooks", action="store_true",
                   help="run no notebook: stage C (the check notebooks) waits for a later run, the final step "
                        "only merges the tables")
    p.add_argument("--status", action="store_true", help="print jobs done / running / failed per stage and exit")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and exit; nothing is submitted")
    p.add_argument("--skip-cache-check", action="store_true",
                   help="SLURM: do not probe whether the compute nodes share the cache folder")
    p.add_argument("--probe-timeout", type=float, default=900.0, help="seconds to wait for that probe (default 900)")


def notebook_values(resolved) -> dict:
    """Every parameter of a resolved notebook: its parameters cell's literal defaults, then the injected values."""
    literal = (bool, int, float, str, list, tuple, dict, type(None))
    defaults = {name: p.default for name, p in resolved.declared.items() if isinstance(p.default, literal)}
    return {**defaults, **resolved.parameters}


def _sweep(args) -> int:
    """``brainattr sweep``: check the options, plan the grid, then list it, report on it or run it."""

    from .. import sweep
    from .params import ParamsError, load_config, parse_overrides, resolve

    try:
        config = load_config(args.params_file)
        profile = args.profile or config.default_profile
        overrides = parse_overrides(args.parameter)
        options = sweep.SubmitOptions(
            executor=args.executor, partition=args.partition, gpus_per_job=args.gpus_per_job, time=args.time,
            array_parallelism=args.array_parallelism, slurm_extra=sweep.parse_slurm_extra(args.slurm_extra),
            jobs=args.jobs, check_shared_cache=not args.skip_cache_check, probe_timeout=args.probe_timeout)
        if not (args.status or args.dry_run):
            sweep.check_options(options)  # before the planning, which loads the data
        resolved = resolve(config, profile, overrides)
        settings = sweep.settings_from_notebooks({r.spec.name: notebook_values(r) for r in resolved})
        plan = sweep.plan_sweep(settings, args.trs_per_job, name=profile)
        if args.status:
            print(sweep.format_status(plan), end="")
            return 0
        if args.dry_run:
            print(sweep.format_plan(plan), end="")
            return 0
        from . import runner
        from .progress import say

        notebooks = None if args.no_notebooks else runner.SweepNotebooks(config, profile, overrides, args.build_dir)
        report = sweep.run_sweep(plan, options, notebooks=notebooks, echo=say)
    except (sweep.SweepError, ParamsError) as exc:
        print(f"brainattr: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("brainattr: interrupted (finished jobs and parts are kept; run the same command to resume)",
              file=sys.stderr)
        return 130
    return 0 if report.ok else 1


def _add_download_parser(sub) -> None:
    p = sub.add_parser("download", help="download a real dataset into $BRAINATTR_DATA (needs pooch)")
    p.add_argument("dataset", choices=["hp", "moth"], help="hp: CMU Harry Potter release; moth: Moth reading release")
    p.add_argument("--data-home", default=None, help="target folder (default: $BRAINATTR_DATA or ~/brainattr_data)")
    p.add_argument("--subjects", nargs="+", default=None, help="subject ids (default: all of the release)")


def _download(args) -> int:
    """``brainattr download``: fetch a real dataset's files (:func:`brainattr.data.download.download`)."""
    from ..data.download import download
    from ..schema import DataError

    try:
        for path in download(args.dataset, data_home=args.data_home, subjects=args.subjects):
            print(path)
    except DataError as exc:
        print(f"brainattr: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
