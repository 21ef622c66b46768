"""The compiled core's contracts: bounds are checked (errors, never memory faults), each
kernel agrees with a plain reference on small inputs, its byte tables are the ones generated
from readtax.bases, and its keyword names are the stub's."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

import readtax
from readtax import _native
from readtax.sampler import permute

PACKAGE = Path(readtax.__file__).resolve().parent
TOOLS = PACKAGE.parent.parent / "tools"


def test_gather_checks_ranges():
    src = np.arange(10, dtype=np.uint8)
    out = np.empty(4, np.uint8)
    assert _native.gather(src, np.array([8, 0], np.int64), np.array([2, 2], np.int64), out) == 4
    assert out.tolist() == [8, 9, 0, 1]
    with pytest.raises(IndexError):
        _native.gather(src, np.array([9], np.int64), np.array([2], np.int64), out)
    with pytest.raises(ValueError):
        _native.gather(src, np.array([0], np.int64), np.array([9], np.int64), out)


def test_fasta_index_reports_small_arrays_and_leading_text():
    data = b">a\nAC\n>b\nGT\n"
    z = np.empty(1, np.int64)
    with pytest.raises(ValueError):
        _native.fasta_index(data, len(data), z, np.empty(2, np.int64), np.empty(2, np.int64),
                            np.empty(1, np.uint8), np.empty(16, np.uint8))
    n, lines, has_cr, non_acgt, err, _ = _native.fasta_index(
        b"xx\n>a\nA\n", 8, np.empty(4, np.int64), np.empty(5, np.int64), np.empty(5, np.int64),
        np.empty(4, np.uint8), np.empty(8, np.uint8))
    assert (n, err) == (0, 0)
    # Packing while indexing needs room for the worst case (a quarter plus a half of the data).
    with pytest.raises(ValueError, match="packed buffer"):
        _native.fasta_index(data, len(data), np.empty(8, np.int64), np.empty(9, np.int64),
                            np.empty(9, np.int64), np.empty(8, np.uint8), np.empty(16, np.uint8),
                            np.empty(4, np.uint8))
    rows = np.empty(len(data) // 4 + len(data) // 2 + 8, np.uint8)
    n, *_, packed = _native.fasta_index(data, len(data), np.empty(8, np.int64),
                                        np.empty(9, np.int64), np.empty(9, np.int64),
                                        np.empty(8, np.uint8), np.empty(16, np.uint8), rows)
    # AC -> codes 0, 1; GT -> 3, 2 (A=0 C=1 T=2 G=3), one byte per record
    assert (n, packed, rows[:2].tolist()) == (2, 2, [0b0100, 0b1011])


def test_repack_and_front_code_check_indices():
    rows = np.zeros(10, np.uint8)
    starts = np.array([0, 5], np.int64)
    lengths = np.array([20, 20], np.int64)
    with pytest.raises(IndexError):
        _native.repack_2bit(rows, starts, lengths, np.array([2], np.int64), 0,
                            np.zeros(20, np.uint8))
    hdr = np.frombuffer(b"abcabd", np.uint8)
    off = np.array([0, 3, 6], np.int64)
    out = np.empty(2 * 2 + 6, np.uint8)
    size = _native.front_code(hdr, off, np.array([0, 1], np.int64), 127, out)
    # lcp bytes 0 and 2, then "abc\n" and the suffix "d\n"
    assert out[:size].tobytes() == b"\x00\x02abc\nd\n"
    with pytest.raises(ValueError):
        _native.front_code(hdr, off, np.array([0, 1], np.int64), 127, np.empty(3, np.uint8))


def test_select_reads_exact_and_detects_surplus():
    cls = np.array([0, 1, 0, 1, 0, -1], np.int64)
    left = np.array([3, 2], np.int64)
    need_a = np.array([2, 0], np.int64)
    need_b = np.array([1, 2], np.int64)
    out = np.empty(6, np.uint8)
    state = np.array([12345], np.uint64)
    assert _native.select_reads(cls, left, need_a, need_b, state, out) == -1
    assert np.bincount(out[cls == 0], minlength=3).tolist() == [0, 2, 1]
    assert out[cls == 1].tolist() == [2, 2] and out[5] == 0
    assert left.tolist() == [0, 0] and need_a.tolist() == [0, 0] and need_b.tolist() == [0, 0]
    # One read more than counted: reported by index.
    assert _native.select_reads(np.array([0], np.int64), left, need_a, need_b, state,
                                np.empty(1, np.uint8)) == 0


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1001, 65537])
def test_feistel_kernel_equals_the_numpy_network(n):
    x = np.arange(n, dtype=np.uint64)
    for inverse in (False, True):
        fast = permute(x, n, 99, inverse=inverse)
        # Per-element keys take the numpy path of the same network.
        ref = permute(x, np.full(n, n, np.uint64), np.full(n, 99, np.uint64), inverse=inverse)
        assert np.array_equal(fast, ref)
    assert sorted(permute(x, n, 5).tolist()) == list(range(n))


def test_write_parts_is_bucket_major_last_bucket_first(tmp_path):
    # Two fields from two batches, three buckets: bucket (last first), then field, then batch.
    f0 = [np.frombuffer(b"AAbC", np.uint8), np.frombuffer(b"xY", np.uint8)]
    b0 = [np.array([0, 2, 3, 4], np.int64), np.array([0, 1, 1, 2], np.int64)]
    f1 = [np.frombuffer(b"12", np.uint8), np.frombuffer(b"", np.uint8)]
    b1 = [np.array([0, 1, 1, 2], np.int64), np.array([0, 0, 0, 0], np.int64)]
    path = tmp_path / "run"
    with open(path, "wb") as fh:
        assert _native.write_parts(fh.fileno(), [f0, f1], [b0, b1], 3) == 8
    assert path.read_bytes() == b"CY2" + b"b" + b"AAx1"
    # Small parts are staged together, large ones written straight: the order holds.
    rng = np.random.default_rng(0)
    big = [rng.integers(0, 256, 20_000, dtype=np.uint8) for _ in range(2)]
    cuts = [np.array([0, 9_000, 9_010, 20_000], np.int64), np.array([0, 5, 15_000, 15_003],
                                                                     np.int64)]
    with open(path, "wb") as fh:
        _native.write_parts(fh.fileno(), [big], [cuts], 3)
    expect = b"".join(big[k][cuts[k][j]:cuts[k][j + 1]].tobytes() for j in (2, 1, 0)
                      for k in (0, 1))
    assert path.read_bytes() == expect
    # Bounds outside a piece, or a closed file: errors, not faults.
    with open(path, "wb") as fh, pytest.raises(ValueError):
        _native.write_parts(fh.fileno(), [f0, f1],
                            [[np.array([0, 9, 9, 9], np.int64), b0[1]], b1], 3)
    with pytest.raises(OSError):
        _native.write_parts(-1, [f0, f1], [b0, b1], 3)


def test_split_batch_buckets_by_hash_then_class_rank():
    from readtax.hashing import TAG_BUCKET, hash64

    rng = np.random.default_rng(3)
    n, nbk = 300, 7
    cls = rng.integers(0, 9, n).astype(np.int64)
    rank = rng.permutation(9).astype(np.int64)
    lengths = rng.integers(0, 20, n).astype(np.int64)
    rows_of = [rng.integers(0, 256, (int(x) + 3) // 4).astype(np.uint8) for x in lengths]
    hdrs = [b"r%d" % i for i in range(n)]
    packed = np.concatenate(rows_of)
    headers = np.frombuffer(b"".join(hdrs), np.uint8)
    hdr_off = np.concatenate([[0], np.cumsum([len(h) for h in hdrs])]).astype(np.int64)
    key = int(hash64(5, TAG_BUCKET, 2)[0])
    order = np.empty(n, np.int64)
    u32 = np.empty((3, n), np.uint32)
    rows, hdr = np.empty(len(packed), np.uint8), np.empty(len(headers), np.uint8)
    bounds = np.empty((4, nbk + 1), np.int64)
    counts, hist = np.zeros(9, np.int64), np.zeros(11, np.int64)
    span = _native.split_batch(key, 40, nbk, cls, rank, lengths, packed, headers, hdr_off, order,
                               u32[0], u32[1], u32[2], rows, hdr, bounds, counts, hist)
    # Statistics in the same pass: reads per class, lengths (10 and longer share a bin).
    assert span == (lengths.min(), lengths.max())
    assert counts.tolist() == np.bincount(cls, minlength=9).tolist()
    assert hist.tolist() == np.bincount(np.minimum(lengths, 10), minlength=11).tolist()
    # The buckets of sampler.hash64, sorted by (bucket, class rank), ties in input order.
    bucket = (hash64(5, TAG_BUCKET, 2, np.arange(40, 40 + n, dtype=np.uint64))
              % np.uint64(nbk)).astype(np.int64)
    expect = np.lexsort((np.arange(n), rank[cls], bucket))
    assert order.tolist() == expect.tolist()
    assert u32[0].tolist() == cls[order].tolist() and u32[1].tolist() == lengths[order].tolist()
    assert rows.tobytes() == b"".join(rows_of[i].tobytes() for i in order)
    assert hdr.tobytes() == b"".join(hdrs[i] for i in order)
    assert bounds[0].tolist() == np.searchsorted(bucket[order], np.arange(nbk + 1)).tolist()
    assert bounds[3, -1] == lengths.sum() and bounds[1, -1] == len(packed)
    # One bucket keeps the input order; class keys outside the rank table are an error.
    _native.split_batch(key, 40, 1, cls, rank, lengths, packed, headers, hdr_off, order,
                        u32[0], u32[1], u32[2], rows, hdr, bounds[:, :2].copy(), counts, hist)
    assert order.tolist() == list(range(n))
    with pytest.raises(ValueError):  # class keys outside the rank table or the counts
        _native.split_batch(key, 40, nbk, cls + 9, rank, lengths, packed, headers, hdr_off,
                            order, u32[0], u32[1], u32[2], rows, hdr, bounds, counts, hist)
    with pytest.raises(ValueError):
        _native.split_batch(key, 40, nbk, cls, np.zeros(0, np.int64), lengths, packed, headers,
                            hdr_off, order, u32[0], u32[1], u32[2], rows, hdr, bounds,
                            counts[:5], hist)


def test_bucket_layout_equals_argsort_and_permute():
    from readtax.sampler import feistel_params

    rng = np.random.default_rng(4)
    for m in (1, 2, 17, 1000):
        cls = rng.integers(0, 5, m).astype(np.int64)
        by_class, src = np.empty(m, np.int64), np.empty(m, np.int64)
        lens = rng.integers(1, 300, m).astype(np.int64)
        plen, pcls = np.empty(m, np.int64), np.empty(m, np.uint16)
        keys, a, b = feistel_params(m, 987654321)
        _native.bucket_layout(cls, 5, keys, a, b, lens, by_class, src, plen, pcls)
        expect = np.argsort(cls, kind="stable")
        assert by_class.tolist() == expect.tolist()
        rank = permute(np.arange(m), m, 987654321, inverse=True)
        assert src.tolist() == expect[rank].tolist()
        assert plen.tolist() == lens[src].tolist() and pcls.tolist() == cls[src].tolist()
        wide = np.empty(m, np.uint32)  # 65,536 classes or more: uint32 class indices
        _native.bucket_layout(cls, 5, keys, a, b, lens, by_class, src, plen, wide)
        assert wide.tolist() == cls[src].tolist()
        _native.bucket_layout(cls, 5, np.zeros(0, np.uint64), 1, m, lens, by_class, src, plen, pcls)
        assert src.tolist() == list(range(m))
    with pytest.raises(ValueError):
        _native.bucket_layout(cls, 4, keys, a, b, lens, by_class, src, plen, pcls)  # class 4


def test_tables_header_is_generated_from_bases():
    gen_path = TOOLS / "gen_tables.py"
    if not gen_path.exists():
        pytest.skip("not a source checkout")
    spec = importlib.util.spec_from_file_location("gen_tables", gen_path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    # Stale when bases.py changed without `python tools/gen_tables.py`.
    assert (PACKAGE / "csrc" / "tables.h").read_text() == gen.render()


def _stub_parameters() -> dict[str, list[str]]:
    tree = ast.parse((PACKAGE / "_native.pyi").read_text())
    return {f.name: [a.arg for a in f.args.args] for f in tree.body
            if isinstance(f, ast.FunctionDef)}


def test_stub_lists_every_function_with_the_c_keyword_names():
    stub = _stub_parameters()
    public = {name for name in dir(_native) if not name.startswith("_")}
    assert set(stub) == public
    entry = re.compile(r"PyObject \*(\w+)\([^\n]*\) \{\n\s*static char \*kwlist\[\] = \{([^}]*)\};")
    kwlists = {}
    for src in (PACKAGE / "csrc").glob("*.c"):
        for name, body in entry.findall(src.read_text()):
            kwlists[name] = re.findall(r'"(\w+)"', body)
    assert kwlists == stub


def test_keywords_and_positions_give_the_same_results():
    src = np.arange(10, dtype=np.uint8)
    starts, lengths = np.array([8, 0], np.int64), np.array([2, 2], np.int64)
    by_kw = np.empty(4, np.uint8)
    assert _native.gather(out=by_kw, lengths=lengths, starts=starts, src=src) == 4
    assert by_kw.tolist() == [8, 9, 0, 1]
    rows = np.array([0b11100100, 0b00011011], np.uint8)
    order = np.array([1, 0], np.int64)
    pos, kw = np.zeros(4, np.uint8), np.zeros(4, np.uint8)
    _native.repack_2bit(rows, np.zeros(0, np.int64), np.zeros(0, np.int64), order, 1, pos, 4)
    _native.repack_2bit(src=rows, row_off=np.zeros(0, np.int64), lengths=np.zeros(0, np.int64),
                        order=order, lead=1, out=kw, fixed=4)
    assert kw.tolist() == pos.tolist()
    with pytest.raises(TypeError):
        _native.gather(src, starts, lengths, out=by_kw, bogus=1)
