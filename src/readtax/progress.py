"""A small progress bar on stderr: quiet unless stderr is a terminal (or forced)."""

from __future__ import annotations

import sys
import time


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


class Progress:
    """``update(done)`` with an absolute count; prints at most a few times per second.

    ``unit='bytes'`` formats as sizes with a rate; anything else as counts (e.g. reads).
    """

    def __init__(self, total: float | None, desc: str = "", unit: str = "bytes",
                 enabled: bool | None = None, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = total
        self.desc = desc
        self.unit = unit
        self.start = time.monotonic()
        self.last = 0.0
        self.done = 0.0

    def _fmt(self, n: float) -> str:
        return _fmt_bytes(n) if self.unit == "bytes" else f"{n:,.0f} {self.unit}"

    def update(self, done: float, extra: str = "") -> None:
        self.done = done
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.25:
            return
        self.last = now
        self._draw(now, extra)

    def _draw(self, now: float, extra: str = "") -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        parts = [self.desc, self._fmt(self.done)]
        if self.total:
            pct = 100.0 * self.done / self.total
            parts[-1] += f" / {self._fmt(self.total)} ({pct:.0f}%)"
            if rate > 0:
                eta = (self.total - self.done) / rate
                parts.append(f"ETA {eta:.0f}s")
        parts.append(f"{self._fmt(rate)}/s")
        if extra:
            parts.append(extra)
        self.stream.write("\r" + "  ".join(p for p in parts if p) + "\033[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
