"""Outputs that survive faults: atomic files and directories, output checks, locks, full disks.

Every output is written under a temporary name beside its target and renamed on success, so an
interrupted run (kill -9, Ctrl-C, a full disk) never leaves a file under the final name that
looks complete. Temporary names carry the host and process id (``.NAME.<host>-<pid>-<hex>.part``
or ``.tmp``); the next run to the same target removes those of processes that are gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import gzip
import io
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from .errors import ReadtaxError, UsageError

# errno values that mean "the disk (or quota, or file-size limit) is full".
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# The same conditions as other libraries word them when they do not raise OSError: safetensors
# (Rust io::Error: "No space left on device (os error 28)", "StorageFull"), torch.save
# ("PytorchStreamWriter failed writing file ...: file write failed", or "unexpected pos N vs
# M" when the zip writer finds its file shorter than what it wrote).
_NO_SPACE_TEXT = re.compile(
    r"No space left|Disk quota exceeded|File too large|os error (28|27|122)\b|code: (28|27|122)\b"
    r"|StorageFull|FileTooLarge|QuotaExceeded|file write failed|unexpected pos \d+ vs \d+",
)


class NoSpaceError(ReadtaxError):
    """The disk, quota or file-size limit ran out while writing an output (exit 2)."""

    exit_code = 2

    def __init__(self, path: str | os.PathLike[str], detail: str = "") -> None:
        self.path = os.fspath(path)
        reason = f" ({detail})" if detail else ""
        super().__init__(f"{self.path}: no space left to write this output{reason}; nothing "
                         "was written under its final name")


def is_no_space(exc: BaseException) -> bool:
    """True for an error that means the disk, quota or file-size limit ran out."""
    if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
        return True
    if isinstance(exc, (OSError, RuntimeError)) or type(exc).__name__ == "SafetensorError":
        return bool(_NO_SPACE_TEXT.search(str(exc)))
    return False


@contextlib.contextmanager
def no_space_as_error(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a full disk inside the block (OSError, safetensors, torch) into NoSpaceError."""
    try:
        yield
    except NoSpaceError:
        raise
    except Exception as exc:
        if not is_no_space(exc):
            raise
        detail = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else ""
        raise NoSpaceError(path, detail) from None


def check_output_path(path: str | os.PathLike[str], *, force: bool,
                      inputs: Iterable[str | os.PathLike[str]] = (),
                      what: str = "output") -> Path:
    """The one output check of every verb.

    Refuses an output that is also an input, an existing output unless ``force``, and an output
    whose directory cannot be created or written. Messages: ``output PATH exists (use --force
    to overwrite)``, ``output PATH: directory D is not writable``.
    """
    out = Path(path)
    for inp in inputs:
        with contextlib.suppress(OSError):
            if Path(inp).resolve() == out.resolve():
                raise UsageError(f"{what} {out} is also an input")
    if (out.exists() or out.is_symlink()) and not force:
        raise UsageError(f"{what} {out} exists (use --force to overwrite)")
    check_writable_dir(out, what=what)
    return out


def check_writable_dir(out: Path, *, what: str = "output") -> None:
    """UsageError unless the directory that will hold ``out`` exists or can be made, writable."""
    parent = out.absolute().parent
    while not parent.exists():
        if parent.is_symlink() or parent == parent.parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"{what} {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {out}: directory {parent} is not writable")


# -- temporary names -------------------------------------------------------------------------

HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname() or "host")[:40]
_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[0-9a-f]{8}\."
                  r"(?P<kind>part|tmp|old)$")


def temp_name(target: Path, kind: str = "part") -> Path:
    """A fresh temporary name beside ``target``: ``.NAME.<host>-<pid>-<hex>.<kind>``."""
    return target.parent / f".{target.name}.{HOST}-{os.getpid()}-{secrets.token_hex(4)}.{kind}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(target: str | os.PathLike[str]) -> list[Path]:
    """Remove temporaries of ``target`` left by dead processes on this host; return them.

    Temporaries of other hosts (a shared file system) and of live processes are left alone.
    """
    target = Path(target)
    removed = []
    with contextlib.suppress(OSError):
        for p in target.parent.glob(f".{glob_escape(target.name)}.*"):
            m = _TMP.match(p.name)
            if not m or m["name"] != target.name or m["host"] != HOST:
                continue
            pid = int(m["pid"])
            if pid == os.getpid() or _pid_alive(pid):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
            removed.append(p)
    return removed


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fix_modes(root: Path) -> None:
    """Give files under ``root`` the mode a plain open() gives (0666 & ~umask; dirs 0777).

    Writers that create files themselves with mode 0600 (safetensors' writer does) would
    otherwise leave weights unreadable to the group the umask means to share them with.
    """
    mask = _umask()
    if root.is_dir():
        os.chmod(root, 0o777 & ~mask)
        for dirpath, dirs, files in os.walk(root):
            for d in dirs:
                os.chmod(os.path.join(dirpath, d), 0o777 & ~mask)
            for f in files:
                p = os.path.join(dirpath, f)
                if not os.path.islink(p):
                    os.chmod(p, 0o666 & ~mask)
    elif root.is_file():
        os.chmod(root, 0o666 & ~mask)


# -- atomic files and directories ------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    The file is created with mode 0666 & ~umask, as open() would; a full disk becomes
    NoSpaceError naming ``path``.
    """
    target = Path(path)
    with no_space_as_error(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(target)
        tmp_path = temp_name(target)
        try:  # created inside the try: a Ctrl-C right after creation still removes it
            os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            yield tmp_path
            fix_modes(tmp_path)
            os.replace(tmp_path, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp_path.unlink()
            raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``path``; swap it in for ``path`` on success."""
    target = Path(path)
    with no_space_as_error(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(target)
        tmp = temp_name(target, "tmp")
        try:
            tmp.mkdir()
            yield tmp
            fix_modes(tmp)
            replace_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


def replace_dir(tmp: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Put the finished directory ``tmp`` at ``out``, replacing what was there.

    Where the kernel can swap two names in one step there is no moment at which ``out`` is
    missing or half old, half new; elsewhere the old one is renamed aside first, which leaves
    a ``.old`` temporary (removed by the next run) if the process dies between the renames.
    """
    tmp, out = Path(tmp), Path(out)
    if not (out.exists() or out.is_symlink()):
        os.replace(tmp, out)
        return
    if out.is_dir() and not out.is_symlink() and _exchange(tmp, out):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old directory
        return
    old = temp_name(out, "old")
    os.replace(out, old)
    os.replace(tmp, out)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


# -- locks -----------------------------------------------------------------------------------


@contextlib.contextmanager
def output_lock(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on ``target`` (a run directory or a store) for the block.

    The lock is ``fcntl.flock`` on ``.NAME.lock`` beside the target, so that it also guards a
    store that is replaced by a rename. A second run to the same target gets a UsageError at
    once; the first is unharmed. The kernel drops the lock when its process dies, so a killed
    run never leaves a stale lock; the file is removed on release.
    """
    target = Path(target).absolute()  # "-o ." still names its directory
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.parent / f".{target.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(f"output {target} is in use by another readtax run (lock {lock}); "
                             "wait for it to finish or choose another output") from None
        # The holder before us may have removed the file after we opened it: lock the new one.
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{HOST} {os.getpid()}\n".encode())
        yield lock
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)


# -- writers ---------------------------------------------------------------------------------


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
