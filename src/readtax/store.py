"""The packed read store: ``pack``, ``verify``, ``unpack`` and random access (:class:`ReadStore`).

A store is a directory of plain numpy-memmappable files described by ``manifest.json``; on
150 bp reads it takes about 42-44 bytes per read, ids included.

Layout (format version 1)
-------------------------
Reads are grouped into *buckets*, contiguous ranges of read indices (the *physical order*, in
which bases, classes, lengths and N flags are stored). Each bucket has a second order, the
*class order*: its reads sorted by class index, ties in input order. ``bucket_classes[b, c]``
counts class ``c`` in bucket ``b``, so "the k-th read of class c" is a bucket and a class-order
rank found by arithmetic, and class-balanced sampling needs no O(n) index.

* Shuffled store (the default): reads go to buckets by a seeded hash, and within bucket ``b``
  of ``m`` reads, physical slot ``permute(r, m, key(seed, b))`` holds the read of class-order
  rank ``r``. The store as a whole is in a seeded random order, so even sequential reading is
  well mixed. Ids are stored in class order (the store's *id order*), where neighbouring ids
  (same species, input order) share long prefixes.
* ``--no-shuffle``: the physical order is the input order, each bucket is one run of input,
  ``order.u32`` gives the physical slot of each class-order rank, and ids are stored in input
  order (the id order is the physical order).

Files (``n`` reads, ``T`` bases, ``C`` classes, ``B`` buckets):

``bases.2bit``          2-bit codes A=0 C=1 T=2 G=3 (``(ascii >> 1) & 3``), 4 bases per byte, low
                        bits first; reads are concatenated without padding (base ``g`` of the store
                        is in byte ``g >> 2`` at bits ``2 * (g & 3)``). N positions hold an arbitrary
                        code and are restored from the N runs.
``offsets.u64``         n + 1 base offsets (variable-length stores only; a fixed-length store has
                        ``fixed_length`` in the manifest and offset ``i * L``). Lengths are the
                        differences.
``classes.u16|u32``     class index per read (uint32 when C >= 65,536).
``nflags.bits``         one bit per read (bit ``i & 7`` of byte ``i >> 3``): the read has an N.
``nruns_start.u64``     sorted global base positions of runs of N (never crossing a read end)
``nruns_length.u32``    and their lengths.
``ids.zlib``            zlib blocks of front-coded header lines (:func:`encode_ids`), at most
                        65,536 per block; blocks never cross a bucket.
``ids_index.u64``       (blocks + 1, 2): first id-order index and byte offset of each block.
``buckets.u64``         B + 1 first read of each bucket.
``bucket_classes.u32``  (B, C) reads of each class in each bucket.
``order.u32``           (``--no-shuffle`` only) physical slot within its bucket of each class rank.

``manifest.json`` holds the format version, counts, the label map, the seed, statistics and the
size and CRC-32 checksum of every file. It is written last, and the directory is built under a
temporary name and renamed, so an interrupted ``pack`` leaves nothing that looks complete.

Packing
-------
Pass 1 (parallel over fixed-size byte ranges of plain files, whole gzip files) parses, labels
and 2-bit encodes reads (in the indexing pass) and writes them to temporary *run* files
grouped by bucket, the last bucket first, each batch's part of a bucket in class order. Pass 2
(parallel over buckets, first to last) loads one bucket from every run, maps class keys to
the final label map, orders it and writes its bytes in place; the main process writes the
ids and small tables, cuts the sections read so far off the runs' tails (their pages then
serve the store's writes) and checksums the files at the end. Bucket assignment and layouts
depend only on the inputs and the seed, never on the number of workers, so the output is
byte-identical for any ``--workers``. Memory is one run buffer per pass-1 worker and one
bucket per pass-2 worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import mmap
import os
import shutil
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from isal import isal_zlib
from isal.isal_zlib import crc32
from numpy.lib.stride_tricks import sliding_window_view

from . import __version__, _native
from .batch import SeqBatch
from .errors import InputError, StoreError, UsageError
from .fastx import _exclusive_cumsum, is_gzip, ragged_index, two_bit_rows
from .hashing import TAG_BUCKET, TAG_LAYOUT, hash64
from .labels import Labeler, LabelMap, LabelScheme, make_scheme, report_skipped
from .parallel import (
    UNIT_BYTES,
    Unit,
    check_inputs,
    default_workers,
    fixed_units,
    map_units_progress,
)
from .progress import Progress
from .sampler import feistel_params, permute
from .stats import MAX_LEN_BIN

log = logging.getLogger("readtax.store")

FORMAT = "readtax-store"
FORMAT_VERSION = 1
ID_BLOCK = 65536
RUN_BYTES = 48 << 20  # pass-1 input bytes buffered per temporary run file
BUCKET_BYTES = 96 << 20  # input bytes per shuffle bucket (pass-2 memory is proportional)
GZIP_RATIO = 4  # assumed expansion of gzip input when sizing buckets
MAX_BUCKETS = 65535
ID_LEVEL = 1  # on front-coded ids level 1 is within 15% of level 9 and 3x faster
# Per-file checksum in the manifest: CRC-32 (ISA-L, ~12 GB/s) catches corruption and
# truncation; stores written before it carry BLAKE2b, which verify still checks.
CHECKSUM = "crc32"
ID_PREFIX = 127  # longest shared prefix front coding records (bounds decoding memory)

F_BASES = "bases.2bit"
F_OFFSETS = "offsets.u64"
F_NFLAGS = "nflags.bits"
F_NSTART = "nruns_start.u64"
F_NLEN = "nruns_length.u32"
F_IDS = "ids.zlib"
F_IDINDEX = "ids_index.u64"
F_BUCKETS = "buckets.u64"
F_BCLASS = "bucket_classes.u32"
F_ORDER = "order.u32"

_N = ord("N")

# byte of 2-bit codes -> 4 ASCII letters (as one little-endian uint32).
_LETTERS = np.frombuffer(b"ACTG", dtype=np.uint8)
_b = np.arange(256, dtype=np.uint32)
_codes4 = np.stack([(_b >> (2 * t)) & 3 for t in range(4)], axis=1).astype(np.uint8)
DEC_ASCII4 = np.ascontiguousarray(_LETTERS[_codes4]).view("<u4").ravel()
# 16 bits (8 bases) -> 8 ASCII letters as one little-endian uint64 (512 KB table).
_w = np.arange(65536, dtype=np.uint32)
DEC_ASCII16 = np.ascontiguousarray(
    _LETTERS[np.stack([(_w >> (2 * t)) & 3 for t in range(8)], axis=1)]).view("<u8").ravel()
del _b, _codes4, _w


# -- 2-bit packing helpers ------------------------------------------------------------------


def encode_reads(seq: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """ASCII bases -> 2-bit bytes with every read starting at a byte boundary (pass-1 format)."""
    return two_bit_rows(seq, _exclusive_cumsum(np.asarray(lengths, np.int64)))


def repack(reads: Records, order: np.ndarray, lead: int, *,
           lengths: np.ndarray | None = None, fixed: int | None = None) -> np.ndarray:
    """Byte-aligned 2-bit reads (``reads`` taken in ``order``; their ``lengths`` are bases) ->
    one continuous 2-bit stream starting ``lead`` bases into its first byte. ``lengths``:
    the lengths in ``order``, when the caller has them; ``fixed``: every read has that many
    bases (rows are then found by arithmetic, not looked up)."""
    order = np.ascontiguousarray(order, np.int64)
    if fixed is not None:
        total = fixed * len(order)
    else:
        if lengths is None:
            lengths = reads.lengths[order]
        total = int(lengths.sum()) if len(order) else 0
    nbytes = -(-(lead + total) // 4)
    out = np.empty(nbytes + 1, np.uint8)  # one byte of slack for the shifted copy
    out[0] = 0  # the only byte the kernel reads before writing it
    _native.repack_2bit(reads.flat, reads.starts, reads.lengths, order, lead, out,
                        -1 if fixed is None else fixed)
    return out[:nbytes]


def _windows(bases: np.ndarray, first: np.ndarray, width: int) -> np.ndarray:
    """``bases[first[i] : first[i] + width]`` for every i as rows (zero past the end)."""
    n = len(bases)
    if n >= width and int(first.max()) <= n - width:
        # Row gathers from a sliding-window view copy whole rows; no per-byte index array.
        return sliding_window_view(bases, width)[first]
    return np.take(bases, first[:, None] + np.arange(width), mode="clip")


class FileRanges:
    """Byte ranges of one store file read with ``pread`` into the caller's arrays.

    The batch gather's source by default (see :class:`ReadStore`): a shuffled epoch touches
    every page of the store, and pages read through a mapping stay in the process's resident
    set until unmapped, so a mapping grows a loader worker's RSS to the store's size (page
    cache, but counted against the process by ``ps``, schedulers and memory limits). Read
    this way the pages stay page cache only. The descriptor is opened on first use; forked
    workers share it (``pread`` has no file position).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = os.path.getsize(path)
        self._fd: int | None = None

    def __len__(self) -> int:
        return self.size

    def __del__(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)

    def fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def into(self, out: np.ndarray, offsets: np.ndarray, sizes: np.ndarray,
             out_offsets: np.ndarray) -> np.ndarray:
        """``out`` (contiguous) with ``sizes[i]`` bytes from ``offsets[i]`` at byte
        ``out_offsets[i]`` of it; bytes past the end of the file read as zero."""
        def i64(a):
            return np.ascontiguousarray(a, np.int64)

        if out.size and len(offsets):
            _native.pread_ranges(self.fd(), i64(offsets), i64(sizes),
                                 memoryview(out).cast("B"), i64(out_offsets))
        return out

    def items(self, idx: np.ndarray, dtype) -> np.ndarray:
        """Elements ``idx`` of the file read as a flat array of ``dtype``."""
        dtype = np.dtype(dtype)
        m, k = len(idx), dtype.itemsize
        out = np.empty(m, dtype)
        return self.into(out, idx * k, np.full(m, k, np.int64), np.arange(m, dtype=np.int64) * k)


