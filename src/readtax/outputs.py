"""Atomic output files: write to a temporary name beside the target, rename on success.

An interrupted run therefore never leaves a file under the final name that looks complete.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import UsageError


def check_output_path(path: str | os.PathLike[str], *, force: bool, inputs=()) -> Path:
    """Refuse to overwrite an input, or an existing output unless ``force``."""
    out = Path(path)
    for inp in inputs:
        with contextlib.suppress(OSError):
            if Path(inp).resolve() == out.resolve():
                raise UsageError(f"output {out} is also an input")
    if out.exists() and not force:
        raise UsageError(f"output {out} exists (use --force to overwrite)")
    return out


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the result the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _gzip_writer(raw: IO[bytes]):
    try:
        from isal import igzip

        return igzip.IGzipFile(filename="", mode="wb", fileobj=raw, compresslevel=2, mtime=0)
    except ImportError:  # pragma: no cover - isal is a dependency
        return gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=5, mtime=0)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", *, compress: bool | None = None
) -> Iterator[IO]:
    """Open ``path`` for writing atomically; gzip when the name ends in .gz (or ``compress``)."""
    if compress is None:
        compress = str(path).endswith(".gz")
    binary = "b" in mode
    with atomic_path(path) as tmp:
        if compress:
            raw = open(tmp, "wb")  # noqa: SIM115 - closed below
            # mtime=0 keeps gzip output byte-identical for the same content; ISA-L's deflate is
            # several times faster than zlib at a similar ratio.
            gz = _gzip_writer(raw)
            fh: IO = gz if binary else io.TextIOWrapper(gz, encoding="utf-8", newline="\n")
            try:
                yield fh
            finally:
                fh.close()
                raw.close()
        else:
            with open(tmp, "wb" if binary else "w", **({} if binary else {"newline": "\n"})) as fh:
                yield fh
