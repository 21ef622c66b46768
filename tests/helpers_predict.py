"""Helpers for prediction tests: a tiny deterministic classifier and fast read writers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from readtax.batch import SeqBatch
from readtax.labels import LabelMap

CODES = np.full(256, 5, dtype=np.int64)
for _i, _c in enumerate(b"ACGT"):
    CODES[_c] = _i + 1


class BaseCollator:
    """A C G T N -> 1..5, padding 0 (what the real base-level collators do)."""

    def __call__(self, batch: SeqBatch) -> dict:
        lengths = batch.lengths
        width = max(int(lengths.max(initial=0)), 1)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        rows = np.repeat(np.arange(len(batch)), lengths)
        cols = np.arange(len(batch.seq)) - np.repeat(batch.offsets[:-1], lengths)
        ids[rows, cols] = CODES[batch.seq]
        mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
                "labels": torch.full((len(batch),), -100)}


class TinyModel(torch.nn.Module):
    """Mean of per-base class scores: base composition decides the class (deterministic)."""

    def __init__(self, label_map: LabelMap, seed: int = 0, scale: float = 8.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.emb = torch.nn.Embedding(6, len(label_map))
        with torch.no_grad():
            self.emb.weight.copy_(torch.randn(6, len(label_map), generator=g) * scale)
        self.label_map = label_map
        self.collator = BaseCollator()

    def forward(self, input_ids, attention_mask=None, **_):
        m = attention_mask.unsqueeze(-1).float()
        logits = (self.emb(input_ids) * m).sum(1) / m.sum(1).clamp(min=1.0)
        return SimpleNamespace(logits=logits)


def label_map(n: int = 5) -> LabelMap:
    return LabelMap(np.arange(n), [f"Species_{c}" for c in range(n)], 1000 + np.arange(n))


def direct_probs(model, seqs: list[str]) -> np.ndarray:
    """Softmax of the model's logits, computed the plain way."""
    with torch.no_grad():
        out = model(**model.collator(SeqBatch.from_strings(seqs)))
    return torch.softmax(out.logits.float(), dim=-1).numpy()


def direct_logp(model, seqs: list[str]) -> np.ndarray:
    with torch.no_grad():
        out = model(**model.collator(SeqBatch.from_strings(seqs)))
    return torch.log_softmax(out.logits.float(), dim=-1).numpy()


def random_seqs(n: int, lo: int = 40, hi: int = 160, seed: int = 0) -> list[str]:
    """Reads with varied base composition so that the tiny model's calls vary."""
    rng = np.random.default_rng(seed)
    out = []
    lengths = rng.integers(lo, hi + 1, n)
    for L in lengths.tolist():
        p = rng.dirichlet(np.ones(4))
        out.append(bytes(np.frombuffer(b"ACGT", np.uint8)[rng.choice(4, L, p=p)]).decode())
    return out


def write_reads(path: Path, ids: list[str], seqs: list[str], fastq: bool = False) -> Path:
    if fastq:
        text = "".join(f"@{i}\n{s}\n+\n{'I' * len(s)}\n" for i, s in zip(ids, seqs))
    else:
        text = "".join(f">{i}\n{s}\n" for i, s in zip(ids, seqs))
    path.write_text(text)
    return path


def write_big_fasta(path: Path, n: int, length: int = 150, seed: int = 0) -> Path:
    """``n`` random reads, written block-wise with numpy (fast enough for 10^6 reads)."""
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"ACGT", np.uint8)
    with open(path, "wb") as fh:
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            seq = alphabet[rng.integers(0, 4, (m, length))]
            head = np.array([f">r{start + i:09d}" for i in range(m)], dtype=f"S{11}")
            rows = np.empty((m, 11 + 1 + length + 1), np.uint8)
            rows[:, :11] = np.frombuffer(head.tobytes(), np.uint8).reshape(m, 11)
            rows[:, 11] = 10
            rows[:, 12 : 12 + length] = seq
            rows[:, -1] = 10
            fh.write(rows.tobytes())
    return path


def read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = Path(path).read_text().splitlines()
    return lines[0].split("\t"), [ln.split("\t") for ln in lines[1:]]


def _torchrun_main(argv: list[str]) -> int:
    """Entry point for the torchrun test: predict with the tiny model on every rank."""
    import json

    from readtax.predict import PredictOptions, predict

    cfg = json.loads(argv[0])
    model = TinyModel(label_map(cfg.pop("classes", 5)))
    opts = PredictOptions(**cfg.pop("options"))
    inputs = cfg.pop("inputs")
    output = cfg.pop("output")
    predict(model, inputs, output, options=opts, **cfg)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_torchrun_main(sys.argv[1:]))
