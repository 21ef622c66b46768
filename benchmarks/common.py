"""Shared benchmark helpers: timed child processes with peak RSS, data paths, tables."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("READTAX_BENCH_DATA", HERE / "data"))
VENV_BIN = Path(sys.executable).parent


def load_tool(name: str) -> ModuleType:
    """A script of the repository's ``tools/`` as a module (tools are not installed)."""
    spec = importlib.util.spec_from_file_location(name, HERE.parent / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


def readtax_cmd(*args: str) -> list[str]:
    _compile_package()
    exe = VENV_BIN / "readtax"
    return [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "readtax"]), *args]


_COMPILED: list[bool] = []


def readtax_in_process(*argv: str) -> float:
    """One readtax command run in this process (its stdout swallowed); returns its wall time."""
    from readtax.cli import main

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    if code != 0:
        raise RuntimeError(f"readtax {' '.join(argv)} failed with exit code {code}")
    return time.perf_counter() - t0


def _compile_package() -> None:
    """Write the package's bytecode once. An editable install leaves that to the first
    import, and where PYTHONDONTWRITEBYTECODE is set (as on the benchmark machine) every
    timed command would otherwise compile the package again (a cost docs/benchmarks.md
    gives)."""
    if _COMPILED:
        return
    import compileall

    import readtax

    compileall.compile_dir(str(Path(readtax.__file__).parent), quiet=1)
    _COMPILED.append(True)


class Measured(NamedTuple):
    wall: float  # seconds
    rss: float  # peak RSS in MB of the largest process of the command's tree
    cpu: float  # CPU seconds (user + system) of the tree


def _measure_once(cmd: list[str], env: dict | None, check: bool) -> Measured:
    # A wrapper process, so that RUSAGE_CHILDREN covers only this command's tree.
    wrapper = (
        "import resource, subprocess, sys, time, json;"
        "t = time.perf_counter();"
        "rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL);"
        "dt = time.perf_counter() - t;"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(json.dumps([rc, dt, r.ru_maxrss, r.ru_utime + r.ru_stime]))"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    rc, dt, rss_kb, cpu = json.loads(out.stdout.strip().splitlines()[-1])
    if check and rc != 0:
        raise SystemExit(f"command failed ({rc}): {' '.join(cmd)}\n{out.stderr}")
    return Measured(dt, rss_kb / 1024, cpu)


def measure(cmd: list[str], *, repeat: int = 1, before: Callable[[], None] | None = None,
            env: dict | None = None, check: bool = True) -> Measured:
    """Run ``cmd`` ``repeat`` times (``before`` first each time, untimed): the run with the
    median wall time, with the largest peak RSS of all runs.

    Timings on a small shared VM vary by tens of percent from run to run (first-touch page
    faults are expensive there); a median of a few runs is what a user sees typically.
    """
    runs = []
    for _ in range(max(1, repeat)):
        if before is not None:
            before()
        runs.append(_measure_once(cmd, env, check))
    mid = sorted(runs, key=lambda m: m.wall)[len(runs) // 2]
    return Measured(mid.wall, max(m.rss for m in runs), mid.cpu)


def need(tool: str, package: str | None = None) -> str:
    """Path of an external tool, installing the Debian package if it is missing."""
    path = shutil.which(tool)
    if path:
        return path
    pkg = package or tool
    print(f"installing {pkg} (apt-get)...", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "-qq", pkg], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = shutil.which(tool)
    if not path:
        raise SystemExit(f"{tool} not found and could not be installed (apt-get install {pkg})")
    return path


def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def warm(path: Path) -> None:
    """Read a file once so that timings compare with a warm page cache."""
    with open(path, "rb") as fh:
        while fh.read(64 << 20):
            pass


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def table(rows: list[list], header: list[str]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def load_note() -> str:
    """The load average as a benchmark ends: timings on a shared machine need it beside them."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load unknown"
    return f"load average at the end {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


_ = resource  # imported for callers that measure in-process


# -- whole-tree measurement (long commands, several processes) --------------------------------


class TreeMeasured(NamedTuple):
    wall: float  # seconds
    cpu: float  # CPU seconds (user + system) of the whole tree, children included
    rss_max: float  # MB: largest RSS one process of the tree reached (getrusage, exact)
    rss_tree: float  # MB: largest sum of the tree's RSS at one poll
    anon_max: float  # MB: largest anonymous RSS of one process at one poll
    file_max: float  # MB: largest file-mapped (+ shared memory) RSS of one process at one poll
    written: int  # bytes the tree wrote to storage (/proc/<pid>/io write_bytes)
    rc: int


def _tree(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc/<pid>/task/*/children)."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as fh:
                    todo.extend(int(x) for x in fh.read().split())
        except OSError:
            continue
    return out


def _rss_parts(pid: int) -> tuple[int, int]:
    """(anonymous, file + shmem) resident kB of one process."""
    anon = file = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1])
                elif line.startswith(("RssFile:", "RssShmem:")):
                    file += int(line.split()[1])
    except OSError:
        pass
    return anon, file


def measure_tree(cmd: list[str], *, interval: float = 0.2, env: dict | None = None,
                 log: Path | None = None) -> TreeMeasured:
    """Run ``cmd`` once, polling /proc every ``interval`` s for the RSS of every process of
    its tree (anonymous and file-mapped apart) and the bytes they write.

    The largest single-process peak comes from the kernel (exact); the tree sum and the
    anonymous/file split are sampled, so they can miss peaks shorter than ``interval``.
    Bytes written are the wrapper's own I/O counter after the wait: the kernel adds every
    reaped child's counters to its parent's, so it covers the whole tree (files deleted
    later, such as temporary runs, included).
    """
    wrapper = (
        "import resource, subprocess, sys, json, os;"
        "p = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL,"
        " stderr=open(sys.argv[1], 'w') if sys.argv[1] else None);"
        "print(p.pid, flush=True);"
        "rc = p.wait();"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN);"
        "io = dict(l.split(': ') for l in open('/proc/self/io').read().splitlines());"
        "print(json.dumps([rc, r.ru_maxrss, r.ru_utime + r.ru_stime,"
        " int(io['write_bytes'])]), flush=True)"
    )
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", wrapper, str(log or ""), *cmd],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    tree_peak = anon_peak = file_peak = 0
    while proc.poll() is None:
        total = 0
        for pid in _tree(child):
            anon, file = _rss_parts(pid)
            total += anon + file
            anon_peak, file_peak = max(anon_peak, anon), max(file_peak, file)
        tree_peak = max(tree_peak, total)
        time.sleep(interval)
    rc, rss_kb, cpu, written = json.loads(proc.stdout.read().strip().splitlines()[-1])
    wall = time.perf_counter() - t
    return TreeMeasured(wall, cpu, rss_kb / 1024, max(tree_peak, rss_kb) / 1024,
                        anon_peak / 1024, file_peak / 1024, written, rc)
