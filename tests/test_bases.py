from __future__ import annotations

import numpy as np

from readtax import bases


def _apply(table: np.ndarray, text: bytes) -> bytes:
    return table[np.frombuffer(text, np.uint8)].tobytes()


def test_normalisation_and_classes():
    assert _apply(bases.BASE_NORM, b"ACGTacgtRYnx-*") == b"ACGTACGTNNNNNN"
    assert _apply(bases.BASE_NORM, b"1 >\n") == b"\0\0\0\0"
    assert bases.BASE_CLASS[np.frombuffer(b"AcRn-*1\n", np.uint8)].tolist() == [
        0, 1, 2, 2, 2, 2, 3, 3]


def test_codes_and_complement():
    assert bases.CODE[np.frombuffer(b"ACGTN", np.uint8)].tolist() == [0, 1, 2, 3, 4]
    assert _apply(bases.COMPLEMENT, b"ACGTN") == b"TGCAN"
    assert bases.reverse_complement(np.frombuffer(b"AACGTN", np.uint8)).tobytes() == b"NACGTT"


def test_reverse_complement_rows_even_and_odd_width():
    rng = np.random.default_rng(0)
    for width in (6, 7):
        mat = np.frombuffer(b"ACGTN", np.uint8)[rng.integers(0, 5, (9, width))].copy()
        want = mat.copy()
        rows = np.array([0, 3, 8])
        for r in rows:
            want[r] = bases.reverse_complement(mat[r])
        bases.reverse_complement_rows(mat, rows)
        assert np.array_equal(mat, want)
