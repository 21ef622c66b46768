"""Batch-oriented FASTA/FASTQ reading over large byte buffers.

A reader yields :class:`ReadBatch` objects: all bases of a batch in one ``uint8`` buffer with
offsets, all headers in another. No Python object is created per read on the hot path: one
compiled pass (``_native.fasta_index`` / ``fastq_index``) indexes a 4 MiB chunk, copies its
headers and classifies every base; bases are copied (or 2-bit encoded) only on request. Plain
files are memory-mapped and parsed where they lie in the page cache; gzip is read in chunks.

Plain files can be read by byte range ``[start, end)``: a record belongs to the range that holds
its first byte (the ``>`` or ``@``), so N ranges that tile a file produce every record exactly
once. Gzip files (detected by magic bytes) are read whole.
"""

from __future__ import annotations

import mmap
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from . import _native
from .batch import ReadBatch, empty_batch, exclusive_cumsum, gather_ragged, ragged_index
from .errors import FormatError, UsageError

GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_CHUNK = 4 << 20

_NL = 10
_GT = ord(">")
_AT = ord("@")

# fastq_index's error codes.
_FASTQ_ERRORS = {
    1: "expected a FASTQ header line starting with '@'",
    2: "header with no sequence",
    3: "expected the FASTQ separator line starting with '+'",
    4: "quality length {qlen} differs from sequence length {slen}",
    5: "truncated FASTQ record (expected 4 lines: @header, sequence, +, quality)",
}



def is_gzip(path: str | os.PathLike[str]) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def _open_binary(path: Path):
    if is_gzip(path):
        try:
            from isal import igzip

            return igzip.open(path, "rb")
        except ImportError:  # pragma: no cover - isal is a hard dependency
            import gzip

            return gzip.open(path, "rb")
    return open(path, "rb")


def _line_number(path: Path, offset: int) -> int:
    """1-based line of a byte offset (only computed on the error path)."""
    line = 1
    done = 0
    with _open_binary(path) as fh:
        while done < offset:
            block = fh.read(min(DEFAULT_CHUNK, offset - done))
            if not block:
                break
            line += block.count(b"\n")
            done += len(block)
    return line


