"""Signatures of the compiled core (``readtax._native``, built from ``csrc/``).

Inputs typed ``Buffer`` are read through the buffer protocol (bytes or contiguous arrays);
outputs typed ``np.ndarray`` are written in place and must be writable and contiguous. Integer
arrays are int64 unless a docstring says otherwise. Every argument may be passed by keyword.
Bounds are checked: a bad offset or index raises ValueError or IndexError.
"""

from collections.abc import Sequence

import numpy as np
from typing_extensions import Buffer

def fasta_index(
    data: Buffer,
    cut: int,
    rec_start: np.ndarray,
    hdr_off: np.ndarray,
    seq_off: np.ndarray,
    flags: np.ndarray,
    hdr_buf: np.ndarray,
    packed: np.ndarray = ...,
) -> tuple[int, int, int, int, int, int]:
    """Index FASTA records of data[:cut]: (records, lines, has_cr, non_acgt, err, packed_bytes)."""

def fastq_index(
    data: Buffer,
    length: int,
    eof: bool,
    limit: int,
    skip: bool,
    rec_start: np.ndarray,
    hdr_off: np.ndarray,
    seq_start: np.ndarray,
    seq_len: np.ndarray,
    qual_start: np.ndarray,
    flags: np.ndarray,
    hdr_buf: np.ndarray,
) -> tuple[int, int, int, int, int, int, int]:
    """Index complete FASTQ records: (records, consumed, non_acgt, error, at, qual_len, seq_len)."""

def copy_bases(
    data: Buffer, starts: Buffer, lengths: Buffer, flags: Buffer, out: np.ndarray
) -> int:
    """Concatenate single-line sequences into out, normalised where flagged; bad offset or -1."""

def fasta_bases(
    data: Buffer,
    rec_start: Buffer,
    rec_end: Buffer,
    flags: Buffer,
    seq_off: Buffer,
    out: np.ndarray,
) -> int:
    """Copy FASTA records' bases to out[seq_off[i]:seq_off[i+1]]; bad offset or -1."""

def fasta_pack(
    data: Buffer,
    rec_start: Buffer,
    rec_end: Buffer,
    flags: Buffer,
    row_off: Buffer,
    out: np.ndarray,
) -> int:
    """2-bit encode FASTA records to out[row_off[i]:row_off[i+1]]; bad offset or -1."""

def lbl_fields(
    headers: Buffer,
    hdr_off: Buffer,
    class_out: np.ndarray,
    tax_out: np.ndarray,
    status_out: np.ndarray,
) -> int:
    """Parse `lbl|class|tax|` headers (status uint8: 0 ok, 1 shape, 2 class, 3 tax); ok count."""

def gather(src: Buffer, starts: Buffer, lengths: Buffer, out: np.ndarray) -> int:
    """Concatenate the byte ranges src[starts[i]:starts[i]+lengths[i]] into out; bytes written."""

def pack_2bit(seq: Buffer, seq_off: Buffer, out: np.ndarray) -> int:
    """2-bit encode reads seq[seq_off[i]:seq_off[i+1]], each from a byte; bytes written."""

def repack_2bit(
    src: Buffer,
    row_off: Buffer,
    lengths: Buffer,
    order: Buffer,
    lead: int,
    out: np.ndarray,
    fixed: int = -1,
) -> int:
    """Join byte-aligned 2-bit rows in `order` into one stream from base `lead`; end position."""

def front_code(
    hdr: Buffer, hdr_off: Buffer, order: Buffer, prefix_max: int, out: np.ndarray
) -> int:
    """Front-code the ids hdr[hdr_off[r]:hdr_off[r+1]] for r in order; bytes written."""

def feistel(
    x: Buffer, n: int, keys: Buffer, a: int, b: int, inverse: bool, out: np.ndarray
) -> None:
    """out[i] = sampler.permute(x[i]) over [0, n) (uint64; keys and radices a, b)."""

def select_reads(
    cls: Buffer,
    left: np.ndarray,
    need_a: np.ndarray,
    need_b: np.ndarray,
    state: np.ndarray,
    out: np.ndarray,
) -> int:
    """Draw two disjoint exact-size samples per class (out uint8: 0, 1, 2); surplus read or -1."""

def split_batch(
    h0: int,
    k0: int,
    n_buckets: int,
    cls: Buffer,
    rank: Buffer,
    lengths: Buffer,
    packed: Buffer,
    hdr: Buffer,
    hdr_off: Buffer,
    order: np.ndarray,
    out_cls: np.ndarray,
    out_len: np.ndarray,
    out_hlen: np.ndarray,
    out_packed: np.ndarray,
    out_hdr: np.ndarray,
    bounds: np.ndarray,
    class_counts: np.ndarray,
    length_hist: np.ndarray,
) -> tuple[int, int]:
    """Spread a pack batch over the shuffle buckets; (shortest, longest) read length."""

def bucket_layout(
    cls: Buffer,
    n_classes: int,
    keys: Buffer,
    a: int,
    b: int,
    lengths: Buffer,
    by_class: np.ndarray,
    src: np.ndarray,
    phys_len: np.ndarray,
    phys_cls: np.ndarray,
) -> None:
    """A pack bucket's class order and physical (permuted) order, with lengths and classes."""

def write_parts(
    fd: int,
    pieces: Sequence[Sequence[Buffer]],
    bounds: Sequence[Sequence[Buffer]],
    n_buckets: int,
) -> int:
    """Write a bucket-major run file, last bucket first, from per-batch parts; bytes written."""

def pread_ranges(
    fd: int, offsets: Buffer, sizes: Buffer, out: np.ndarray, out_offsets: Buffer
) -> None:
    """Read sizes[i] bytes at offsets[i] of fd into out at out_offsets[i] (zeros past EOF)."""