def unpack_bases(bases: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """ASCII bases of the reads at base ``offsets`` of a 2-bit stream (an array, or a
    :class:`FileRanges` of the file holding it), concatenated.

    One vectorised gather for the whole batch: a row of bytes per read, shifted per row (as
    64-bit words) so that every read starts at bit 0, expanded 8 bases at a time through a
    16-bit lookup table, then cut to length. Batches of very uneven lengths use a ragged gather
    instead, so the work stays proportional to the bases.
    """
    m = len(lengths)
    if m == 0:
        return np.zeros(0, np.uint8)
    offsets = np.asarray(offsets, np.int64)
    lengths = np.asarray(lengths, np.int64)
    shift = offsets & 3
    first = offsets >> 2
    lo, hi = int(lengths.min()), int(lengths.max())
    if hi * m > 2 * int(lengths.sum()) + 64:
        nb = (shift + lengths + 3) >> 2
        if isinstance(bases, FileRanges):
            boff = np.zeros(m + 1, np.int64)
            np.cumsum(nb, out=boff[1:])
            raw = bases.into(np.empty(int(boff[-1]), np.uint8), first, nb, boff[:-1])
        else:
            idx, boff = ragged_index(first, nb)
            raw = np.take(bases, idx, mode="clip")
        text = DEC_ASCII4[raw].view(np.uint8)
        pos, _ = ragged_index(boff[:-1] * 4 + shift, lengths)
        return text[pos]
    width = (hi + 6) >> 2  # bytes covering a read that starts up to 3 bases into a byte
    words = -(-(width + 1) // 8)
    rows = np.zeros((m, 8 * words), np.uint8)
    if isinstance(bases, FileRanges):
        bases.into(rows, first, np.full(m, width, np.int64),
                   np.arange(m, dtype=np.int64) * rows.shape[1])
    else:
        rows[:, :width] = _windows(bases, first, width)
    x = rows.view("<u8")
    if shift.any():
        s2 = (2 * shift).astype(np.uint64)[:, None]
        nxt = np.zeros_like(x)
        nxt[:, :-1] = x[:, 1:]
        x = (x >> s2) | ((nxt << (np.uint64(63) - s2)) << np.uint64(1))
    text = DEC_ASCII16[x.view("<u2").astype(np.intp)].view(np.uint8).reshape(m, 32 * words)
    if lo == hi:
        return np.ascontiguousarray(text[:, :hi]).ravel()
    return text[np.arange(32 * words)[None, :] < lengths[:, None]]


# -- read ids: front coding + zlib --------------------------------------------------------


@dataclass
class Records:
    """Variable-length byte records stored back to back: record i is
    ``flat[starts[i] : starts[i] + row_bytes[i]]``. For packed bases ``lengths`` counts bases
    and a record takes ``(length + 3) // 4`` bytes; for ids it is the byte length."""

    lengths: np.ndarray
    flat: np.ndarray
    packed: bool = False

    def __post_init__(self) -> None:
        self.lengths = np.asarray(self.lengths, np.int64)
        self.offsets = _exclusive_cumsum(self.row_bytes())  # n + 1: starts, then the end
        self.starts = self.offsets[:-1]

    def __len__(self) -> int:
        return len(self.lengths)

    def row_bytes(self) -> np.ndarray:
        return (self.lengths + 3) >> 2 if self.packed else self.lengths


def encode_ids(ids: Records, order: np.ndarray | None = None, *,
               out: np.ndarray | None = None) -> bytes:
    """Compress a block of ids (header lines without newlines), taken in ``order``.

    Front coding: the block holds one byte per id with the length of the prefix it shares with
    the previous id (at most ``ID_PREFIX``), then each id's remaining suffix ended by a newline;
    zlib compresses the whole. Neighbouring ids in the id order share most of their prefix.
    ``out``: a scratch buffer of at least two bytes per id plus the ids' bytes, reused by a
    caller that encodes many blocks.
    """
    order = np.arange(len(ids), dtype=np.int64) if order is None else np.asarray(order, np.int64)
    if out is None:
        out = np.empty(2 * len(order) + int(ids.lengths[order].sum()), np.uint8)
    size = _native.front_code(ids.flat, ids.offsets, order, ID_PREFIX, out)
    # ISA-L writes the same zlib format as zlib at level 1, about 4x faster.
    return isal_zlib.compress(out[:size], ID_LEVEL)


def decode_ids(blob: bytes, k: int) -> tuple[bytes, np.ndarray]:
    """Inverse of :func:`encode_ids`: newline-joined ids and their (start, end) bounds.

    A prefix byte at position j of id i comes from the latest id at or before i whose own
    suffix starts at or before j; a running maximum down the columns finds it for all ids at
    once.
    """
    data = np.frombuffer(zlib.decompress(blob), np.uint8)
    lcp = data[:k].astype(np.int64)
    body = data[k:]
    nl = np.flatnonzero(body == 10)
    if len(nl) != k:
        raise ValueError(f"id block holds {len(nl)} ids, expected {k}")
    suf_start = np.concatenate([[0], nl[:-1] + 1]).astype(np.int64)
    suf = nl - suf_start
    lengths = lcp + suf
    out_start = _exclusive_cumsum(lengths + 1)
    out = np.full(int(out_start[-1]), 10, np.uint8)
    dest, _ = ragged_index(out_start[:-1] + lcp, suf)
    src, _ = ragged_index(suf_start, suf)
    out[dest] = body[src]
    w = int(lcp.max(initial=0))
    if w > 0:
        rows = np.arange(k, dtype=np.int32)
        latest = np.where(lcp[:, None] <= np.arange(w)[None, :], rows[:, None], np.int32(-1))
        np.maximum.accumulate(latest, axis=0, out=latest)
        flat, _ = ragged_index(rows.astype(np.int64) * w, lcp)
        row = np.repeat(rows.astype(np.int64), lcp)
        j = flat - row * w
        r = latest.ravel()[flat].astype(np.int64)
        out[out_start[row] + j] = body[suf_start[r] + j - lcp[r]]
    bounds = np.stack([out_start[:-1], out_start[:-1] + lengths], axis=1)
    return out.tobytes(), bounds


# -- the manifest and file checks -----------------------------------------------------------


def is_store(path: str | os.PathLike[str]) -> bool:
    return Path(path).is_dir() and (Path(path) / "manifest.json").is_file()


def _class_file(manifest: dict) -> str:
    return "classes.u32" if manifest["class_dtype"] == "uint32" else "classes.u16"


def load_manifest(path: str | os.PathLike[str]) -> dict:
    """Read and sanity-check ``manifest.json``; StoreError names what is wrong."""
    path = Path(path)
    if not path.exists():
        raise StoreError("no such store", path)
    if not path.is_dir():
        raise StoreError("not a store directory (a packed store is a directory made by "
                         "'readtax pack')", path)
    mf = path / "manifest.json"
    if not mf.is_file():
        raise StoreError("manifest.json is missing: not a complete readtax store (was the "
                         "pack interrupted? run 'readtax pack' again)", path)
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"manifest.json is not valid JSON ({exc})", path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StoreError(f"manifest.json is not a {FORMAT} manifest", path)
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise StoreError("manifest.json has no integer format_version", path)
    if version > FORMAT_VERSION:
        raise StoreError(
            f"store format version {version} is newer than this readtax supports "
            f"({FORMAT_VERSION}); upgrade readtax", path)
    required = ("read_count", "total_bases", "label_map", "class_counts", "class_dtype",
                "files", "buckets", "shuffled", "seed", "max_length")
    missing = [k for k in required if k not in manifest]
    if missing:
        raise StoreError(f"manifest.json lacks {', '.join(missing)}", path)
    return manifest


def _check_sizes(path: Path, manifest: dict) -> None:
    for name, info in manifest["files"].items():
        f = path / name
        if not f.is_file():
            raise StoreError(f"file {name} is missing", path)
        size = f.stat().st_size
        if size != info["size"]:
            what = "truncated" if size < info["size"] else "larger than recorded"
            raise StoreError(f"file {name} is {what}: {size} bytes, expected {info['size']}", path)


# (path, device, inode, size, mtime) of class files whose checksum this process has checked.
_CHECKED_CLASS_FILES: set[tuple] = set()


def _check_class_file(path: Path, manifest: dict, name: str) -> None:
    """Checksum the class file once per process at open (cheap next to the bases, and the
    labels are what a corrupt store would silently get wrong); the rest stays in verify."""
    f = path / name
    info = manifest["files"][name]
    st = f.stat()
    key = (str(f.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _CHECKED_CLASS_FILES:
        return
    algorithm = CHECKSUM if CHECKSUM in info else "blake2b"
    if algorithm not in info:
        return  # a manifest without checksums: nothing to compare with
    if file_checksum(f, algorithm) != info[algorithm]:
        raise StoreError(f"{name} does not match its checksum in manifest.json: the store was "
                         "changed after packing (run 'readtax verify'; repack it)", path)
    _CHECKED_CLASS_FILES.add(key)


def check_label_map(store_map: LabelMap, mapping: LabelMap, where) -> None:
    """StoreError unless ``mapping`` gives the same class order as the store's label map."""
    if mapping == store_map:
        return
    if len(mapping) != len(store_map):
        detail = f"the mapping has {len(mapping)} classes, the store {len(store_map)}"
    else:
        diff = np.flatnonzero((mapping.class_ids != store_map.class_ids)
                              | (mapping.tax_ids != store_map.tax_ids)
                              | np.array([a != b for a, b in zip(mapping.names, store_map.names)]))
        i = int(diff[0])
        detail = (f"class index {i} is {int(mapping.class_ids[i])} {mapping.names[i]!r} in the "
                  f"mapping but {int(store_map.class_ids[i])} {store_map.names[i]!r} in the store")
    raise StoreError(f"the mapping disagrees with the store's label map ({detail}); "
                     "use the store's label map or repack with this mapping", where)


# -- random access -------------------------------------------------------------------------


class ReadStore:
    """Random access to a packed store (memory-mapped; opening checks file sizes only).

    ``read(i)`` returns one read; ``batch(indices)`` a whole :class:`SeqBatch` through one
    vectorised gather. Read indices are physical positions ``0 .. len-1``.

    ``gather`` picks how :meth:`batch` and :meth:`sequences` read bases, classes, N flags and
    offsets: ``"pread"`` (default) reads each read's bytes with one system call per file, so
    the process's RSS stays flat however much of the store an epoch touches (the pages stay
    page cache); ``"mmap"`` gathers from the mappings, faster while the touched part of the
    store is small, but every page touched stays in the RSS of the process until it exits.
    """

    def __init__(self, path: str | os.PathLike[str], *, mapping: LabelMap | None = None,
                 id_cache_blocks: int = 32, gather: str = "pread") -> None:
        if gather not in ("pread", "mmap"):
            raise UsageError(f"gather must be 'pread' or 'mmap', got {gather!r}")
        self.gather = gather
        self.path = Path(path)
        self.manifest = m = load_manifest(self.path)
        missing = sorted(_expected_files(m) - set(m["files"]))
        if missing:
            raise StoreError(f"manifest.json does not list {', '.join(missing)}", self.path)
        _check_sizes(self.path, m)
        self.n = int(m["read_count"])
        self.total_bases = int(m["total_bases"])
        self.label_map = LabelMap.from_rows(m["label_map"])
        if mapping is not None:
            check_label_map(self.label_map, mapping, self.path)
        self.class_counts = np.asarray(m["class_counts"], dtype=np.int64)
        self.fixed_length = m.get("fixed_length")
        self.max_length = int(m["max_length"])
        self.shuffled = bool(m["shuffled"])
        self.seed = int(m["seed"])
        self.class_file = _class_file(m)
        _check_class_file(self.path, m, self.class_file)
        self.bases = self._array(F_BASES, np.uint8)
        self.offsets_ = None if self.fixed_length else self._array(F_OFFSETS, np.uint64)
        self.classes = self._array(self.class_file, np.dtype(m["class_dtype"]))
        self.nflags = self._array(F_NFLAGS, np.uint8)
        self.nstart = self._array(F_NSTART, np.uint64)
        self.nlen = self._array(F_NLEN, np.uint32)
        self.bucket_starts = self._array(F_BUCKETS, np.uint64).astype(np.int64)
        self.n_buckets = len(self.bucket_starts) - 1
        index, table = self._array(F_IDINDEX, np.uint64), self._array(F_BCLASS, np.uint32)
        if len(index) % 2 or len(table) != self.n_buckets * len(self.label_map):
            raise StoreError(f"inconsistent store: {F_IDINDEX} or {F_BCLASS} has the wrong "
                             "size", self.path)
        self.id_index = index.reshape(-1, 2)
        self.bucket_classes = table.reshape(self.n_buckets, len(self.label_map))
        self.order = None if self.shuffled else self._array(F_ORDER, np.uint32)
        self._ranges: dict[str, FileRanges] = {}
        self._id_cache: OrderedDict[int, tuple[bytes, np.ndarray]] = OrderedDict()
        self._id_cache_blocks = id_cache_blocks
        self._select_tables: tuple[np.ndarray, np.ndarray] | None = None
        self._keys: np.ndarray | None = None
        _Consistency(self).shapes()  # cheap: array lengths and the class table's sums

    def _array(self, name: str, dtype) -> np.ndarray:
        f = self.path / name
        if self.manifest["files"][name]["size"] == 0:
            return np.zeros(0, dtype)
        return np.memmap(f, dtype=dtype, mode="r")

    def __reduce__(self):
        # DataLoader workers started by spawn reopen the store instead of pickling maps.
        return (_reopen, (str(self.path), self._id_cache_blocks, self.gather))

    def _source(self, name: str, mapped: np.ndarray):
        """What the batch gather reads file ``name`` from: the mapping or a FileRanges."""
        if self.gather == "mmap" or not len(mapped):
            return mapped
        if name not in self._ranges:
            self._ranges[name] = FileRanges(self.path / name)
        return self._ranges[name]

    def _geometry(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Base offsets and lengths of the reads ``idx`` (one offsets read per read)."""
        if self.fixed_length:
            return idx * int(self.fixed_length), np.full(idx.shape, int(self.fixed_length),
                                                         np.int64)
        src = self._source(F_OFFSETS, self.offsets_)
        if isinstance(src, FileRanges):
            m = len(idx)
            pair = src.into(np.empty((m, 2), np.uint64), idx * 8, np.full(m, 16, np.int64),
                            np.arange(m, dtype=np.int64) * 16).astype(np.int64)
            return pair[:, 0], pair[:, 1] - pair[:, 0]
        return self.base_offsets(idx), self.lengths(idx)

    def _batch_labels(self, idx: np.ndarray) -> np.ndarray:
        src = self._source(self.class_file, self.classes)
        if isinstance(src, FileRanges):
            return self._check_labels(src.items(idx, self.classes.dtype).astype(np.int64))
        return self.labels(idx)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"ReadStore({str(self.path)!r}, reads={self.n}, classes={len(self.label_map)})"

    # -- per-read geometry --

    def lengths(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        if self.fixed_length:
            return np.full(idx.shape, int(self.fixed_length), np.int64)
        return (self.offsets_[idx + 1] - self.offsets_[idx]).astype(np.int64)

    def base_offsets(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        if self.fixed_length:
            return idx * int(self.fixed_length)
        return self.offsets_[idx].astype(np.int64)

    def labels(self, indices) -> np.ndarray:
        """Class indices of the reads ``indices``; StoreError for one outside the label map
        (a class file changed after the open-time check must not become a wrong label)."""
        return self._check_labels(self.classes[np.asarray(indices, dtype=np.int64)].astype(np.int64))

    def _check_labels(self, cls: np.ndarray) -> np.ndarray:
        if cls.size and int(cls.max()) >= len(self.label_map):
            raise StoreError(f"{self.class_file} holds class index {int(cls.max())} but the "
                             f"store has {len(self.label_map)} classes: the store is corrupt "
                             "(run 'readtax verify')", self.path)
        return cls

    def _check_indices(self, idx: np.ndarray) -> None:
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= self.n):
            bad = int(idx[(idx < 0) | (idx >= self.n)][0])
            raise IndexError(f"read index {bad} out of range for a store of {self.n} reads")

    # -- bases --

    def sequences(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Flat ASCII bases and offsets of the reads ``indices`` (one gather)."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        self._check_indices(idx)
        off, lengths = self._geometry(idx)
        seq = unpack_bases(self._source(F_BASES, self.bases), off, lengths)
        out_off = np.zeros(len(idx) + 1, np.int64)
        np.cumsum(lengths, out=out_off[1:])
        if len(self.nstart) and len(idx):
            self._restore_n(seq, idx, off, lengths, out_off)
        return seq, out_off

    def _restore_n(self, seq, idx, off, lengths, out_off) -> None:
        src = self._source(F_NFLAGS, self.nflags)
        got = src.items(idx >> 3, np.uint8) if isinstance(src, FileRanges) else src[idx >> 3]
        flags = (got >> (idx & 7).astype(np.uint8)) & 1
        sel = np.flatnonzero(flags)
        if not len(sel):
            return
        lo = np.searchsorted(self.nstart, off[sel].astype(np.uint64), side="left")
        hi = np.searchsorted(self.nstart, (off[sel] + lengths[sel]).astype(np.uint64), side="left")
        cnt = (hi - lo).astype(np.int64)
        runs, _ = ragged_index(lo.astype(np.int64), cnt)
        owner = np.repeat(sel, cnt)
        local = self.nstart[runs].astype(np.int64) - off[owner] + out_off[owner]
        pos, _ = ragged_index(local, self.nlen[runs].astype(np.int64))
        seq[pos] = _N

    def batch(self, indices, *, with_ids: bool = False) -> SeqBatch:
        """A :class:`SeqBatch` of the reads ``indices`` (labels = class indices)."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        self.check_unchanged()
        seq, off = self.sequences(idx)
        ids = self.ids(idx) if with_ids else None
        return SeqBatch(seq, off, self._batch_labels(idx), idx, ids)

    def check_unchanged(self) -> None:
        """StoreError if the bases or class file shrank since the store was opened.

        Reading a memory-mapped page past a file's new end kills the process with SIGBUS;
        two stat calls per batch turn a store truncated during a run into an error instead.
        """
        for name in (F_BASES, self.class_file):
            want = self.manifest["files"][name]["size"]
            try:
                size = os.stat(self.path / name).st_size
            except OSError:
                size = -1
            if size != want:
                raise StoreError(f"file {name} changed while in use ({size} bytes, expected "
                                 f"{want}): the store was modified during this run", self.path)

    def read(self, i: int) -> tuple[str, str, int]:
        """(id, sequence, class index) of read ``i``; the id is the header's first word."""
        seq, _ = self.sequences([int(i)])
        return self.ids([int(i)])[0], seq.tobytes().decode("ascii"), int(self.classes[int(i)])

    # -- buckets, id order and class selection --

    def bucket_of(self, indices: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.bucket_starts, indices, side="right") - 1

    def _layout_keys(self, buckets: np.ndarray) -> np.ndarray:
        if self._keys is None:
            self._keys = hash64(self.seed, TAG_LAYOUT, np.arange(self.n_buckets, dtype=np.uint64))
        return self._keys[buckets]

    def id_rank(self, indices) -> np.ndarray:
        """Id-order position of the reads at physical ``indices``."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        if not self.shuffled:
            return idx
        b = self.bucket_of(idx)
        start = self.bucket_starts[b]
        size = self.bucket_starts[b + 1] - start
        return start + permute(idx - start, size, self._layout_keys(b), inverse=True)

    def physical(self, id_ranks) -> np.ndarray:
        """Physical index of the reads at id-order positions ``id_ranks``."""
        q = np.asarray(id_ranks, dtype=np.int64).ravel()
        if not self.shuffled:
            return q
        b = self.bucket_of(q)
        start = self.bucket_starts[b]
        size = self.bucket_starts[b + 1] - start
        return start + permute(q - start, size, self._layout_keys(b))

    def _tables(self) -> tuple[np.ndarray, np.ndarray]:
        if self._select_tables is None:
            bc = np.asarray(self.bucket_classes, dtype=np.int64)
            nb, nc = bc.shape
            # g[c, b] = class-sorted index of the first class-c read of bucket b (monotone
            # when flattened), within[b, c] = class-order rank of that read inside bucket b.
            cum = np.zeros((nc, nb + 1), np.int64)
            np.cumsum(bc.T, axis=1, out=cum[:, 1:])
            class_start = np.zeros(nc, np.int64)
            np.cumsum(self.class_counts[:-1], out=class_start[1:])
            g = (cum + class_start[:, None]).ravel()
            small = int(bc.sum(axis=1).max(initial=0)) < 2**31
            within = np.zeros((nb, nc), np.int32 if small else np.int64)
            np.cumsum(bc[:, :-1], axis=1, out=within[:, 1:])
            self._select_tables = (g, within)
        return self._select_tables

    def class_select(self, classes, ranks) -> np.ndarray:
        """Physical index of the ``ranks[i]``-th read (0-based) of class ``classes[i]``."""
        c = np.asarray(classes, dtype=np.int64).ravel()
        k = np.asarray(ranks, dtype=np.int64).ravel()
        if len(c) and ((k < 0).any() or (k >= self.class_counts[c]).any()):
            raise IndexError("class_select: rank outside the class")
        g, within = self._tables()
        nb = self.n_buckets
        class_start = g[np.arange(len(self.label_map)) * (nb + 1)]
        j = class_start[c] + k
        row = np.searchsorted(g, j, side="right") - 1
        b = row % (nb + 1)
        r = within[b, c] + (j - g[row])
        start = self.bucket_starts[b]
        if self.shuffled:
            size = self.bucket_starts[b + 1] - start
            return start + permute(r, size, self._layout_keys(b))
        return start + self.order[start + r].astype(np.int64)

    # -- ids --

    def _id_block(self, k: int) -> tuple[bytes, np.ndarray]:
        hit = self._id_cache.get(k)
        if hit is not None:
            self._id_cache.move_to_end(k)
            return hit
        lo, hi = int(self.id_index[k, 1]), int(self.id_index[k + 1, 1])
        count = int(self.id_index[k + 1, 0] - self.id_index[k, 0])
        with open(self.path / F_IDS, "rb") as fh:
            fh.seek(lo)
            blob = fh.read(hi - lo)
        try:
            entry = decode_ids(blob, count)
        except (zlib.error, ValueError) as exc:
            raise StoreError(f"id block {k} is corrupt ({exc}); run 'readtax verify'",
                             self.path) from None
        self._id_cache[k] = entry
        if len(self._id_cache) > self._id_cache_blocks:
            self._id_cache.popitem(last=False)
        return entry

    def headers_by_rank(self, id_ranks) -> list[str]:
        """Full header lines of the reads at id-order positions ``id_ranks``."""
        q = np.asarray(id_ranks, dtype=np.int64).ravel()
        blocks = np.searchsorted(self.id_index[:, 0].astype(np.int64), q, side="right") - 1
        order = np.argsort(blocks, kind="stable")
        parts = []
        for k in np.unique(blocks).tolist():
            raw, bounds = self._id_block(k)
            rows = q[order[np.searchsorted(blocks[order], k):
                           np.searchsorted(blocks[order], k, side="right")]]
            b = bounds[rows - int(self.id_index[k, 0])]
            # One ragged copy and one decode per block, newline-separated, then split in C.
            idx, _ = ragged_index(b[:, 0], b[:, 1] - b[:, 0] + 1)
            parts.append(np.frombuffer(raw, np.uint8)[idx])
        if not parts:
            return []
        text = np.concatenate(parts).tobytes().decode("utf-8", "replace")
        grouped = text.split("\n")[:-1]
        out: list[str] = [""] * len(q)
        for pos, h in zip(order.tolist(), grouped):
            out[pos] = h
        return out

    def headers(self, indices) -> list[str]:
        """Full header lines of the reads at physical ``indices``."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        self._check_indices(idx)
        return self.headers_by_rank(self.id_rank(idx))

    def ids(self, indices) -> list[str]:
        """Read ids (first word of each header, as Kraken2 writes them)."""
        return [h.split(None, 1)[0] if h.strip() else "" for h in self.headers(indices)]


def _reopen(path: str, cache: int, gather: str = "pread") -> ReadStore:
    return ReadStore(path, id_cache_blocks=cache, gather=gather)


def store_stats(store: ReadStore):
    """:class:`readtax.stats.ReadStats` of a store, from its manifest (instant)."""
    from .stats import ReadStats

    m = store.manifest
    st = m.get("stats", {})
    hist = {int(k): int(v) for k, v in st.get("length_histogram", {}).items()}
    counts = np.zeros(max(hist, default=-1) + 1, np.int64)
    for k, v in hist.items():
        counts[k] = v
    return ReadStats(
        reads=store.n, bases=store.total_bases, non_acgt=int(st.get("non_acgt", 0)),
        min_len=int(m.get("min_length", 0)),
        max_len=int(m["max_length"]), length_counts=counts,
        class_counts={i: int(c) for i, c in enumerate(store.class_counts) if c},
        skipped_unknown=int(m.get("skipped_unknown", 0)),
        skipped_bad=dict(m.get("skipped_bad", {})), files=[str(store.path)],
    )


# -- pack, pass 1: parse and spread into temporary runs ------------------------------------


@dataclass
class _RunInfo:
    """A pass-1 run file, bucket-major with the last bucket first: bucket b's section holds
    its class keys, lengths and header lengths (uint32), N-run reads, starts and lengths
    (uint32), packed bases and headers, in that order. ``cum[b]`` sums, over the buckets
    before b, its reads, N runs, packed bytes, header bytes and bases (shape (B + 1, 5)).

    Pass 2 builds buckets first to last, so the sections it has read are always the tail of
    the file: truncating it there hands their pages back while pass 2 writes the store (see
    :func:`_section_bytes`)."""

    path: str
    unit: int
    cum: np.ndarray


@dataclass
class _UnitResult:
    runs: list[_RunInfo]
    keys: tuple[np.ndarray, np.ndarray] | None  # this unit's classes: keys, tax ids (local order)
    counts: np.ndarray  # reads per local class index
    skipped: int
    skipped_keys: dict
    reads: int = 0
    bases: int = 0
    non_acgt: int = 0
    skipped_bad: dict = field(default_factory=dict)
    min_len: int = 0
    max_len: int = 0
    length_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


_CTX: dict = {}  # pack context shared with forked workers (set before each pool starts)

_COLS = 5  # reads, n-runs, packed bytes, header bytes, bases
F_TABLE = "table.i64"  # the runs' bucket tables, bucket-major (see _transpose_table)
_TABLE_BLOCK = 4 << 20  # bytes of run tables transposed at a time


def _n_runs(seq: np.ndarray, seq_offsets: np.ndarray):
    """(read, start within read, length) of every run of N bases of a batch."""
    npos = np.flatnonzero(seq == _N)
    if not len(npos):
        z = np.zeros(0, np.uint32)
        return z, z, z, 0
    read = np.searchsorted(seq_offsets, npos, side="right") - 1
    brk = np.ones(len(npos), bool)
    brk[1:] = (np.diff(npos) != 1) | (np.diff(read) != 0)
    first = np.flatnonzero(brk)
    run_len = np.diff(np.append(first, len(npos)))
    run_read = read[first]
    run_start = npos[first] - seq_offsets[run_read]
    return (run_read.astype(np.uint32), run_start.astype(np.uint32), run_len.astype(np.uint32),
            len(npos))


class _RunBuffer:
    """Pass-1 reads of one unit, flushed to a run file grouped by bucket.

    Each batch is sorted by bucket, and by class within a bucket, as it arrives (a small,
    cache-resident sort: ``_native.split_batch``) and kept whole with the offsets of its
    buckets' parts; a flush writes the bucket-major file with gathered writes straight from
    the parts (``_native.write_parts``). No Python work per bucket: a full-size input has
    about a thousand buckets.
    """

    FIELDS = ("cls", "len", "hlen", "rr", "rs", "rl", "packed", "hdr")

    def __init__(self, unit: int, tmp: Path, n_buckets: int) -> None:
        self.unit = unit
        self.tmp = tmp
        self.n_buckets = n_buckets
        self.runs: list[_RunInfo] = []
        self._reset()

    def _reset(self) -> None:
        # field -> batch -> data, and field -> batch -> byte offsets of the buckets' parts
        self.parts: list[list[np.ndarray]] = [[] for _ in self.FIELDS]
        self.bounds: list[list[np.ndarray]] = [[] for _ in self.FIELDS]
        # table[b] = reads, N runs, packed bytes, header bytes, bases of bucket b in this run
        self.table = np.zeros((self.n_buckets, _COLS), np.int64)
        self.nbytes = 0

    def add(self, cls: np.ndarray, lengths: np.ndarray, packed: np.ndarray,
            headers: np.ndarray, header_offsets: np.ndarray, runs, bucket_key: int, first: int,
            class_rank: np.ndarray | None, class_counts: np.ndarray,
            length_hist: np.ndarray) -> tuple[int, int]:
        """Add a batch: its class keys, lengths, 2-bit rows (one per read, back to back),
        headers, N runs and (``bucket_key``, ``first``) the hash of its unit and the number
        of its first read there, which place each read in a bucket. ``class_rank[key]``
        orders the class keys as the final label map will (None: the keys are final class
        indices already). Counts the reads into ``class_counts`` (by key) and
        ``length_hist`` (by length, the last bin for longer) and returns the shortest and
        longest length."""
        nbk = self.n_buckets
        m = len(cls)
        order = np.empty(m, np.int64)
        u32 = np.empty((3, m), np.uint32)  # class keys, lengths, header lengths
        rows = np.empty(len(packed), np.uint8)
        hdr = np.empty(len(headers), np.uint8)
        bounds = np.empty((4, nbk + 1), np.int64)  # reads, row bytes, header bytes, bases
        rank = np.zeros(0, np.int64) if class_rank is None or nbk == 1 else class_rank
        span = _native.split_batch(
            bucket_key, first, nbk, np.ascontiguousarray(cls, np.int64), rank,
            np.ascontiguousarray(lengths, np.int64), packed, headers,
            np.ascontiguousarray(header_offsets, np.int64), order, u32[0], u32[1], u32[2], rows,
            hdr, bounds, class_counts, length_hist)
        rr, rs, rl = runs
        if len(rr):
            # N runs follow their reads to their new positions, in that order (which groups
            # them by bucket; a stable sort keeps each read's runs in order), and a run's read
            # number counts from the first read of its bucket's section.
            pos = np.empty(m, np.int64)
            pos[order] = np.arange(m)
            rr = pos[np.asarray(rr, np.int64)]
            rorder = np.argsort(rr, kind="stable")
            rr, rs, rl = rr[rorder], rs[rorder], rl[rorder]
            run_bucket = np.searchsorted(bounds[0], rr, side="right") - 1
            rr = rr - bounds[0][run_bucket] + self.table[run_bucket, 0]
        else:
            run_bucket = np.zeros(0, np.int64)
        run_bounds = np.searchsorted(run_bucket, np.arange(nbk + 1))
        rec, run = 4 * bounds[0], 4 * run_bounds
        data = (u32[0], u32[1], u32[2], np.asarray(rr, np.uint32), np.asarray(rs, np.uint32),
                np.asarray(rl, np.uint32), rows, hdr)
        for f, (arr, off) in enumerate(zip(data, (rec, rec, rec, run, run, run, bounds[1],
                                                  bounds[2]))):
            self.parts[f].append(arr)
            self.bounds[f].append(np.ascontiguousarray(off))
        self.table[:, 0] += np.diff(bounds[0])
        self.table[:, 1] += np.diff(run_bounds)
        self.table[:, 2:] += np.diff(bounds[1:], axis=1).T
        self.nbytes += int(bounds[3, -1] + bounds[2, -1])
        return span

    def flush(self) -> None:
        if not self.table[:, 0].any():
            return
        path = self.tmp / f"u{self.unit:06d}-{len(self.runs):04d}.run"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:  # gathered writes straight from the batches' parts, the last bucket first
            _native.write_parts(fd, self.parts, self.bounds, self.n_buckets)
        finally:
            os.close(fd)
        cum = np.zeros((self.n_buckets + 1, _COLS), np.int64)
        np.cumsum(self.table, axis=0, out=cum[1:])
        self.runs.append(_RunInfo(str(path), self.unit, cum))
        self._reset()


def _section_bytes(cum: np.ndarray) -> np.ndarray:
    """Bytes of a run file's sections from the ``cum`` columns (reads, N runs, packed bytes,
    header bytes): 12 per read and per N run (three uint32 each) plus the data."""
    return 12 * cum[..., 0] + 12 * cum[..., 1] + cum[..., 2] + cum[..., 3]


def _section_start(total: np.ndarray, above: np.ndarray) -> np.ndarray:
    """Where a bucket's section starts in run files, from the runs' ``cum`` rows for all
    buckets (``total``) and for the buckets up to and including it (``above``): after the
    sections of the buckets above it."""
    return _section_bytes(total) - _section_bytes(above)


def _advance(bufs: list[memoryview], n: int) -> None:
    """Drop the first ``n`` bytes of a list of buffers (after a gathered read or write)."""
    while n and bufs:
        if n >= len(bufs[0]):
            n -= len(bufs[0])
            bufs.pop(0)
        else:
            bufs[0] = bufs[0][n:]
            n = 0


def _pack_unit(item: tuple[int, Unit]) -> _UnitResult:
    unit_no, unit = item
    ctx = _CTX
    labeler = Labeler(ctx["scheme"], ctx["label_map"], skip_unknown=ctx["skip_unknown"],
                      skip_bad=ctx["skip_bad"])
    reader = unit.reader(skip_bad=ctx["skip_bad"], two_bit=True)
    buf = _RunBuffer(unit_no, ctx["tmp"], ctx["n_buckets"])
    # Read k of the unit goes to bucket hash64(seed, TAG_BUCKET, unit, k) % buckets.
    bucket_key = int(hash64(ctx["seed"], TAG_BUCKET, unit_no)[0])
    res = _UnitResult([], None, np.zeros(0, np.int64), 0, {})
    kept = 0
    hist = np.zeros(MAX_LEN_BIN + 1, np.int64)  # the length histogram of readtax.stats
    class_counts = np.zeros(0 if ctx["label_map"] is None else len(ctx["label_map"]), np.int64)
    for batch in reader:
        cls = labeler.classes(batch)
        if (cls < 0).any():
            batch = batch.take(np.flatnonzero(cls >= 0))
            cls = cls[cls >= 0]
        m = len(batch)
        if not m:
            continue
        lengths = batch.lengths
        if batch.non_acgt == 0:  # the reader proved the batch is pure ACGT
            rr = rs = rl = np.zeros(0, np.uint32)
            n_count = 0
        else:
            rr, rs, rl, n_count = _n_runs(batch.seq, batch.seq_offsets)
        rank = labeler.class_rank()
        if rank is not None and len(rank) > len(class_counts):  # classes found: room for them
            class_counts = np.concatenate([class_counts,
                                           np.zeros(2 * len(rank) - len(class_counts), np.int64)])
        lo, hi = buf.add(cls, lengths, batch.two_bit(), batch.headers, batch.header_offsets,
                         (rr, rs, rl), bucket_key, kept, rank, class_counts, hist)
        res.min_len = lo if res.reads == 0 else min(res.min_len, lo)
        res.max_len = max(res.max_len, hi)
        res.reads += m
        res.bases += int(lengths.sum())
        res.non_acgt += n_count
        kept += m
        if buf.nbytes >= ctx["run_bytes"]:
            buf.flush()
    buf.flush()
    res.runs = buf.runs
    res.skipped = labeler.skipped
    res.skipped_keys = dict(labeler.skipped_keys)
    res.skipped_bad = dict(reader.skipped)
    if labeler.skipped_bad:
        res.skipped_bad["header does not fit the label scheme"] = labeler.skipped_bad
    res.length_counts = hist[: res.max_len + 1] if res.reads else np.zeros(0, np.int64)
    if ctx["label_map"] is None:
        res.keys = labeler.discovered()
        class_counts = class_counts[: len(res.keys[0])]
    res.counts = class_counts
    return res


# -- pack, pass 2: one bucket at a time -----------------------------------------------------


@dataclass
class _Bucket:
    """What pass 2 returns for one bucket; its bases, classes, N runs, flags and offsets are
    already written in place (see :func:`_write_at`), except the bytes of the bit-packed files
    it may share with its neighbours (``edges``: file -> [(byte, bits)], OR-ed by the caller)."""

    reads: int
    bases: int
    id_blocks: list[bytes]
    id_counts: list[int]
    class_row: np.ndarray
    edges: dict


def _transpose_table(src: Path, dst: Path, runs: int, rows: int) -> None:
    """Rewrite the runs' bucket tables from run-major ``src`` (runs, rows, _COLS), as pass 1
    appends them, to bucket-major ``dst`` (rows, runs, _COLS), where one bucket's row of every
    run is contiguous. Pass 2 reads one or two such rows per bucket; read run-major they are
    strided over the whole table, which is runs x buckets x 40 bytes (~100 MB at the seed's
    558M reads): a process mapping it ended up holding all of it. Done a block of rows at a
    time, in memory bounded by ``_TABLE_BLOCK`` bytes, with one pread per run per block."""
    row_bytes = _COLS * 8
    step = max(1, _TABLE_BLOCK // max(1, runs * row_bytes))
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for lo in range(0, rows, step):
            hi = min(rows, lo + step)
            block = np.empty((runs, hi - lo, _COLS), np.int64)
            for r in range(runs):
                _read_exact(fin.fileno(), [memoryview(block[r]).cast("B")],
                            (r * rows + lo) * row_bytes, str(src))
            fout.write(np.ascontiguousarray(block.transpose(1, 0, 2)).tobytes())


def _table_rows(lo: int, hi: int) -> np.ndarray:
    """Rows ``lo..hi-1`` of the bucket-major run table: (hi - lo, runs, _COLS)."""
    ctx = _CTX
    runs = len(ctx["runs"])
    out = np.empty((hi - lo, runs, _COLS), np.int64)
    path = ctx["tmp"] / F_TABLE
    fd = os.open(path, os.O_RDONLY)
    try:
        _read_exact(fd, [memoryview(out).cast("B")], lo * runs * _COLS * 8, str(path))
    finally:
        os.close(fd)
    return out


LUT_BLOCK = 256 << 10  # bytes of the units' class lookup tables read at a time in pass 2


def _global_classes(keys: np.ndarray, units: list[int], at: list[int]) -> np.ndarray:
    """A bucket's class keys as global class indices: section i (``keys[at[i]:at[i + 1]]``)
    was found by unit ``units[i]`` (ascending) and goes through that unit's lookup table in
    ``luts.i32``.

    The tables are read a block of units at a time (``LUT_BLOCK`` bytes, or one unit's table
    if larger), so a worker holds O(classes) of them. All of them are units x classes x 4
    bytes (6 MB at 150M reads), and every bucket has reads of every unit: gathering through
    a mapping of the file touched nearly all of its pages each time, and those counted on
    top of the worker's resident heap (its peak grew with the number of units).
    """
    ctx = _CTX
    offs = ctx["lut_offsets"]
    path = ctx["tmp"] / "luts.i32"
    fd = ctx.get("lut_fd")
    if fd is None:
        fd = ctx["lut_fd"] = os.open(path, os.O_RDONLY)
    out = np.empty(len(keys), np.int64)
    u = np.asarray(units, np.int64)
    ends = offs[u + 1]  # ascending, as the units are
    i = 0
    while i < len(units):
        first = int(offs[units[i]])
        # sections i..j-1: their units' tables fit in one block (at least one unit)
        j = max(i + 1, int(np.searchsorted(ends, first + LUT_BLOCK // 4, side="right")))
        block = np.empty(int(ends[j - 1]) - first, np.int32)
        _read_exact(fd, [memoryview(block).cast("B")], 4 * first, str(path))
        lo, hi = at[i], at[j]
        base = np.repeat(offs[u[i:j]] - first, np.diff(at[i : j + 1]))
        out[lo:hi] = block[base + keys[lo:hi]]
        i = j
    return out


def _load_sections(b: int) -> dict:
    """Bucket b's records from every run, in input order, with global class indices.

    The sections are read straight into one array per field (no mapping, no joining copies);
    the bookkeeping is vectorised over runs, since a full-size input has thousands of them.
    """
    ctx = _CTX
    runs = ctx["runs"]
    total = ctx["table_total"]
    if ctx["shuffle"]:
        before, upto = _table_rows(b, b + 2)
        row = upto - before
        which = np.flatnonzero(row[:, 0] > 0)
        row = row[which]
        start = _section_start(total[which], upto[which]).tolist()
    else:  # one bucket per run
        which = np.array([b])
        row = total[b][None, :]
        start = [0]
    # Where each run's part of each field goes in the bucket's arrays.
    at = np.zeros((len(which) + 1, _COLS), np.int64)
    np.cumsum(row, axis=0, out=at[1:])
    m, r, pk, hd = (int(x) for x in at[-1, :4])
    out = {k: np.empty(m, np.uint32) for k in ("cls", "len", "hlen")}
    out.update({k: np.empty(r, np.uint32) for k in ("rr", "rs", "rl")})
    out["packed"] = np.empty(pk, np.uint8)
    out["hdr"] = np.empty(hd, np.uint8)
    fields = [(memoryview(out[k]).cast("B"), col, item) for k, col, item in (
        ("cls", 0, 4), ("len", 0, 4), ("hlen", 0, 4), ("rr", 1, 4), ("rs", 1, 4), ("rl", 1, 4),
        ("packed", 2, 1), ("hdr", 3, 1))]
    bounds = at.tolist()
    for i, r_i in enumerate(which.tolist()):
        lo, hi = bounds[i], bounds[i + 1]
        views = [buf[item * lo[col] : item * hi[col]] for buf, col, item in fields
                 if hi[col] > lo[col]]
        _read_exact(_run_fd(r_i), views, start[i], runs[r_i][0])
    # Run read numbers count from their run's section; class keys become global indices.
    first_read = np.repeat(at[:-1, 0], row[:, 1])
    rr = out["rr"].astype(np.int64) + first_read
    if ctx["mapped"] or not ctx["lut_offsets"][-1]:
        cls = out["cls"].astype(np.int64)  # class indices of the mapping already
    else:
        cls = _global_classes(out["cls"], [runs[r_i][1] for r_i in which.tolist()],
                              at[:, 0].tolist())
    lengths = out["len"].astype(np.int64)
    return {"cls": cls, "len": lengths, "rr": rr, "rs": out["rs"], "rl": out["rl"],
            "packed": Records(lengths, out["packed"], packed=True),
            "hdr": Records(out["hlen"], out["hdr"])}


def _run_fd(r: int) -> int:
    """A read descriptor of run ``r``, kept open for the next buckets (every bucket reads a
    section of every run: a full-size input opens each of its thousands of runs once per
    worker instead of once per bucket). Runs beyond what the descriptor limit leaves room
    for are opened per read."""
    ctx = _CTX
    fds = ctx.setdefault("fds", {})
    fd = fds.get(r)
    if fd is not None:
        return fd
    fd = os.open(ctx["runs"][r][0], os.O_RDONLY)
    if len(fds) < ctx["fd_room"]:
        fds[r] = fd
    else:
        ctx.setdefault("spare_fds", []).append(fd)
        while len(ctx["spare_fds"]) > 1:  # the one returned is in use until the next call
            os.close(ctx["spare_fds"].pop(0))
    return fd


def _close_run_fds() -> None:
    """Close the run files and store files this process kept open."""
    lut_fd = _CTX.pop("lut_fd", None)
    for fd in (list(_CTX.pop("fds", {}).values()) + _CTX.pop("spare_fds", [])
               + ([] if lut_fd is None else [lut_fd])
               + list(_CTX.pop("out_fds", {}).values())):
        os.close(fd)


def _fd_room(runs: int) -> int:
    """How many run files pass 2 may keep open: raises the soft descriptor limit towards the
    hard one if the runs need it, and leaves half of it to everything else."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 2 * runs + 256
        if soft != resource.RLIM_INFINITY and soft < want:
            new = want if hard == resource.RLIM_INFINITY else min(want, hard)
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
                soft = new
    except ImportError:  # not POSIX
        return 0
    return max(0, min(runs, soft // 2 - 64))


def _read_exact(fd: int, views: list[memoryview], offset: int, path: str) -> None:
    """Fill the buffers in order from ``offset`` (scattered reads)."""
    views = [v for v in views if len(v)]
    while views:
        got = os.preadv(fd, views[:1024], offset)
        if got <= 0:
            raise StoreError(f"temporary run file {path} is shorter than recorded", path)
        offset += got
        _advance(views, got)


def _build_bucket(task: tuple[int, int, int, int, int]) -> _Bucket:
    """Pass 2 for pack bucket ``b``, which becomes bucket ``j`` of the store.

    Its reads are the store's reads ``read_start...``, its bases start at base ``base_start``
    and its N runs at run ``run_start``: every file offset follows, so the bucket's bytes are
    written in place, by whichever worker builds it.
    """
    b, j, read_start, base_start, run_start = task
    ctx = _CTX
    d = _load_sections(b)
    cls = d["cls"]
    m = len(cls)
    lengths = d["len"].astype(np.int64)
    n_classes = ctx["n_classes"]
    # by_class: the records in class order; src[s]: the record at physical slot s (shuffled:
    # the class-order rank permute^-1(s); else the input order).
    by_class, src, lp = np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m, np.int64)
    phys_cls = np.empty(m, ctx["class_dtype"])  # the classes in physical order
    if ctx["shuffle"]:
        keys, a, b_ = feistel_params(m, int(hash64(ctx["seed"], TAG_LAYOUT, j)[0]))
    else:
        keys, a, b_ = np.zeros(0, np.uint64), 1, max(m, 1)
    _native.bucket_layout(cls, n_classes, keys, a, b_, lengths, by_class, src, lp, phys_cls)
    if ctx["shuffle"]:
        id_src, order = by_class, None
    else:
        id_src, order = src, by_class.astype(np.uint32)
    local_off = np.zeros(m + 1, np.int64)
    np.cumsum(lp, out=local_off[1:])
    packed = repack(d["packed"], src, base_start & 3, lengths=lp,
                    fixed=ctx["max_length"] if ctx["fixed_length"] else None)
    # N runs: records are sorted by read; regroup them in physical order.
    rr = d["rr"]
    lead = read_start & 7
    bits = np.zeros(lead + m, np.uint8)
    if len(rr):
        run_count = np.bincount(rr, minlength=m)
        run_first = np.zeros(m, np.int64)
        np.cumsum(run_count[:-1], out=run_first[1:])
        count_src = run_count[src]
        runs, _ = ragged_index(run_first[src], count_src)
        slot_of_run = np.repeat(np.arange(m), count_src)
        nstart = (base_start + local_off[slot_of_run]
                  + d["rs"][runs].astype(np.int64)).astype(np.uint64)
        nlen = d["rl"][runs].astype(np.uint32)
        bits[lead:] = count_src > 0
    else:  # no read of the bucket has an N
        nstart, nlen = np.zeros(0, np.uint64), np.zeros(0, np.uint32)
    flags = np.packbits(bits, bitorder="little")
    tmp, names = ctx["out_dir"], ctx["names"]
    _write_at(tmp / names["classes"], read_start * ctx["class_dtype"].itemsize, phys_cls)
    _write_at(tmp / F_NSTART, run_start * 8, nstart)
    _write_at(tmp / F_NLEN, run_start * 4, nlen)
    if not ctx["fixed_length"]:
        _write_at(tmp / F_OFFSETS, read_start * 8, (base_start + local_off[:-1]).astype(np.uint64))
    if order is not None:
        _write_at(tmp / F_ORDER, read_start * 4, order)
    edges = {F_BASES: _write_inner(tmp / F_BASES, base_start >> 2, packed),
             F_NFLAGS: _write_inner(tmp / F_NFLAGS, read_start >> 3, flags)}
    blocks, counts = _id_blocks(d["hdr"], id_src)
    class_row = np.bincount(cls, minlength=n_classes).astype(np.uint32)
    # The bucket's arrays are freed but not trimmed: the next bucket reuses the pages, where
    # giving them back cost a page fault per 4 KB. Buckets differ a little in size, though,
    # and the heap's free gaps keep their pages, so a worker's RSS would creep with the number
    # of buckets (measured in benchmarks/RESULTS.md, scale rehearsal). Trimming every
    # TRIM_BUCKETS buckets bounds that creep for a fault per page once in that many buckets.
    done = ctx["buckets_built"] = ctx.get("buckets_built", 0) + 1
    if done % TRIM_BUCKETS == 0:
        _malloc_trim()
    return _Bucket(m, int(lp.sum()), blocks, counts, class_row, edges)


TRIM_BUCKETS = 16


def _malloc_trim() -> None:
    """Give the heap's free pages back to the system (glibc; elsewhere nothing to do)."""
    fn = _CTX.get("malloc_trim", False)
    if fn is False:
        fn = None
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            fn = ctypes.CDLL(None).malloc_trim
        _CTX["malloc_trim"] = fn
    if fn is not None:
        fn(0)


def _write_at(path: Path, offset: int, data: np.ndarray) -> None:
    """Write ``data`` at byte ``offset`` of the (existing) file ``path`` (the descriptor
    stays open for the next bucket; see :func:`_close_run_fds`)."""
    view = memoryview(np.ascontiguousarray(data)).cast("B")
    if not len(view):
        return
    fds = _CTX.setdefault("out_fds", {})
    fd = fds.get(path)
    if fd is None:
        fd = fds[path] = os.open(path, os.O_WRONLY)
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


def _write_inner(path: Path, first: int, data: np.ndarray) -> list[tuple[int, int]]:
    """Write the bytes of a bit-packed piece starting at byte ``first``, except its first and
    last byte, which it may share with the pieces before and after it: those are returned."""
    if not len(data):
        return []
    if len(data) > 2:
        _write_at(path, first + 1, data[1:-1])
    return [(first, int(data[0])), (first + len(data) - 1, int(data[-1]))]


def _id_blocks(hdr: Records, order: np.ndarray) -> tuple[list[bytes], list[int]]:
    """Compressed blocks of the headers in ``order`` (at most ID_BLOCK per block)."""
    blocks, counts = [], []
    # One front-coding buffer for every block: a block's ids take at most all of them.
    out = np.empty(2 * min(ID_BLOCK, len(order)) + len(hdr.flat), np.uint8)
    for lo in range(0, len(order), ID_BLOCK):
        sel = order[lo : lo + ID_BLOCK]
        blocks.append(encode_ids(hdr, sel, out=out))
        counts.append(len(sel))
    return blocks, counts


class _SpentRuns:
    """Cuts the sections pass 2 has read off the run files as buckets complete.

    Results arrive in bucket order, so when bucket b is done every bucket up to b has been
    read, and those sections are the tail of each run file. Their pages go back to the system
    while the store is written, which then reuses them instead of touching fresh memory (on
    this project's VM the store's writes went from 0.29 s to 0.10 s for 6M reads, for 0.08 s
    of truncating). A run is cut once at least
    ``CUT_BYTES`` of it are spent: a full-size input has thousands of runs and a thousand
    buckets, and a truncate per run per bucket would cost minutes.
    """

    CUT_BYTES = 1 << 20

    def __init__(self, runs: list[tuple[str, int]], total: np.ndarray, shuffle: bool) -> None:
        self.runs = runs
        self.shuffle = shuffle
        self.total = total
        self.size = _section_bytes(self.total)

    def done(self, b: int) -> None:
        if not self.shuffle:  # one bucket per run: the run is spent
            os.unlink(self.runs[b][0])
            return
        cut = _section_start(self.total, _table_rows(b + 1, b + 2)[0])
        for r in np.flatnonzero((cut == 0) & (self.size > 0)
                                | (self.size - cut >= self.CUT_BYTES)).tolist():
            path = self.runs[r][0]
            if cut[r] == 0:
                os.unlink(path)
            else:
                os.truncate(path, int(cut[r]))
            self.size[r] = cut[r]


# -- pack, writing the final files ----------------------------------------------------------


class _Out:
    """An output file written in order, recording its size as it goes."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.size = 0

    def write(self, data) -> None:
        buf = memoryview(np.ascontiguousarray(data)).cast("B") if isinstance(data, np.ndarray) \
            else memoryview(data)
        self.fh.write(buf)
        self.size += len(buf)

    def close(self) -> None:
        self.fh.close()


class _Writer:
    """The final files: pass-2 workers write bucket data in place (sizes are known up front);
    this writes the shared edge bytes, the ids and the small tables, then sums up the files."""

    def __init__(self, tmp: Path, class_file: str, fixed: bool, shuffle: bool, n: int,
                 total_bases: int, n_runs: int, class_itemsize: int) -> None:
        self.tmp = tmp
        sizes = {F_BASES: -(-total_bases // 4), class_file: n * class_itemsize,
                 F_NFLAGS: -(-n // 8), F_NSTART: 8 * n_runs, F_NLEN: 4 * n_runs}
        if not fixed:
            sizes[F_OFFSETS] = 8 * (n + 1)
        if not shuffle:
            sizes[F_ORDER] = 4 * n
        for name, size in sizes.items():
            with open(tmp / name, "wb") as fh:
                fh.truncate(size)
        self.names = list(sizes)
        self.total_bases = total_bases
        self.n = n
        self.fixed = fixed
        self.edges: dict[str, dict[int, int]] = {F_BASES: {}, F_NFLAGS: {}}
        self.ids = _Out(tmp / F_IDS)
        self.class_rows = _Out(tmp / F_BCLASS)
        self.id_index: list[tuple[int, int]] = []
        self.id_pos = 0
        self.bucket_starts = [0]

    def add(self, bk: _Bucket) -> None:
        for name, pairs in bk.edges.items():
            acc = self.edges[name]
            for at, bits in pairs:
                acc[at] = acc.get(at, 0) | bits
        for blob, count in zip(bk.id_blocks, bk.id_counts):
            self.id_index.append((self.id_pos, self.ids.size))
            self.ids.write(blob)
            self.id_pos += count
        self.bucket_starts.append(self.bucket_starts[-1] + bk.reads)
        self.class_rows.write(bk.class_row)

    def close(self) -> dict[str, dict]:
        for name, acc in self.edges.items():
            for at, bits in acc.items():
                _write_at(self.tmp / name, at, np.array([bits], np.uint8))
        if not self.fixed:
            _write_at(self.tmp / F_OFFSETS, 8 * self.n, np.array([self.total_bases], np.uint64))
        self.id_index.append((self.id_pos, self.ids.size))
        self.ids.close()
        self.class_rows.close()
        for name, arr in ((F_IDINDEX, np.array(self.id_index, np.uint64)),
                          (F_BUCKETS, np.array(self.bucket_starts, np.uint64))):
            out = _Out(self.tmp / name)
            out.write(arr)
            out.close()
        names = self.names + [F_IDS, F_BCLASS, F_IDINDEX, F_BUCKETS]
        return {name: {"size": os.path.getsize(self.tmp / name),
                       CHECKSUM: file_checksum(self.tmp / name)} for name in sorted(names)}


# -- pack, orchestration --------------------------------------------------------------------


class _Pass1:
    """Pass-1 results folded in as units finish, in memory O(classes + buckets).

    What grows with the input goes to the run directory instead: each run's bucket table is
    appended to ``cum.i64`` (which :meth:`finish` rewrites bucket-major) and each unit's
    discovered class keys to a file of its own, from which :meth:`finish` writes the units'
    class lookup tables (``luts.i32``) for pass 2.
    """

    def __init__(self, runs_dir: Path, scheme: LabelScheme, mapping: LabelMap | None,
                 n_buckets: int) -> None:
        self.dir = runs_dir
        self.scheme = scheme
        self.mapping = mapping
        self.n_buckets = n_buckets
        self.runs: list[tuple[str, int]] = []  # (path, unit) per run
        self.cum_file = open(runs_dir / "cum.i64", "wb")  # noqa: SIM115 - closed in finish()
        self.sizes = np.zeros((n_buckets, _COLS), np.int64)  # per bucket (or per run, see below)
        # Without a mapping: the classes found so far (sorted), their tax ids (as first seen)
        # and reads; kept as arrays, since every unit of a full-size input finds thousands.
        self.keys = np.zeros(0, np.int64 if scheme.numeric else object)
        self.key_tax = np.zeros(0, np.int64)
        self.key_counts = np.zeros(0, np.int64)
        self.class_counts = np.zeros(0 if mapping is None else len(mapping), np.int64)
        self.units = 0
        self.reads = self.bases = self.non_acgt = self.skipped = 0
        self.min_len, self.max_len = None, 0
        self.hist = np.zeros(0, np.int64)
        self.skipped_keys: dict = {}
        self.skipped_bad: dict = {}

    def add(self, unit: int, res: _UnitResult) -> None:
        for run in res.runs:
            self.runs.append((run.path, run.unit))
            self.cum_file.write(np.ascontiguousarray(run.cum, np.int64).tobytes())
            self.sizes += np.diff(run.cum, axis=0)
        if res.keys is not None:
            keys, tax = res.keys
            self._merge_keys(keys, tax, res.counts)
            if self.scheme.numeric:
                np.save(self.dir / f"u{unit:06d}.keys.npy", keys)
            else:
                (self.dir / f"u{unit:06d}.keys.json").write_text(json.dumps(keys.tolist()),
                                                                  "utf-8")
        elif len(res.counts):
            self.class_counts[: len(res.counts)] += res.counts
        self.units = max(self.units, unit + 1)
        if res.reads:
            self.min_len = res.min_len if self.min_len is None else min(self.min_len, res.min_len)
            self.max_len = max(self.max_len, res.max_len)
        self.reads += res.reads
        self.bases += res.bases
        self.non_acgt += res.non_acgt
        self.skipped += res.skipped
        self.hist = _merge_hist(self.hist, res.length_counts)
        for k, v in res.skipped_keys.items():
            self.skipped_keys[str(k)] = self.skipped_keys.get(str(k), 0) + v
        for k, v in res.skipped_bad.items():
            self.skipped_bad[k] = self.skipped_bad.get(k, 0) + v

    def _merge_keys(self, found: np.ndarray, found_tax: np.ndarray, counts: np.ndarray) -> None:
        """Fold a unit's classes in: the tax id first seen for a class stays (earlier units
        come first in the concatenation), reads add up."""
        keys = np.concatenate([self.keys, found])
        tax = np.concatenate([self.key_tax, found_tax])
        c = np.concatenate([self.key_counts, np.asarray(counts, np.int64)[: len(found)]])
        self.keys, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        self.key_tax = tax[first]
        self.key_counts = np.zeros(len(self.keys), np.int64)
        np.add.at(self.key_counts, inverse, c)

    def label_map(self) -> LabelMap:
        """The mapping, or the classes discovered by all units, sorted by class id (or by name
        for named labels)."""
        if self.mapping is not None:
            return self.mapping
        if self.scheme.numeric:
            return LabelMap(self.keys, [str(i) for i in self.keys.tolist()], self.key_tax)
        return LabelMap(np.arange(len(self.keys), dtype=np.int64), list(self.keys),
                        np.full(len(self.keys), -1, np.int64))

    def finish(self, label_map: LabelMap) -> tuple[np.ndarray, np.ndarray]:
        """Class counts in ``label_map`` order; writes ``luts.i32`` and returns its offsets."""
        self.cum_file.close()
        src = self.dir / "cum.i64"
        _transpose_table(src, self.dir / F_TABLE, len(self.runs), self.n_buckets + 1)
        src.unlink()
        offsets = np.zeros(self.units + 1, np.int64)
        if self.mapping is not None:
            return self.class_counts, offsets
        counts = np.zeros(len(label_map), np.int64)
        counts[label_map.index(self.keys)] = self.key_counts
        with open(self.dir / "luts.i32", "wb") as out:
            for u in range(self.units):
                lut = np.zeros(0, np.int32)
                path = self.dir / f"u{u:06d}.keys.npy"
                if path.exists():
                    lut = label_map.index(np.load(path)).astype(np.int32)
                    path.unlink()
                path = self.dir / f"u{u:06d}.keys.json"
                if path.exists():
                    names = np.array(json.loads(path.read_text("utf-8")), dtype=object)
                    lut = label_map.index(names).astype(np.int32)
                    path.unlink()
                out.write(lut.tobytes())
                offsets[u + 1] = offsets[u] + len(lut)
        return counts, offsets


def pack(inputs: list[str | os.PathLike[str]], out: str | os.PathLike[str], *,
         mapping: LabelMap | None = None, labels: str | LabelScheme = "lbl",
         skip_unknown: bool = False, skip_bad: bool = False, seed: int = 0,
         workers: int | None = None, shuffle: bool = True, force: bool = False,
         progress: bool | None = None,
         unit_bytes: int = UNIT_BYTES, bucket_bytes: int = BUCKET_BYTES,
         run_bytes: int = RUN_BYTES) -> dict:
    """Pack FASTA/FASTQ ``inputs`` into the store directory ``out``; returns the manifest.

    Memory is bounded by the buffer sizes (``run_bytes`` per worker in pass 1, one bucket of
    about ``bucket_bytes`` of input per worker in pass 2), not by the input size. The result is
    byte-identical for the same inputs, options and ``seed`` whatever ``workers`` is.
    """
    from .outputs import (
        check_output_path,
        clean_stale,
        no_space_as_error,
        output_lock,
        replace_dir,
        temp_name,
    )

    paths = check_inputs(inputs)
    out = check_output_path(out, force=force, inputs=paths)
    scheme = make_scheme(labels) if isinstance(labels, str) or labels is None else labels
    workers = default_workers() if workers is None else max(1, int(workers))
    if not 0 <= seed < 2**63:
        raise UsageError(f"seed must be in [0, 2**63), got {seed}")
    with output_lock(out), no_space_as_error(out):
        clean_stale(out)
        tmp = temp_name(out, "tmp")
        try:  # made inside the try: a Ctrl-C right after mkdir still removes it
            tmp.mkdir()
            manifest = _pack_into(tmp, paths, out, scheme, mapping, skip_unknown, skip_bad,
                                  seed, workers, shuffle, progress, unit_bytes, bucket_bytes,
                                  run_bytes)
            replace_dir(tmp, out)
        except BaseException:
            _close_run_fds()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            _close_run_fds()
            _CTX.clear()
    return manifest


def _pack_into(tmp: Path, paths: list[str], out: Path, scheme: LabelScheme,
               mapping: LabelMap | None, skip_unknown: bool, skip_bad: bool, seed: int,
               workers: int,
               shuffle: bool, progress: bool | None, unit_bytes: int, bucket_bytes: int,
               run_bytes: int) -> dict:
    units = fixed_units(paths, unit_bytes)
    est = sum(u.size * (GZIP_RATIO if is_gzip(u.path) else 1) for u in units)
    n_buckets = min(MAX_BUCKETS, max(1, math.ceil(est / bucket_bytes))) if shuffle else 1
    runs_dir = tmp / "runs"
    runs_dir.mkdir()
    _CTX.clear()
    _CTX.update(scheme=scheme, label_map=mapping, skip_unknown=skip_unknown, skip_bad=skip_bad,
                seed=seed,
                n_buckets=n_buckets, tmp=runs_dir, run_bytes=run_bytes)
    t0 = time.monotonic()
    acc = _Pass1(runs_dir, scheme, mapping, n_buckets)
    for u, res in enumerate(map_units_progress(
            _pack_unit, list(enumerate(units)), [unit.size for unit in units], workers,
            desc=f"pack {out.name}: reading", enabled=progress)):
        acc.add(u, res)
    log.debug("pack pass 1 (read, encode, runs): %.2f s", time.monotonic() - t0)

    label_map = acc.label_map()
    n_classes = len(label_map)
    class_counts, lut_offsets = acc.finish(label_map)
    n, skipped = acc.reads, acc.skipped
    if n == 0:
        raise InputError(f"no reads to pack ({skipped} skipped as unknown classes)", paths[0])
    min_len, max_len = acc.min_len, acc.max_len
    fixed = min_len == max_len
    class_dtype = "uint16" if n_classes < 65536 else "uint32"
    # Every run's totals (the last row of its table): O(runs), shared with forked workers.
    total = np.fromfile(runs_dir / F_TABLE, np.int64, count=len(acc.runs) * _COLS,
                        offset=n_buckets * len(acc.runs) * _COLS * 8).reshape(-1, _COLS)
    sizes = acc.sizes if shuffle else total  # without shuffling, one bucket per run
    read_starts = np.concatenate([[0], np.cumsum(sizes[:, 0])])
    base_starts = np.concatenate([[0], np.cumsum(sizes[:, 4])])
    run_starts = np.concatenate([[0], np.cumsum(sizes[:, 1])])
    # Empty buckets are dropped: the store numbers the others 0, 1, ... and keys layouts by it.
    nonempty = np.flatnonzero(sizes[:, 0] > 0)
    tasks = [(int(b), j, int(read_starts[b]), int(base_starts[b]), int(run_starts[b]))
             for j, b in enumerate(nonempty)]
    class_file = "classes.u32" if class_dtype == "uint32" else "classes.u16"
    _CTX.update(runs=acc.runs, table_total=total, fd_room=_fd_room(len(acc.runs)), lut_offsets=lut_offsets,
                mapped=mapping is not None,
                shuffle=shuffle, n_classes=n_classes,
                class_dtype=np.dtype(class_dtype), fixed_length=fixed, max_length=int(max_len),
                out_dir=tmp,
                names={"classes": class_file})

    writer = _Writer(tmp, class_file, fixed, shuffle, n, int(base_starts[-1]),
                     int(run_starts[-1]), np.dtype(class_dtype).itemsize)
    t0 = time.monotonic()
    spent = _SpentRuns(acc.runs, total, shuffle)
    # Pass-2 workers fork from here and start with this process's resident heap: what pass 1
    # freed (one result per unit: hundreds at full size) goes back first.
    _malloc_trim()
    for (b, *_), bk in zip(tasks, map_units_progress(
            _build_bucket, tasks, [int(sizes[b, 0]) for b in nonempty], workers,
            desc=f"pack {out.name}: writing", unit="reads", enabled=progress)):
        writer.add(bk)
        spent.done(b)
    log.debug("pack pass 2 buckets: %.2f s", time.monotonic() - t0)
    files = writer.close()
    _close_run_fds()  # those of this process (one worker); pool workers' close as they exit
    log.debug("pack pass 2 final files: %.2f s", time.monotonic() - t0)
    shutil.rmtree(runs_dir)
    log.debug("pack pass 2 (buckets, final files): %.2f s", time.monotonic() - t0)

    hist, skipped_keys, skipped_bad = acc.hist, acc.skipped_keys, acc.skipped_bad
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_by": f"readtax {__version__}",
        "read_count": n,
        "total_bases": int(writer.total_bases),
        "min_length": int(min_len),
        "max_length": int(max_len),
        "fixed_length": int(max_len) if fixed else None,
        "base_codes": "ACTG",
        "class_dtype": class_dtype,
        "label_scheme": getattr(scheme, "name", "lbl"),
        "label_map": label_map.to_rows(),
        "class_counts": class_counts.tolist(),
        "skipped_unknown": skipped,
        "skipped_unknown_classes": dict(sorted(skipped_keys.items())[:100]),
        "skipped_bad": dict(sorted(skipped_bad.items())),
        "seed": int(seed),
        "shuffled": bool(shuffle),
        "buckets": int(len(writer.bucket_starts) - 1),
        "id_block_reads": ID_BLOCK,
        "id_codec": "frontcoded-zlib",
        "stats": {
            "non_acgt": int(acc.non_acgt),
            "length_histogram": {str(i): int(c) for i, c in enumerate(hist) if c},
        },
        "inputs": [{"path": Path(p).name, "size": os.path.getsize(p)} for p in paths],
        "files": files,
    }
    (tmp / "manifest.json").write_text(_manifest_text(manifest), encoding="utf-8")
    size = sum(f["size"] for f in files.values())
    log.info("packed %d reads of %d classes into %s: %.1f bytes per read", n, n_classes, out,
             size / n)
    report_skipped(skipped, skipped_bad)
    return manifest


def _manifest_text(manifest: dict) -> str:
    """The manifest as JSON, one top-level key per line. Each value is encoded compactly by
    the C encoder: json's indenting encoder is pure Python, and the label map and class
    counts of a full-size store have thousands of entries each."""
    lines = [f"{json.dumps(k)}: {json.dumps(manifest[k], sort_keys=True)}"
             for k in sorted(manifest)]
    return "{\n " + ",\n ".join(lines) + "\n}\n"


def _merge_hist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(b) > len(a):
        a, b = b.copy(), a
    a[: len(b)] += b
    return a


# -- verify ---------------------------------------------------------------------------------

CHUNK = 1 << 20


def _expected_files(manifest: dict) -> set[str]:
    names = {F_BASES, _class_file(manifest), F_NFLAGS, F_NSTART, F_NLEN, F_IDS, F_IDINDEX,
             F_BUCKETS, F_BCLASS}
    if not manifest.get("fixed_length"):
        names.add(F_OFFSETS)
    if not manifest["shuffled"]:
        names.add(F_ORDER)
    return names


def file_checksum(path: Path, algorithm: str = CHECKSUM) -> str:
    """The file's checksum as the manifest records it (CRC-32; BLAKE2b in older stores)."""
    if algorithm == "blake2b":
        h = hashlib.blake2b(digest_size=32)
        with open(path, "rb") as fh:
            while block := fh.read(16 << 20):
                h.update(block)
        return h.hexdigest()
    crc = 0
    window = 16 << 20  # mapped a window at a time: mapped pages count as resident memory
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        for at in range(0, size, window):  # straight from the page cache, no read copy
            with mmap.mmap(fh.fileno(), min(window, size - at), offset=at,
                           access=mmap.ACCESS_READ) as mm:
                crc = crc32(mm, crc)
    return f"{crc:08x}"


def verify(path: str | os.PathLike[str], *, progress: bool | None = None) -> dict:
    """Check sizes, checksums and internal consistency; StoreError on the first problem."""
    path = Path(path)
    manifest = load_manifest(path)
    missing = sorted(_expected_files(manifest) - set(manifest["files"]))
    if missing:
        raise StoreError(f"manifest.json does not list {', '.join(missing)}", path)
    _check_sizes(path, manifest)
    total = sum(info["size"] for info in manifest["files"].values())
    bar = Progress(total, f"verify {path.name}: checksums", enabled=progress)
    done = 0
    for name, info in sorted(manifest["files"].items()):
        algorithm = CHECKSUM if CHECKSUM in info else "blake2b"
        if file_checksum(path / name, algorithm) != info.get(algorithm):
            raise StoreError(f"checksum mismatch in {name}: the file is corrupt", path)
        done += info["size"]
        bar.update(done)
    bar.close()
    store = ReadStore(path)
    _Consistency(store).run()
    return {"reads": store.n, "classes": len(store.label_map), "bases": store.total_bases,
            "bytes": total, "bytes_per_read": total / max(store.n, 1)}


class _Consistency:
    """Internal consistency of a store whose files have the recorded sizes and checksums."""

    def __init__(self, store: ReadStore) -> None:
        self.s = store

    def fail(self, what: str) -> None:
        raise StoreError(f"inconsistent store: {what}", self.s.path)

    def run(self) -> None:
        self.shapes()
        self.offsets()
        self.buckets()
        self.n_runs()
        self.ids()

    def shapes(self) -> None:
        s = self.s
        n, nc = s.n, len(s.label_map)
        if len(s.class_counts) != nc or int(s.class_counts.sum()) != n:
            self.fail("class_counts do not add up to read_count")
        if len(s.classes) != n:
            self.fail(f"{s.class_file} holds {len(s.classes)} reads, expected {n}")
        if len(s.bases) != -(-s.total_bases // 4):
            self.fail(f"{F_BASES} does not hold {s.total_bases} bases")
        if len(s.nflags) != -(-n // 8):
            self.fail(f"{F_NFLAGS} does not hold {n} flags")
        if len(s.nstart) != len(s.nlen):
            self.fail("N run starts and lengths differ in number")
        if s.n_buckets < 1 or int(s.bucket_starts[0]) != 0 or int(s.bucket_starts[-1]) != n \
                or (np.diff(s.bucket_starts) <= 0).any():
            self.fail(f"{F_BUCKETS} does not split the reads into non-empty buckets")
        if s.bucket_classes.shape != (s.n_buckets, nc):
            self.fail(f"{F_BCLASS} has the wrong shape")
        bc = np.asarray(s.bucket_classes, np.int64)
        if not np.array_equal(bc.sum(axis=0), s.class_counts) or \
                not np.array_equal(bc.sum(axis=1), np.diff(s.bucket_starts)):
            self.fail(f"{F_BCLASS} disagrees with class and bucket sizes")
        if s.order is not None and len(s.order) != n:
            self.fail(f"{F_ORDER} holds {len(s.order)} entries, expected {n}")
        rest = n % 8
        if rest and len(s.nflags) and int(s.nflags[-1]) >> rest:
            self.fail(f"{F_NFLAGS} has flags beyond the last read")

    def offsets(self) -> None:
        s = self.s
        if s.fixed_length:
            if s.total_bases != s.n * int(s.fixed_length):
                self.fail("total_bases is not read_count * fixed_length")
            return
        off = s.offsets_
        if len(off) != s.n + 1 or int(off[0]) != 0 or int(off[-1]) != s.total_bases:
            self.fail(f"{F_OFFSETS} does not span the bases")
        for a in range(0, s.n, CHUNK):
            d = np.diff(off[a : a + CHUNK + 1].astype(np.int64))
            if (d < 1).any() or (d > s.max_length).any():
                i = a + int(np.flatnonzero((d < 1) | (d > s.max_length))[0])
                self.fail(f"read {i} has length {int(d[i - a])} (expected 1..{s.max_length})")

    def buckets(self) -> None:
        s = self.s
        nc = len(s.label_map)
        for b in range(s.n_buckets):
            lo, hi = int(s.bucket_starts[b]), int(s.bucket_starts[b + 1])
            cls = np.asarray(s.classes[lo:hi], np.int64)
            if len(cls) and int(cls.max()) >= nc:
                self.fail(f"a class index in bucket {b} is >= the {nc} classes")
            if not np.array_equal(np.bincount(cls, minlength=nc), s.bucket_classes[b]):
                self.fail(f"{F_BCLASS} row {b} does not count the classes of bucket {b}")
            if s.shuffled:
                in_id_order = cls[s.physical(np.arange(lo, hi)) - lo]
            else:
                order = np.asarray(s.order[lo:hi], np.int64)
                if not np.array_equal(np.bincount(order, minlength=hi - lo), np.ones(hi - lo)):
                    self.fail(f"{F_ORDER} is not a permutation within bucket {b}")
                in_id_order = cls[order]
            if (np.diff(in_id_order) < 0).any():
                self.fail(f"the class order of bucket {b} is not sorted by class")

    def n_runs(self) -> None:
        s = self.s
        if len(s.nstart) == 0:
            if int(np.count_nonzero(s.nflags)):
                self.fail("reads are flagged as having N but there are no N runs")
            return
        n_total = 0
        prev_end = -1
        for a in range(0, len(s.nstart), CHUNK):
            st = s.nstart[a : a + CHUNK].astype(np.int64)
            ln = s.nlen[a : a + CHUNK].astype(np.int64)
            end = st + ln
            if (ln < 1).any() or st[0] < prev_end or (st[1:] < end[:-1]).any() \
                    or int(end[-1]) > s.total_bases:
                self.fail("N runs are not sorted, disjoint and inside the bases")
            prev_end = int(end[-1])
            n_total += int(ln.sum())
            first, last = self._read_of(st), self._read_of(end - 1)
            if (first != last).any():
                self.fail("an N run crosses the end of a read")
        if n_total != int(s.manifest.get("stats", {}).get("non_acgt", n_total)):
            self.fail("the N runs do not add up to the recorded N count")
        for a in range(0, s.n, CHUNK * 8):
            b = min(a + CHUNK * 8, s.n)
            lo_base = int(s.base_offsets([a])[0])
            hi_base = s.total_bases if b == s.n else int(s.base_offsets([b])[0])
            r0, r1 = np.searchsorted(s.nstart, np.array([lo_base, hi_base], np.uint64))
            has = np.zeros(b - a, bool)
            has[self._read_of(s.nstart[r0:r1].astype(np.int64)) - a] = True
            flags = np.unpackbits(np.asarray(s.nflags[a // 8 : -(-b // 8)]),
                                  bitorder="little")[: b - a].astype(bool)
            if not np.array_equal(has, flags):
                i = a + int(np.flatnonzero(has != flags)[0])
                self.fail(f"the N flag of read {i} disagrees with the N runs")

    def _read_of(self, base: np.ndarray) -> np.ndarray:
        s = self.s
        if s.fixed_length:
            return base // int(s.fixed_length)
        return np.searchsorted(s.offsets_, base.astype(np.uint64), side="right") - 1

    def ids(self) -> None:
        s = self.s
        idx = np.asarray(s.id_index, np.int64)
        size = s.manifest["files"][F_IDS]["size"]
        if len(idx) < 1 or idx[0, 0] != 0 or idx[-1, 0] != s.n or idx[0, 1] != 0 \
                or idx[-1, 1] != size or (np.diff(idx, axis=0) < 0).any():
            self.fail(f"{F_IDINDEX} does not cover the reads and {F_IDS}")
        bucket = s.bucket_of(idx[:-1, 0])
        if (idx[1:, 0] > s.bucket_starts[bucket + 1]).any():
            self.fail("an id block crosses a bucket boundary")
        with open(s.path / F_IDS, "rb") as fh:
            for k in range(len(idx) - 1):
                try:
                    decode_ids(fh.read(int(idx[k + 1, 1] - idx[k, 1])),
                               int(idx[k + 1, 0] - idx[k, 0]))
                except (zlib.error, ValueError) as exc:
                    self.fail(f"id block {k} does not decode ({exc})")


# -- unpack ---------------------------------------------------------------------------------

UNPACK_BASES = 32 << 20


def unpack(path: str | os.PathLike[str], out: str | os.PathLike[str], *, force: bool = False,
           progress: bool | None = None) -> int:
    """Write the store as FASTA (one line per sequence, headers as packed); returns reads.

    Reads come in id order: the input order for ``--no-shuffle`` stores, otherwise grouped by
    class within each bucket. Streams one id block at a time; the output is written atomically.
    """
    from .outputs import atomic_open, check_output_path

    store = ReadStore(path)
    target = check_output_path(out, force=force)
    if target.is_dir():
        raise UsageError(f"output {target} is a directory")
    bar = Progress(store.n, f"unpack {store.path.name}", unit="reads", enabled=progress)
    idx = np.asarray(store.id_index, np.int64)
    step = max(1, UNPACK_BASES // max(store.max_length, 1))
    with atomic_open(target, "wb") as fh:
        for k in range(len(idx) - 1):
            raw, bounds = store._id_block(k)
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
