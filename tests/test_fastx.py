"""The batch FASTA/FASTQ reader: formats, compression, byte ranges and bad input."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from conftest import random_reads, write_fasta, write_fastq
from readtax.batch import ReadBatch
from readtax.errors import FormatError, UsageError
from readtax.fastx import FastxReader, byte_ranges, read_all


def _records(path, **kw):
    out = []
    for b in FastxReader(path, **kw):
        out.extend(zip(b.read_ids(), b.sequences()))
    return out


@pytest.mark.parametrize("fmt", ["fasta", "fastq"])
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_formats(tmp_path, fmt, compress):
    heads, seqs, _ = random_reads(300, length=(1, 400), seed=1)
    writer = write_fasta if fmt == "fasta" else write_fastq
    p = writer(tmp_path / "r.x", heads, seqs, compress=compress)
    recs = _records(p, chunk_size=4096)
    assert recs == list(zip(heads, seqs))


def test_multiline_crlf_lowercase_iupac(tmp_path):
    heads = ["a desc here", "b", "c"]
    seqs = ["acgtRYKMacgt" * 10, "ACGTN" * 3, "g"]
    p = write_fasta(tmp_path / "m.fa", heads, seqs, width=7, crlf=True)
    b = read_all(p)
    assert b.read_ids() == ["a", "b", "c"]
    assert b.header(0) == "a desc here"
    expected = [s.upper().translate(str.maketrans("RYKM", "NNNN")) for s in seqs]
    assert b.sequences() == expected
    assert b.lengths.tolist() == [120, 15, 1]


def test_fastq_quality_kept(tmp_path):
    p = tmp_path / "q.fq"
    p.write_bytes(b"@r1\nACGT\n+\n!#%&\n@r2 x\nGG\n+r2 x\nII\n")
    b = read_all(p)
    assert b.read_ids() == ["r1", "r2"]
    assert b.qual.tobytes() == b"!#%&II"
    assert b.sequences() == ["ACGT", "GG"]


def test_blank_lines_and_no_final_newline(tmp_path):
    p = tmp_path / "b.fa"
    p.write_bytes(b"\n>x\nAC\n\nGT\n>y\nTT")
    assert _records(p) == [("x", "ACGT"), ("y", "TT")]


@pytest.mark.parametrize("fmt", ["fasta", "fastq"])
@pytest.mark.parametrize("parts", [1, 2, 3, 7, 50])
def test_byte_ranges_cover_every_record_once(tmp_path, fmt, parts):
    heads, seqs, _ = random_reads(200, length=(20, 300), seed=parts)
    writer = write_fasta if fmt == "fasta" else write_fastq
    p = writer(tmp_path / "r.x", heads, seqs)
    got = []
    for s, e in byte_ranges(p, parts):
        got.extend(_records(p, start=s, end=e, chunk_size=4096))
    assert got == list(zip(heads, seqs))


def test_fastq_quality_starting_with_at_resyncs(tmp_path):
    # Quality lines that begin with '@' must not be taken for record starts.
    recs = [(f"r{i}", "ACGT" * 5, "@" + "I" * 19) for i in range(50)]
    p = tmp_path / "q.fq"
    p.write_text("".join(f"@{h}\n{s}\n+\n{q}\n" for h, s, q in recs))
    got = []
    for s, e in byte_ranges(p, 13):
        got.extend(_records(p, start=s, end=e))
    assert [g[0] for g in got] == [r[0] for r in recs]


def test_small_chunks_long_reads(tmp_path):
    heads, seqs, _ = random_reads(5, length=10_000, seed=3)
    p = write_fasta(tmp_path / "long.fa", heads, seqs, width=60)
    assert _records(p, chunk_size=4096) == list(zip(heads, seqs))


def test_gzip_ranges_refused(tmp_path):
    p = write_fasta(tmp_path / "r.fa.gz", ["a"], ["ACGT"], compress=True)
    with pytest.raises(UsageError, match="gzip"):
        FastxReader(p, start=10, end=20)


def _error(path, **kw) -> str:
    with pytest.raises(FormatError) as exc:
        _records(path, **kw)
    return str(exc.value)


def test_empty_file(tmp_path):
    p = tmp_path / "e.fa"
    p.write_bytes(b"")
    assert "empty" in _error(p)


def test_text_before_first_record(tmp_path):
    p = tmp_path / "t.fa"
    p.write_bytes(b"hello\n>a\nACGT\n")
    msg = _error(p)
    assert "line 1" in msg and "before the first record" in msg and str(p) in msg


def test_header_without_sequence(tmp_path):
    p = tmp_path / "h.fa"
    p.write_bytes(b">a\nACGT\n>b\n>c\nAC\n")
    msg = _error(p)
    assert "line 3" in msg and "no sequence" in msg


def test_truncated_gzip(tmp_path):
    data = gzip.compress(b">a\nACGT\n" * 5000)
    p = tmp_path / "t.fa.gz"
    p.write_bytes(data[: len(data) // 2])
    assert "gzip" in _error(p)


def test_fastq_quality_length_mismatch(tmp_path):
    p = tmp_path / "q.fq"
    p.write_bytes(b"@a\nACGT\n+\nIIII\n@b\nACGT\n+\nIII\n")
    msg = _error(p)
    assert "line 8" in msg and "quality length 3 differs from sequence length 4" in msg


def test_fastq_truncated_record(tmp_path):
    p = tmp_path / "q.fq"
    p.write_bytes(b"@a\nACGT\n+\nIIII\n@b\nACGT\n")
    assert "truncated FASTQ record" in _error(p)


def test_binary_garbage(tmp_path):
    p = tmp_path / "g.fa"
    p.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8)))
    # The seeded bytes start with '_', so the first line is neither header kind.
    assert _error(p).endswith(
        "line 1: found binary data before the first record; "
        "expected a FASTA header ('>') or a FASTQ header ('@')")


def test_invalid_character_in_sequence_names_line(tmp_path):
    p = tmp_path / "g.fa"
    p.write_bytes(b">a\nACGT\n>b\nAC1T\n")
    msg = _error(p)
    assert "line 4" in msg and "'1'" in msg


def test_error_line_numbers_in_later_chunks(tmp_path):
    heads, seqs, _ = random_reads(2000, seed=5)
    p = write_fasta(tmp_path / "r.fa", heads, seqs)
    with open(p, "ab") as fh:
        fh.write(b">bad\n")
    msg = _error(p, chunk_size=4096)
    assert f"line {2 * 2000 + 1}" in msg


def test_raw_records_only_for_canonical_chunks(tmp_path):
    heads, seqs, _ = random_reads(30, length=(5, 40), seed=9)
    p = write_fasta(tmp_path / "c.fa", heads, seqs)
    b = read_all(p)
    buf, sizes = b.raw_records()
    assert buf.tobytes() == p.read_bytes()
    assert sizes.tolist() == [len(h) + len(s) + 3 for h, s in zip(heads, seqs)]
    for kw, seq0 in [({"crlf": True}, None), ({"width": 7}, None), ({}, "acgt")]:
        alt = list(seqs)
        if seq0:
            alt[0] = seq0
        q = write_fasta(tmp_path / "x.fa", heads, alt, **kw)
        assert read_all(q).raw_records() is None


def _reference_fasta(text: bytes) -> tuple[list[bytes], list[bytes], int]:
    """A line-by-line parser to check the compiled one against: headers, bases, N count."""
    table = bytes(
        c if chr(c) in "ACGT" else (c - 32 if chr(c) in "acgt" else ord("N"))
        for c in range(256)
    )
    heads, seqs = [], []
    for line in text.split(b"\n"):
        line = line[:-1] if line.endswith(b"\r") else line
        if line.startswith(b">"):
            heads.append(line[1:])
            seqs.append(b"")
        elif line:
            seqs[-1] += line.translate(table)
    return heads, seqs, sum(s.count(b"N") for s in seqs)


@pytest.mark.parametrize("seed", range(6))
def test_native_index_matches_a_line_parser(tmp_path, seed):
    # Random wrapping, CRLF, lower case, IUPAC codes and blank lines, read in small chunks so
    # that records straddle chunk boundaries and lines straddle 16-byte SIMD blocks.
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"ACGTACGTACGTacgtNRYn-", np.uint8)
    parts = []
    for i in range(400):
        n = int(rng.integers(1, 300))
        bases = alphabet[rng.integers(0, 4 if rng.random() < 0.7 else len(alphabet), n)].tobytes()
        width = int(rng.integers(1, 80)) if rng.random() < 0.5 else n
        nl = b"\r\n" if rng.random() < 0.2 else b"\n"
        lines = [bases[k : k + width] for k in range(0, n, width)]
        blank = nl if rng.random() < 0.1 else b""
        parts.append(b">r%d desc %d" % (i, n) + nl + nl.join(lines) + nl + blank)
    text = b"".join(parts)
    p = tmp_path / "r.fa"
    p.write_bytes(text)
    heads, seqs, n_count = _reference_fasta(text)
    got_h, got_s, got_n = [], [], 0
    eager = FastxReader(p, chunk_size=4096, two_bit=True)
    for b, e in zip(FastxReader(p, chunk_size=4096), eager, strict=True):
        # The reader's 2-bit encoding straight from the file, and the one made while indexing
        # (lower case and other letters re-encoded), equal encoding its bases.
        plain = ReadBatch(b.seq, b.seq_offsets, b.headers, b.header_offsets)
        assert np.array_equal(b.two_bit(), plain.two_bit())
        assert np.array_equal(e.two_bit(), plain.two_bit())
        got_h += [b.header(i).encode() for i in range(len(b))]
        got_s += [s.encode() for s in b.sequences()]
        got_n += b.non_acgt
    assert got_h == heads
    assert got_s == seqs
    assert got_n == n_count


@pytest.mark.parametrize("seed", range(4))
def test_native_fastq_matches_a_line_parser(tmp_path, seed):
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"ACGTACGTACGTacgtNRYn", np.uint8)
    table = bytes(c if chr(c) in "ACGT" else (c - 32 if chr(c) in "acgt" else ord("N"))
                  for c in range(256))
    parts, want = [], []
    for i in range(300):
        n = int(rng.integers(1, 200))
        bases = alphabet[rng.integers(0, 4 if rng.random() < 0.7 else len(alphabet), n)].tobytes()
        qual = rng.integers(33, 75, n).astype(np.uint8).tobytes()
        nl = b"\r\n" if rng.random() < 0.2 else b"\n"
        parts.append(b"@q%d x" % i + nl + bases + nl + b"+" + nl + qual + nl)
        want.append((b"q%d x" % i, bases.translate(table), qual))
    p = tmp_path / "r.fq"
    p.write_bytes(b"".join(parts) + b"\n")  # a trailing blank line is tolerated
    got, n_count = [], 0
    for b in FastxReader(p, chunk_size=4096):
        seqs = b.sequences()
        for i in range(len(b)):
            q = b.qual[b.seq_offsets[i] : b.seq_offsets[i + 1]].tobytes()
            got.append((b.header(i).encode(), seqs[i].encode(), q))
        n_count += b.non_acgt
    assert got == want
    assert n_count == sum(s.count(b"N") for _, s, _ in want)


def test_fastq_skip_bad_counts_each_reason(tmp_path):
    p = tmp_path / "bad.fq"
    p.write_bytes(b"@a\nACGT\n+\nIIII\n@b\n\n+\n\n@c\nACGT\n+\nIII\n@d\nAC1T\n+\nIIII\n"
                  b"@e\nacgn\n+\nIIII\n")
    r = FastxReader(p, skip_bad=True)
    batches = list(r)
    assert [x for bt in batches for x in bt.read_ids()] == ["a", "e"]
    assert [x for bt in batches for x in bt.sequences()] == ["ACGT", "ACGN"]
    assert sum(bt.non_acgt for bt in batches) == 1
    assert r.skipped == {"header with no sequence": 1,
                         "quality length differs from sequence length": 1,
                         "invalid character in sequence": 1}
    msg = _error(p)
    assert "line 5" in msg and "no sequence" in msg


def test_file_shrinking_while_read_is_an_error_not_a_crash(tmp_path):
    heads, seqs, _ = random_reads(3000, length=150, seed=4)
    p = write_fasta(tmp_path / "r.fa", heads, seqs)
    it = iter(FastxReader(p, chunk_size=1 << 14))
    next(it)
    with open(p, "r+b") as fh:
        fh.truncate(1 << 15)
    with pytest.raises(FormatError, match="shrank"):
        for _ in it:
            pass


def test_eager_two_bit_skips_dropped_records(tmp_path):
    # Skipped records (no sequence, invalid characters) leave no row behind.
    p = tmp_path / "r.fa"
    p.write_bytes(b">a\nACGTA\n>empty\n>bad\nAC!GT\n>b\nacgtnNGGC\nTT\n>c\nG\n")
    batch = next(iter(FastxReader(p, skip_bad=True, two_bit=True)))
    plain = ReadBatch(batch.seq, batch.seq_offsets, batch.headers, batch.header_offsets)
    assert batch.sequences() == ["ACGTA", "ACGTNNGGCTT", "G"]
    assert np.array_equal(batch.two_bit(), plain.two_bit())


# -- ReadBatch.slice / ReadBatch.concat ---------------------------------------------------------


def _fields(rb: ReadBatch) -> dict:
    return {
        "seq": rb.seq.tobytes(), "seq_offsets": rb.seq_offsets.tolist(),
        "headers": rb.headers.tobytes(), "header_offsets": rb.header_offsets.tolist(),
        "qual": None if rb.qual is None else rb.qual.tobytes(),
        "byte_offsets": None if rb.byte_offsets is None else rb.byte_offsets.tolist(),
        "first_record": rb.first_record, "source": rb.source,
    }


def _fastq_batch(tmp_path, n=40, seed=3) -> ReadBatch:
    heads, seqs, _ = random_reads(n, length=(1, 30), seed=seed)
    path = write_fastq(tmp_path / "r.fq", heads, seqs)
    return next(iter(FastxReader(path)))


def test_read_batch_slices_concat_back_to_the_batch(tmp_path):
    rb = _fastq_batch(tmp_path)
    n = len(rb)
    assert rb.qual is not None and rb.byte_offsets is not None and rb.first_record == 0
    whole = _fields(rb)
    for cuts in [(0, n), (0, 0, n), (7, 7, 19), (1, 2, 3, n - 1), (n, n)]:
        bounds = [0, *cuts, n]
        parts = [rb.slice(a, b) for a, b in zip(bounds, bounds[1:])]
        assert sum(len(p) for p in parts) == n
        assert _fields(ReadBatch.concat(parts)) == whole
        assert [p.first_record for p in parts] == bounds[:-1]
    assert rb.slice(5, 9).read_ids() == rb.read_ids()[5:9]
    assert rb.slice(5, 9).sequences() == rb.sequences()[5:9]


def test_read_batch_slice_of_chunks_equals_one_read(tmp_path):
    heads, seqs, _ = random_reads(300, length=(20, 90), seed=5)
    path = write_fastq(tmp_path / "r.fq", heads, seqs)
    chunks = list(FastxReader(path, chunk_size=1 << 11))
    assert len(chunks) > 3
    joined = ReadBatch.concat(chunks)
    assert _fields(joined) == _fields(next(iter(FastxReader(path))))
    assert _fields(read_all(path, chunk_size=1 << 11)) == _fields(joined)


def test_read_batch_slice_views_or_copies(tmp_path):
    rb = _fastq_batch(tmp_path)
    view, copy = rb.slice(3, 11), rb.slice(3, 11, copy=True)
    assert _fields(view) == _fields(copy)
    for name in ("seq", "headers", "qual", "byte_offsets"):
        assert np.shares_memory(getattr(view, name), getattr(rb, name)), name
        assert not np.shares_memory(getattr(copy, name), getattr(rb, name)), name


def test_read_batch_empty_slices_and_batches(tmp_path):
    rb = _fastq_batch(tmp_path)
    empty = rb.slice(4, 4)
    assert len(empty) == 0 and empty.seq_offsets.tolist() == [0]
    assert empty.header_offsets.tolist() == [0] and empty.seq.size == 0
    assert empty.qual is not None and empty.qual.size == 0
    assert _fields(ReadBatch.concat([rb.slice(0, 0), rb, empty])) == _fields(rb)
    assert ReadBatch.concat([empty, rb]).first_record == 4  # the first batch's number
    none = ReadBatch.concat([])
    assert len(none) == 0 and none.seq_offsets.tolist() == [0] and none.qual is None
    assert ReadBatch.concat([rb]) is rb


def test_read_batch_concat_keeps_qualities_only_when_all_have_them(tmp_path):
    rb = _fastq_batch(tmp_path)
    bare = rb.slice(0, 5)
    bare.qual = None
    bare.byte_offsets = None
    joined = ReadBatch.concat([bare, rb.slice(5, len(rb))])
    assert joined.qual is None and joined.byte_offsets is None
    assert joined.seq.tobytes() == rb.seq.tobytes()


def test_read_batch_slice_and_concat_keep_unbuilt_bases_unbuilt():
    built = []

    def bases() -> np.ndarray:
        built.append(1)
        return np.frombuffer(b"ACGTNACGTA", np.uint8).copy()

    off = np.array([0, 3, 3, 10], np.int64)
    rb = ReadBatch(bases, off, np.frombuffer(b"abc", np.uint8).copy(),
                   np.array([0, 1, 2, 3], np.int64), None, "x", 10)
    part = rb.slice(1, 3)
    joined = ReadBatch.concat([part, rb.slice(0, 1)])
    assert built == [] and part.first_record == 11
    assert joined.sequences() == ["", "TNACGTA", "ACG"]
    assert built == [1]  # one build of the parent serves every slice
    assert part.sequences() == ["", "TNACGTA"]
    assert built == [1]
