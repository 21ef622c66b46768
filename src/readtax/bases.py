"""Facts about bases, in one place: the alphabet, normalisation, 2-bit codes and complements.

Every table is a 256-entry ``uint8`` lookup indexed by an ASCII byte, so callers apply them to
whole buffers with one fancy-indexing pass. The compiled core's byte tables are generated from
these arrays (``tools/gen_tables.py``), so Python and C cannot disagree.
"""

from __future__ import annotations

import numpy as np

ACGT = b"ACGT"

# Base normalisation: letters are upper-cased, IUPAC codes other than ACGT become N, anything
# that is not a letter maps to 0 and is reported as an error by the reader.
BASE_NORM = np.zeros(256, dtype=np.uint8)
for _c in range(ord("A"), ord("Z") + 1):
    BASE_NORM[_c] = ord("N")
    BASE_NORM[_c + 32] = ord("N")
for _b in ACGT:
    BASE_NORM[_b] = _b
    BASE_NORM[_b + 32] = _b
# Alignment gaps and '*' are tolerated as N rather than rejected: some exporters write them.
BASE_NORM[ord("-")] = ord("N")
BASE_NORM[ord("*")] = ord("N")

# Byte classes the reader's fast path needs: 0 upper-case ACGT, 1 lower-case acgt, 2 other bytes
# that normalise to N, 3 invalid (BASE_NORM is 0).
BASE_CLASS = np.full(256, 3, dtype=np.uint8)
BASE_CLASS[ord("N") == BASE_NORM] = 2
BASE_CLASS[np.frombuffer(ACGT, np.uint8)] = 0
BASE_CLASS[np.frombuffer(ACGT.lower(), np.uint8)] = 1

# 2-bit codes A=0 C=1 G=2 T=3; N (and anything else) gets 4: callers decide how to encode it.
CODE = np.full(256, 4, dtype=np.uint8)
for _i, _c in enumerate(ACGT):
    CODE[_c] = _i

# ASCII complement of upper-case ACGTN; other bytes map to N.
COMPLEMENT = np.full(256, ord("N"), dtype=np.uint8)
for _a, _b in zip(b"ACGTN", b"TGCAN"):
    COMPLEMENT[_a] = _b

# The same on byte pairs: a 16-bit unit maps to its two bases swapped and complemented, so
# reversing a row of units and looking them up reverse-complements two bases per lookup.
_PAIRS = np.arange(1 << 16, dtype=np.uint16).view(np.uint8).reshape(-1, 2)
COMPLEMENT16 = np.ascontiguousarray(COMPLEMENT[_PAIRS[:, ::-1]]).view(np.uint16).reshape(-1)
del _PAIRS, _a, _b, _c, _i


def reverse_complement(seq: np.ndarray) -> np.ndarray:
    """The reverse complement of one read's upper-case ASCII bases."""
    return COMPLEMENT[seq[::-1]]


def reverse_complement_rows(mat: np.ndarray, rows: np.ndarray) -> None:
    """Reverse-complement ``rows`` of a C-contiguous ``[n, width]`` base matrix in place."""
    if mat.shape[1] % 2 == 0:
        units = mat.view(np.uint16)
        units[rows] = COMPLEMENT16[units[rows, ::-1]]
    else:
        mat[rows] = COMPLEMENT[mat[rows, ::-1]]
