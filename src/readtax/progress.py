"""Progress of long verbs on stderr: one mechanism for every verb.

* stderr is a terminal: a live bar, redrawn at most four times a second.
* stderr is not a terminal (a log file, a pipe, a batch scheduler): a plain line every
  ``READTAX_PROGRESS_INTERVAL`` seconds (default 60), so a log shows how far a long run got.
* Progress is INFO-level output: ``--quiet`` (the ``readtax`` logger above INFO, which is also
  the default when readtax is used as a library without the CLI) silences it in every verb.

``enabled=False`` turns it off, ``enabled=True`` forces the live bar (for a caller that knows
better than ``isatty``), ``None`` chooses as above.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from .errors import UsageError

INTERVAL_ENV = "READTAX_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 60.0
BAR_REFRESH = 0.25  # seconds between redraws of the live bar


def progress_interval() -> float:
    """Seconds between plain progress lines (``READTAX_PROGRESS_INTERVAL``, default 60)."""
    text = os.environ.get(INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise UsageError(f"{INTERVAL_ENV}={text!r}: expected a number of seconds > 0")
    return value


def progress_mode(enabled: bool | None, stream) -> str:
    """``off``, ``bar`` (live, terminal) or ``lines`` (periodic plain lines)."""
    if enabled is False:
        return "off"
    if enabled is True:
        return "bar"
    if not logging.getLogger("readtax").isEnabledFor(logging.INFO):
        return "off"
    isatty = getattr(stream, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


class Progress:
    """``update(done)`` with an absolute count; draws or prints as the mode says.

    ``unit='bytes'`` formats as sizes with a rate; anything else as counts (e.g. reads).
    """

    def __init__(self, total: float | None, desc: str = "", unit: str = "bytes",
                 enabled: bool | None = None, stream=None, interval: float | None = None,
                 initial: float = 0.0) -> None:
        self.stream = stream or sys.stderr
        self.mode = progress_mode(enabled, self.stream)
        self.enabled = self.mode != "off"
        self.interval = (interval if interval is not None else
                         progress_interval() if self.mode == "lines" else BAR_REFRESH)
        self.total = total
        self.desc = desc
        self.unit = unit
        self.start = time.monotonic()
        self.last = self.start if self.mode == "lines" else 0.0
        self.initial = initial  # already done before this session (a resumed run): not in the rate
        self.done = initial
        self.extra = ""
        self._drawn = False  # a bar is on the current line

    def _fmt(self, n: float) -> str:
        return _fmt_bytes(n) if self.unit == "bytes" else f"{n:,.0f} {self.unit}"

    def update(self, done: float, extra: str = "") -> None:
        self.done = done
        self.extra = extra
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        self._emit(now)

    def text(self, now: float | None = None) -> str:
        """The progress as one line: done / total (percent), ETA, rate, extra."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.start, 1e-9)
        rate = (self.done - self.initial) / elapsed
        if self.total and self.unit != "bytes":
            parts = [self.desc, f"{self.done:,.0f}/{self.total:,.0f} {self.unit}"
                     f" ({100.0 * self.done / self.total:.0f}%)"]
        elif self.total:
            parts = [self.desc, f"{self._fmt(self.done)} / {self._fmt(self.total)}"
                     f" ({100.0 * self.done / self.total:.0f}%)"]
        else:
            parts = [self.desc, self._fmt(self.done)]
        if self.total and rate > 0:
            parts.append(f"ETA {(self.total - self.done) / rate:.0f}s")
        parts.append(f"{self._fmt(rate)}/s")
        if self.extra:
            parts.append(self.extra)
        return "  ".join(p for p in parts if p)

    def _emit(self, now: float) -> None:
        if self.mode == "bar":
            self.stream.write("\r" + self.text(now) + "\033[K")
            self._drawn = True
        else:
            self.stream.write(self.text(now) + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Take the live bar off its line (before a log line); the next update redraws it."""
        if self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._drawn = False
            self.last = 0.0

    def close(self) -> None:
        """The live bar ends with its final state; plain lines need no closing line."""
        if self.mode == "bar":
            self._emit(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
