"""Shared test helpers: in-process CLI runner and small FASTA/FASTQ writers."""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "2")


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def _reset_readtax_logging():
    """An in-process CLI run binds a handler to that test's captured stderr; drop it after."""
    import logging

    yield
    logging.getLogger("readtax").handlers.clear()


@pytest.fixture
def run(capsys):
    """Call ``readtax.cli.main(argv)`` in-process; returns exit code, stdout and stderr."""
    from readtax.cli import main

    def _run(*argv) -> Result:
        code = main([str(a) for a in argv])
        cap = capsys.readouterr()
        return Result(code, cap.out, cap.err)

    return _run


def random_reads(n: int, length=150, n_classes: int = 5, seed: int = 0):
    """(headers, sequences, class ids) of random reads in the lbl scheme."""
    rng = np.random.default_rng(seed)
    if np.isscalar(length):
        lengths = np.full(n, int(length))
    else:
        lengths = rng.integers(length[0], length[1] + 1, n)
    classes = rng.integers(0, n_classes, n)
    seqs = ["".join(rng.choice(list("ACGT"), int(L))) for L in lengths]
    heads = [f"lbl|{c}|{1000 + c}|45|Sp{c}-{i}/{1 + i % 2}" for i, c in enumerate(classes)]
    return heads, seqs, classes


def write_fasta(path: Path, heads, seqs, *, width: int | None = None, crlf: bool = False,
                compress: bool = False) -> Path:
    nl = "\r\n" if crlf else "\n"
    parts = []
    for h, s in zip(heads, seqs):
        parts.append(f">{h}{nl}")
        if width:
            parts.extend(s[i : i + width] + nl for i in range(0, len(s), width))
        else:
            parts.append(s + nl)
    data = "".join(parts).encode()
    if compress:
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def write_fastq(path: Path, heads, seqs, *, compress: bool = False) -> Path:
    parts = [f"@{h}\n{s}\n+\n{'I' * len(s)}\n" for h, s in zip(heads, seqs)]
    data = "".join(parts).encode()
    if compress:
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def write_mapping(path: Path, n_classes: int = 5) -> Path:
    lines = ["class_id\tlabel_name\ttax_id"]
    lines += [f"{c}\tSpecies_{c}\t{1000 + c}" for c in range(n_classes)]
    path.write_text("\n".join(lines) + "\n")
    return path
