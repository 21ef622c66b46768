"""Command line: ``readtax <verb>``. One module per verb in this package.

Each verb module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``
and imports nothing heavy at module level, so ``readtax --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys

from .. import __version__
from ..errors import ReadtaxError

# Verbs whose work is numpy over buffers and the compiled core, never BLAS.
DATA_VERBS = {"stats", "subset", "pack", "verify", "unpack"}

VERBS = [
    "stats",
    "subset",
    "pack",
    "verify",
    "unpack",
    "init-model",
    "train",
    "evaluate",
    "predict",
    "simulate",
    "demo",
]

log = logging.getLogger("readtax")


def add_label_arguments(p: argparse.ArgumentParser, *, mapping_help: str | None = None,
                        allow_none: bool = False) -> None:
    """--mapping, --labels, --skip-unknown and --skip-bad, shared by the data verbs."""
    p.add_argument("--mapping", metavar="TSV",
                   help=mapping_help or "mapping TSV: class_id, label_name, tax_id")
    p.add_argument("--labels", default="lbl", metavar="SCHEME",
                   help="label scheme: lbl (default), regex:<pattern with (?P<class_id>...) or "
                        "(?P<label>...)>, tsv:<read_id-to-label file>"
                        + (", or none" if allow_none else ""))
    p.add_argument("--skip-unknown", action="store_true",
                   help="skip (and count) reads whose class is not in the mapping")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip malformed records (no bases, bad characters, wrong quality length, "
                        "unparsable header) and report how many, instead of stopping")


def _module(verb: str):
    return importlib.import_module(f"readtax.cli.{verb.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="readtax",
        description="Train and run DNA language-model classifiers that assign reads to species.",
    )
    parser.add_argument("--version", action="version", version=f"readtax {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for verb in VERBS:
        try:
            mod = _module(verb)
        except ModuleNotFoundError as exc:
            if exc.name == f"readtax.cli.{verb.replace('-', '_')}":
                continue  # verb not built in this installation
            raise
        p = sub.add_parser(verb, help=mod.HELP, description=mod.HELP, parents=[common])
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _setup_logging(quiet: bool, debug: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("readtax")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class _Parser(argparse.ArgumentParser):
    pass


def main(argv: list[str] | None = None) -> int:
    """Run a verb; return the exit code (0 ok, 1 internal error, 2 bad usage/input, 130 Ctrl-C)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or usage error (2)
        return int(exc.code or 0)
    debug = getattr(args, "debug", False)
    _setup_logging(getattr(args, "quiet", False), debug)
    if args.verb in DATA_VERBS:
        # numpy's OpenBLAS starts a thread per core that spins for a while after import,
        # taking CPU from the data workers. Set before the verb imports numpy;
        # a user's own setting wins. Model verbs keep it: a torch build may use OpenBLAS.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        return int(args._run(args) or 0)
    except ReadtaxError as exc:
        if debug:
            log.exception("error")
        print(f"readtax {args.verb}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"readtax {args.verb}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - a full disk anywhere is one line, exit 2
        from ..outputs import is_no_space

        if not is_no_space(exc):
            return _internal(args.verb, exc, debug)
        where = getattr(exc, "filename", None) or "the output"
        print(f"readtax {args.verb}: error: {where}: no space left to write the output "
              f"({type(exc).__name__})", file=sys.stderr)
        return 2


def _internal(verb: str, exc: BaseException, debug: bool) -> int:
    if isinstance(exc, MemoryError):
        print(f"readtax {verb}: error: out of memory", file=sys.stderr)
        return 1
    if debug:
        raise exc
    print(
        f"readtax {verb}: internal error: {type(exc).__name__}: {exc} "
        "(run with --debug for the traceback)",
        file=sys.stderr,
    )
    return 1


def _tune_allocator() -> None:
    """Keep buffers below 32 MB on the heap and reuse them (glibc only).

    The data verbs allocate and free multi-megabyte numpy buffers per chunk; by default glibc
    maps each afresh with mmap and gives freed heap tops back, and the page faults on the
    next chunk can cost as much as parsing it.
    Keeping up to 256 MB of freed heap cannot raise the peak, which one chunk or bucket sets
    and which stays bounded by the buffer sizes; only the churn goes.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 256 << 20)


def main_cli() -> None:
    _tune_allocator()
    # Past a file-size limit (ulimit -f) the kernel would kill the process with SIGXFSZ
    # mid-write; ignored, the write fails with EFBIG and the run ends as a full disk does.
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    sys.exit(main())
