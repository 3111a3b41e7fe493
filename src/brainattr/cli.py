"""Command line: ``brainattr`` / ``python -m brainattr``.

Examples::

    python -m brainattr book                          # run every notebook (profile quick), build the HTML
    python -m brainattr run 02 -p context 640         # one notebook, one parameter changed
    python -m brainattr run-all --profile paper       # every notebook at paper scale
    python -m brainattr params --profile tiny         # the resolved parameters, per notebook
    python -m brainattr params --table                # the parameter reference (Markdown)
    python -m brainattr check-book _build/html        # open every page in headless Chromium
"""
from __future__ import annotations

import argparse
import sys
import warnings

from .params import ParamsError, load_config, parameter_reference, parse_overrides, resolve, resolved_as_yaml


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

    parser = argparse.ArgumentParser(prog="brainattr", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 2)[2])
    sub = parser.add_subparsers(dest="command", required=True)
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
    from . import bookcheck

    bookcheck.add_arguments(sub.add_parser("check-book", help="check the built book's pages in headless Chromium"))
    _add_download_parser(sub)
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "download":
        return _download(args)
    if args.command == "check-book":
        from . import bookcheck

        return bookcheck.main(args)
    from . import runner

    if getattr(args, "log_output", False):
        import logging

        logging.basicConfig(level=logging.INFO, format="%(message)s")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = lambda message, *a, **k: print(f"brainattr: warning: {message}", file=sys.stderr)
            config = load_config(args.params_file)
            overrides = parse_overrides(getattr(args, "parameter", []))
            if args.command == "params":
                if args.table:
                    print(parameter_reference(config))
                else:
                    resolved = resolve(config, args.profile, overrides, args.notebooks or None)
                    print(resolved_as_yaml(resolved, args.profile or config.default_profile), end="")
            elif args.command in ("run", "run-all"):
                names = args.notebooks if args.command == "run" else None
                runner.run_notebooks(config, args.profile, overrides, names, build_dir=args.build_dir,
                                     log_output=args.log_output, timeout=args.timeout)
            elif args.command == "book":
                if args.build_dir:
                    raise ParamsError("book always uses the build_dir of params.yml (the book's _toc.yml points there).")
                runner.build_book(config, args.profile, overrides, run=not args.no_run, strict=not args.no_strict,
                                  log_output=args.log_output, timeout=args.timeout)
    except (ParamsError, runner.NotebookFailed, runner.BookBuildFailed) as exc:
        print(f"brainattr: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `brainattr params --table | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("brainattr: interrupted", file=sys.stderr)
        return 130
    return 0


def _add_download_parser(sub) -> None:
    p = sub.add_parser("download", help="download a real dataset into $BRAINATTR_DATA (needs pooch)")
    p.add_argument("dataset", choices=["hp", "moth"], help="hp: CMU Harry Potter release; moth: Moth reading release")
    p.add_argument("--data-home", default=None, help="target folder (default: $BRAINATTR_DATA or ~/brainattr_data)")
    p.add_argument("--subjects", nargs="+", default=None, help="subject ids (default: all of the release)")


def _download(args) -> int:
    """``brainattr download``: fetch a real dataset's files (:func:`brainattr.loaders.download`)."""
    from .dataset import DataError
    from .loaders import download

    try:
        for path in download(args.dataset, data_home=args.data_home, subjects=args.subjects):
            print(path)
    except DataError as exc:
        print(f"brainattr: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
