"""``readtax unpack``: a store written back out as FASTA, streamed one id block at a time."""

from __future__ import annotations

import os

import numpy as np

from ..batch import ragged_index
from ..errors import UsageError
from ..progress import Progress
from .reader import ReadStore

UNPACK_BASES = 32 << 20  # bases decoded at a time (bounds unpack's memory)


def unpack(path: str | os.PathLike[str], out: str | os.PathLike[str], *, force: bool = False,
           progress: bool | None = None) -> int:
    """Write the store as FASTA (one line per sequence, headers as packed); returns reads.

    Reads come in id order: the input order for ``--no-shuffle`` stores, otherwise grouped by
    class within each bucket. Streams one id block at a time; the output is written atomically.
    """
    from ..outputs import atomic_open, check_output_path

    store = ReadStore(path)
    target = check_output_path(out, force=force)
    if target.is_dir():
        raise UsageError(f"output {target} is a directory")
    bar = Progress(store.n, f"unpack {store.path.name}", unit="reads", enabled=progress)
    idx = np.asarray(store.id_index, np.int64)
    step = max(1, UNPACK_BASES // max(store.max_length, 1))
    with atomic_open(target, "wb") as fh:
        for k in range(len(idx) - 1):
            raw, bounds = store.id_block(k)
            text = np.frombuffer(raw, np.uint8)
            for lo in range(int(idx[k, 0]), int(idx[k + 1, 0]), step):
                hi = min(lo + step, int(idx[k + 1, 0]))
                seq, off = store.sequences(store.physical(np.arange(lo, hi)))
                b = bounds[lo - int(idx[k, 0]) : hi - int(idx[k, 0])]
                fh.write(_fasta_records(text, b, seq, off).tobytes())
                bar.update(hi)
    bar.close()
    return store.n


def _fasta_records(text: np.ndarray, bounds: np.ndarray, seq: np.ndarray, off: np.ndarray
                   ) -> np.ndarray:
    """``>header\\nSEQ\\n`` for each read, built with two ragged copies."""
    hl = (bounds[:, 1] - bounds[:, 0]).astype(np.int64)
    sl = np.diff(off)
    rec = hl + sl + 3
    start = np.zeros(len(rec) + 1, np.int64)
    np.cumsum(rec, out=start[1:])
    buf = np.full(int(start[-1]), 10, np.uint8)
    buf[start[:-1]] = ord(">")
    src, _ = ragged_index(bounds[:, 0].astype(np.int64), hl)
    dest, _ = ragged_index(start[:-1] + 1, hl)
    buf[dest] = text[src]
    dest, _ = ragged_index(start[:-1] + hl + 2, sl)
    buf[dest] = seq
    return buf