class FastxReader:
    """Iterate over a FASTA/FASTQ file (plain or gzip) in :class:`ReadBatch` chunks.

    ``start``/``end`` select a byte range of a plain file; the reader resynchronises to the first
    record starting at or after ``start`` and stops before the first record starting at or after
    ``end``. ``chunk_size`` bounds the bytes parsed at once (memory is a small multiple of it).
    ``two_bit``: the consumer will call :meth:`ReadBatch.two_bit` on every batch, so FASTA
    records are encoded in the indexing pass, while each line is in cache.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        start: int = 0,
        end: int | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        skip_bad: bool = False,
        two_bit: bool = False,
    ) -> None:
        self.path = Path(path)
        self.skip_bad = skip_bad
        # FASTA: 2-bit encode while indexing, for consumers that call ReadBatch.two_bit()
        self.eager_two_bit = two_bit
        self.skipped: dict[str, int] = {}  # reason -> records skipped (with skip_bad)
        if not self.path.exists():
            raise UsageError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise UsageError(f"{self.path}: is a directory, expected a FASTA/FASTQ file")
        self.gzip = is_gzip(self.path)
        if self.gzip and (start != 0 or end is not None):
            raise UsageError(
                f"{self.path}: a gzip file cannot be split into byte ranges; "
                "recompress it uncompressed or pack it into a store (readtax pack)"
            )
        self.start = start
        self.end = end
        self.chunk_size = max(int(chunk_size), 1 << 12)
        self.format: str | None = None
        self.bytes_read = 0  # compressed-file position is not tracked; this counts raw bytes

    def _fail(self, message: str, offset: int | None = None, record: int | None = None):
        line = None if offset is None else _line_number(self.path, offset)
        raise FormatError(message, self.path, line=line, record=record)

    def __iter__(self) -> Iterator[ReadBatch]:
        try:
            yield from self._iter()
        except EOFError as exc:
            raise FormatError(f"truncated or corrupt gzip stream ({exc})", self.path) from None
        except OSError as exc:
            if self.gzip or "gzip" in str(exc).lower() or "compressed" in str(exc).lower():
                raise FormatError(f"corrupt gzip stream ({exc})", self.path) from None
            raise

    def _iter(self) -> Iterator[ReadBatch]:
        with _open_binary(self.path) as fh:
            pos = 0
            if self.start:
                fh.seek(self.start)
                pos = self.start
            first = fh.read(self.chunk_size)
            if not first:
                if self.start == 0:
                    raise FormatError("file is empty, expected FASTA ('>') or FASTQ ('@') records", self.path)
                return
            if self.start == 0:
                stripped = first.lstrip(b"\r\n")
                if not stripped:
                    raise FormatError("file holds only blank lines, expected FASTA or FASTQ records", self.path)
                lead = stripped[0]
                if lead == _GT:
                    self.format = "fasta"
                elif lead == _AT:
                    self.format = "fastq"
                else:
                    skipped = len(first) - len(stripped)
                    what = "binary data" if _looks_binary(stripped[:512]) else "text"
                    self._fail(
                        f"found {what} before the first record; expected a FASTA header ('>') "
                        "or a FASTQ header ('@')",
                        offset=skipped,
                    )
                buf = first[len(first) - len(stripped) :]
                pos += len(first) - len(stripped)
            else:
                self.format = sniff_format(self.path)
                buf, pos = self._resync(fh, first, pos)
                if buf is None:
                    return
            parse = self._parse_fasta if self.format == "fasta" else self._parse_fastq
            record_no = 0 if self.start == 0 else -1
            mapped = None if self.gzip else _map_file(fh)
            if mapped is not None:
                yield from self._iter_mapped(mapped, pos, parse, record_no)
                return
            eof = False
            while True:
                if not eof and len(buf) < self.chunk_size:
                    grown = self._read_after(fh, buf, self.chunk_size)
                    if grown is None:
                        eof = True
                    else:
                        buf = grown
                if not buf:
                    return
                batch, consumed, stop = parse(buf, pos, eof)
                if batch is not None and len(batch):
                    batch.first_record = record_no
                    if record_no >= 0:
                        record_no += len(batch)
                    yield batch
                buf = buf[consumed:]
                pos += consumed
                self.bytes_read = pos
                if stop or (eof and not buf):
                    return
                if consumed == 0 and eof:
                    return
                if consumed == 0:
                    # One record larger than the buffer: read more before parsing again.
                    more = fh.read(max(self.chunk_size, len(buf)))
                    if more:
                        buf += more
                    else:
                        eof = True

    def _iter_mapped(self, mm: mmap.mmap, pos: int, parse, record_no: int) -> Iterator[ReadBatch]:
        """The read loop over a memory-mapped plain file: chunks are windows of the page
        cache, parsed where they lie (no copy). Pages behind the reader are dropped from the
        mapping as it goes, so resident memory stays at a few chunks."""
        size = len(mm)
        dropped = pos - pos % mmap.ALLOCATIONGRANULARITY
        while pos < size:
            n = min(self.chunk_size, size - pos)
            while True:
                if mm.size() < pos + n:
                    # Touching mapped pages past a shrunken file's end would kill the
                    # process (SIGBUS); a file rewritten under us is an input error.
                    raise FormatError(f"the file shrank to {mm.size():,} bytes while being read "
                                      f"(it was {size:,})", self.path)
                eof = pos + n >= size
                batch, consumed, stop = parse(_Window(mm, pos, n), pos, eof)
                if consumed or eof or stop:
                    break
                n = min(2 * n, size - pos)  # one record longer than the window
            if batch is not None and len(batch):
                batch.first_record = record_no
                if record_no >= 0:
                    record_no += len(batch)
                yield batch
            pos += consumed
            self.bytes_read = pos
            if stop or consumed == 0:
                return
            # Read-only file pages: batches still viewing them fault them back in if used.
            done = pos - pos % mmap.ALLOCATIONGRANULARITY
            if done - dropped >= min(_DROP_BYTES, 2 * self.chunk_size) and hasattr(mm, "madvise"):
                mm.madvise(mmap.MADV_DONTNEED, dropped, done - dropped)
                dropped = done

    def _read_after(self, fh, head, n: int) -> bytearray | None:
        """``head`` followed by up to ``n`` new bytes, read in place (no copy of the new data).

        The previous chunk's buffer is reused when nothing refers to it any more (batches parsed
        from it hold references until they are dropped): a fresh multi-megabyte buffer per
        chunk costs a zero fill and page faults that add up to more than the parsing.
        """
        size = len(head) + n
        # References: the list, ``b`` and getrefcount's argument; any more is a live batch.
        # Buffers are shared by the readers of a thread: a consumer's loop variable still
        # holds the last batch while it asks for the next, and some read two files at once.
        spares = _pool().spares
        out = next((b for b in spares if sys.getrefcount(b) <= 3), None)
        if out is None:
            out = bytearray(size)
            if len(spares) < _SPARES:
                spares.append(out)
        elif len(out) > size:
            del out[size:]
        elif len(out) < size:
            out.extend(bytes(size - len(out)))
        out[: len(head)] = head
        got = fh.readinto(memoryview(out)[len(head) :])
        if not got:
            return None
        if got < n:
            del out[len(head) + got :]
        return out

    def _resync(self, fh, first: bytes, pos: int) -> tuple[bytes | None, int]:
        """Skip to the first record that starts at or after ``self.start``."""
        # Look at the byte before start: a record starting exactly at start counts as ours.
        with open(self.path, "rb") as raw:
            raw.seek(self.start - 1)
            prev = raw.read(1)
        buf = first
        search_from = 0
        while True:
            if self.format == "fasta":
                if prev == b"\n" and buf[:1] == b">":
                    idx = 0
                else:
                    idx = buf.find(b"\n>", search_from)
                    idx = -1 if idx < 0 else idx + 1
            else:
                idx = _find_fastq_start(buf, search_from, at_line_start=prev == b"\n")
            if idx >= 0:
                if self.end is not None and pos + idx >= self.end:
                    return None, pos
                return buf[idx:], pos + idx
            if self.end is not None and pos + len(buf) >= self.end:
                return None, pos
            more = fh.read(self.chunk_size)
            if not more:
                return None, pos
            search_from = max(0, len(buf) - 4)
            buf += more

    # -- FASTA -------------------------------------------------------------------------------

    def _parse_fasta(self, data: bytes, pos: int, eof: bool):
        """Parse the complete records in ``data`` (which starts with '>')."""
        if eof:
            cut = len(data)
        else:
            cut = data.rfind(b"\n>")
            if cut < 0:
                return None, 0, False
            cut += 1
        stop = False
        if self.end is not None:
            if pos >= self.end:
                return None, len(data), True
            if pos + cut > self.end:
                # Only records starting before self.end are ours; the last one may run past end.
                limit = self.end - pos
                nxt = data.find(b"\n>", max(limit - 1, 0))
                cut = len(data) if nxt < 0 else nxt + 1
                if nxt < 0 and not eof:
                    return None, 0, False
                stop = True
        # The block is a view of data[:cut]; the chunk's tail is not copied away.
        raw = data.view if isinstance(data, _Window) else data
        batch = self._fasta_block(raw, cut, np.frombuffer(raw, dtype=np.uint8, count=cut), pos)
        return batch, cut, stop

    def _fasta_block(self, data: bytes, cut: int, buf: np.ndarray, pos: int) -> ReadBatch:
        """Parse ``data[:cut]`` (whole records; ``buf`` is a view of exactly those bytes).

        One compiled pass indexes the records, copies the headers and classifies every base;
        the bases themselves are copied only when a consumer asks for them.
        """
        rec_start, hdr_off, seq_off, flags, hdr_buf = self._scratch(cut)
        rows = np.empty(cut // 4 + cut // 2 + 8 if self.eager_two_bit else 0, np.uint8)
        n, lines, has_cr, non_acgt, err, row_bytes = _native.fasta_index(
            data, cut, rec_start, hdr_off, seq_off, flags, hdr_buf, rows)
        if err >= 0 or n == 0:
            self._fail("expected a FASTA header line starting with '>'", offset=pos + max(err, 0))
        # Exact-size copies: the scratch arrays are reused for the next chunk.
        rec_start, flags = rec_start[:n].copy(), flags[:n].copy()
        hdr_off, seq_off = hdr_off[: n + 1].copy(), seq_off[: n + 1].copy()
        headers = hdr_buf[: hdr_off[-1]].copy()
        rec_end = np.empty(n, np.int64)
        rec_end[:-1] = rec_start[1:]
        rec_end[-1] = cut
        empty = seq_off[1:] == seq_off[:-1]
        invalid = (flags & 1).astype(bool)
        if empty.any() and not self.skip_bad:
            bad = int(np.flatnonzero(empty)[0])
            self._fail("header with no sequence (expected sequence lines after the header)",
                       offset=pos + int(rec_start[bad]))
        if invalid.any() and not self.skip_bad:
            self._invalid_char(data, rec_start, rec_end, flags, seq_off, int(np.flatnonzero(invalid)[0]), pos)
        dropped = empty | invalid
        eager = self.eager_two_bit
        if eager and dropped.any():  # rows of the kept records only (a rare path)
            nrow = (np.diff(seq_off) + 3) >> 2
            keep = np.flatnonzero(~dropped)
            rows = gather_ragged(rows[:row_bytes], exclusive_cumsum(nrow), keep)[0]
            row_bytes = len(rows)
        if dropped.any():
            self._count_skip("header with no sequence", int(np.count_nonzero(empty)))
            self._count_skip("invalid character in sequence", int(np.count_nonzero(invalid & ~empty)))
            keep = np.flatnonzero(~dropped)
            headers, hdr_off = gather_ragged(headers, hdr_off, keep)
            seq_off = exclusive_cumsum(np.diff(seq_off)[keep])
            rec_start, rec_end, flags = rec_start[keep], rec_end[keep], flags[keep]
            non_acgt = -1  # counted again on the kept bases

        def seq():
            out = np.empty(int(seq_off[-1]), np.uint8)
            _native.fasta_bases(data, rec_start, rec_end, flags, seq_off, out)
            if non_acgt >= 0:
                return out, non_acgt
            return out, out.tobytes().count(b"N") if flags.any() else 0

        # Two lines per record, LF only, upper-case ACGT: the records are already in canonical
        # output form, so selected ones can be copied byte for byte (raw_records).
        canonical = (lines == 2 * n and not has_cr and not dropped.any() and not flags.any()
                     and data[cut - 1] == _NL)
        def two_bit():
            if not eager:
                row_off = exclusive_cumsum((np.diff(seq_off) + 3) >> 2)
                out = np.empty(int(row_off[-1]), np.uint8)
                _native.fasta_pack(data, rec_start, rec_end, flags, row_off, out)
                return out
            out = rows[:row_bytes]
            redo = np.flatnonzero(flags)
            if len(redo):  # lower case or other letters: rows normalised by fasta_pack
                row_off = exclusive_cumsum((np.diff(seq_off) + 3) >> 2)
                nrow = np.diff(row_off)[redo]
                fixed = np.empty(int(nrow.sum()), np.uint8)
                _native.fasta_pack(data, rec_start[redo], rec_end[redo], flags[redo],
                                   exclusive_cumsum(nrow), fixed)
                idx, _ = ragged_index(row_off[redo], nrow)
                out[idx] = fixed
            return out

        batch = ReadBatch(seq, seq_off, headers, hdr_off, None, str(self.path), -1,
                          byte_offsets=pos + rec_start, non_acgt=non_acgt)
        batch.two_bit = two_bit
        if canonical:
            batch.raw_records = lambda: (buf, rec_end - rec_start)
        return batch

    def _scratch(self, size: int) -> tuple[np.ndarray, ...]:
        """Index arrays big enough for any ``size``-byte chunk (a record takes >= 2 bytes).

        Shared by the thread's readers: results are copied out before a chunk returns.
        """
        pool = _pool()
        cap = size // 2 + 1
        if pool.fasta is None or len(pool.fasta[4]) < size:
            pool.fasta = (_lazy(cap, np.int64), _lazy(cap + 1, np.int64),
                          _lazy(cap + 1, np.int64), _lazy(cap, np.uint8), _lazy(size, np.uint8))
        return pool.fasta

    def _invalid_char(self, data, rec_start, rec_end, flags, seq_off, i: int, pos: int):
        """Report the first byte of FASTA record ``i`` that is not a sequence character."""
        one = slice(i, i + 1)
        off = seq_off[i : i + 2] - seq_off[i]
        where = _native.fasta_bases(data, rec_start[one], rec_end[one], flags[one], off,
                                    np.empty(int(off[-1]), np.uint8))
        self._invalid_char_at(data, where, pos)

    def _invalid_char_at(self, data, where: int, pos: int):
        ch = data[where]
        self._fail(
            f"invalid character {chr(ch)!r} (byte {ch}) in sequence; "
            "expected IUPAC nucleotide letters" + (" (binary data?)" if ch < 32 or ch > 126 else ""),
            offset=pos + where,
        )

    def _count_skip(self, reason: str, n: int) -> None:
        if n:
            self.skipped[reason] = self.skipped.get(reason, 0) + n

    # -- FASTQ -------------------------------------------------------------------------------

    def _parse_fastq(self, data: bytes, pos: int, eof: bool):
        """Parse the complete records in ``data`` (which starts with '@')."""
        data = data.view if isinstance(data, _Window) else data
        length = len(data)
        limit = length + 1 if self.end is None else self.end - pos
        if limit <= 0:
            return None, length, True
        rec_start, hdr_off, seq_start, seq_len, qual_start, flags, hdr_buf = self._fq_scratch(length)
        n, consumed, non_acgt, err, err_pos, qlen, slen = _native.fastq_index(
            data, length, eof, limit, self.skip_bad, rec_start, hdr_off, seq_start, seq_len,
            qual_start, flags, hdr_buf)
        if err:
            self._fail(_FASTQ_ERRORS[err].format(qlen=qlen, slen=slen), offset=pos + err_pos)
        stop = consumed >= limit
        if n == 0:
            return None, consumed, stop
        rec_start, flags = rec_start[:n].copy(), flags[:n].copy()
        seq_start, seq_len, qual_start = seq_start[:n].copy(), seq_len[:n].copy(), qual_start[:n].copy()
        hdr_off = hdr_off[: n + 1].copy()
        headers = hdr_buf[: hdr_off[-1]].copy()
        invalid = (flags & 1).astype(bool)
        if invalid.any() and not self.skip_bad:
            i = int(np.flatnonzero(invalid)[0])
            one = slice(i, i + 1)
            where = _native.copy_bases(data, seq_start[one], seq_len[one], flags[one],
                                       np.empty(int(seq_len[i]), np.uint8))
            self._invalid_char_at(data, where, pos)
        dropped = (flags & 5).astype(bool)
        if dropped.any():
            short = (flags & 4).astype(bool)
            self._count_skip("header with no sequence", int(np.count_nonzero(short & (seq_len == 0))))
            self._count_skip("quality length differs from sequence length",
                             int(np.count_nonzero(short & (seq_len > 0))))
            self._count_skip("invalid character in sequence", int(np.count_nonzero(invalid & ~short)))
            keep = np.flatnonzero(~dropped)
            headers, hdr_off = gather_ragged(headers, hdr_off, keep)
            rec_start, flags = rec_start[keep], flags[keep]
            seq_start, seq_len, qual_start = seq_start[keep], seq_len[keep], qual_start[keep]
            non_acgt = -1  # counted again on the kept bases
        seq_off = exclusive_cumsum(seq_len)
        qual = np.empty(int(seq_off[-1]), np.uint8)
        _native.gather(data, qual_start, seq_len, qual)

        def seq():
            out = np.empty(int(seq_off[-1]), np.uint8)
            _native.copy_bases(data, seq_start, seq_len, flags, out)
            if non_acgt >= 0:
                return out, non_acgt
            return out, out.tobytes().count(b"N") if flags.any() else 0

        batch = ReadBatch(seq, seq_off, headers, hdr_off, qual, str(self.path), -1,
                          byte_offsets=pos + rec_start, non_acgt=non_acgt)
        return batch, consumed, stop

    def _fq_scratch(self, size: int) -> tuple[np.ndarray, ...]:
        """FASTQ index arrays for a ``size``-byte chunk (a record takes >= 6 bytes)."""
        pool = _pool()
        cap = size // 6 + 1
        if pool.fastq is None or len(pool.fastq[6]) < size:
            pool.fastq = (_lazy(cap, np.int64), _lazy(cap + 1, np.int64), _lazy(cap, np.int64),
                          _lazy(cap, np.int64), _lazy(cap, np.int64), _lazy(cap, np.uint8),
                          _lazy(size, np.uint8))
        return pool.fastq


# A mapped reader releases the pages behind it this often, or every two chunks if they are
# smaller: a shuffling stream reads 128 ranges at once in small chunks, and each range's
# pages would otherwise stay mapped up to this much.
_DROP_BYTES = 8 << 20


class _Window:
    """``mm[start:start + n]`` of a mapped file as the parser needs it: searches run on the
    mapping, ``view`` is a zero-copy buffer for numpy and the compiled core."""

    __slots__ = ("mm", "start", "n", "view")

    def __init__(self, mm: mmap.mmap, start: int, n: int) -> None:
        self.mm, self.start, self.n = mm, start, n
        self.view = memoryview(mm)[start : start + n]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return self.view[i]

    def find(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        end = self.n if end is None else end
        at = self.mm.find(sub, self.start + start, self.start + end)
        return at - self.start if at >= 0 else -1

    def rfind(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        end = self.n if end is None else end
        at = self.mm.rfind(sub, self.start + start, self.start + end)
        return at - self.start if at >= 0 else -1


def _map_file(fh) -> mmap.mmap | None:
    """A read-only mapping of a plain file, or None where mapping is not possible."""
    try:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError, AttributeError):
        return None


_SPARES = 4  # chunk buffers kept per thread
_POOL = threading.local()


def _pool():
    """This thread's reusable reader buffers (set up lazily, kept for the process's life)."""
    if not hasattr(_POOL, "spares"):
        _POOL.spares = []
        _POOL.fasta = None
        _POOL.fastq = None
    return _POOL


def _lazy(n: int, dtype) -> np.ndarray:
    """An array whose pages take memory only once written (a private anonymous mapping).

    Index arrays are sized for the worst case (a record every two bytes) but real chunks fill
    a small fraction; heap memory would often come back already resident.
    """
    nbytes = max(int(n) * np.dtype(dtype).itemsize, 1)
    if not hasattr(mmap, "MAP_PRIVATE"):  # pragma: no cover - not a POSIX system
        return np.empty(int(n), dtype)
    # Private: an anonymous mapping is shared by default, also with forked workers.
    return np.frombuffer(mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE), dtype=dtype, count=int(n))


def _looks_binary(data: bytes) -> bool:
    return any(b < 9 or (13 < b < 32) or b > 126 for b in data[:256])


def _find_fastq_start(buf: bytes, start: int, *, at_line_start: bool) -> int:
    """First offset >= start of a line '@...' whose line two below starts with '+'.

    A quality line may begin with '@', but the line two below it is a sequence line, which never
    starts with '+', so this test is unambiguous for 4-line FASTQ.
    """
    i = start
    while True:
        if i == 0 and at_line_start and buf[:1] == b"@":
            cand = 0
        else:
            j = buf.find(b"\n@", i)
            if j < 0:
                return -1
            cand = j + 1
        e1 = buf.find(b"\n", cand)
        e2 = buf.find(b"\n", e1 + 1) if e1 >= 0 else -1
        if e2 < 0:
            return -1
        if buf[e2 + 1 : e2 + 2] == b"+":
            return cand
        if buf[e2 + 1 : e2 + 2] == b"":
            return -1
        i = cand
        at_line_start = False


def sniff_format(path: str | os.PathLike[str]) -> str:
    """'fasta' or 'fastq' from the first non-blank byte of the file."""
    with _open_binary(Path(path)) as fh:
        head = fh.read(4096).lstrip(b"\r\n")
    if head[:1] == b">":
        return "fasta"
    if head[:1] == b"@":
        return "fastq"
    raise FormatError("expected a FASTA header ('>') or FASTQ header ('@') at the start", path, line=1)


def byte_ranges(path: str | os.PathLike[str], parts: int) -> list[tuple[int, int]]:
    """Split a plain file into ``parts`` contiguous byte ranges (some may hold no record)."""
    size = os.path.getsize(path)
    parts = max(1, int(parts))
    bounds = [size * k // parts for k in range(parts + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(parts)]


def read_batches(
    paths, *, chunk_size: int = DEFAULT_CHUNK
) -> Iterator[ReadBatch]:
    """All records of several files, in order, as batches."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for p in paths:
        yield from FastxReader(p, chunk_size=chunk_size)


def read_all(path, **kw) -> ReadBatch:
    """Small files and tests only: every record of ``path`` in one batch."""
    batches = list(read_batches(path, **kw))
    return ReadBatch.concat(batches) if batches else empty_batch(str(path))
