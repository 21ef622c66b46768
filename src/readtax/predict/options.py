"""What a prediction run is asked for (:class:`PredictOptions`) and what it gives back: the
calls of a batch of units (:class:`Predictions`) and the run's :class:`PredictSummary`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError
from ..labels import LabelMap

PAIRED_MODES = ("auto", "on", "off")
DEVICES = ("auto", "cpu", "cuda")
SOURCE_NAMES = ("model", "kraken2")


@dataclass
class PredictOptions:
    """How reads are called and batched (see the module docstring for the rules)."""

    min_confidence: float = 0.0
    min_margin: float = 0.0
    top_k: int = 1
    batch_size: int = 256  # units (reads or pairs) per batch; a pair batch runs 2x sequences
    paired: str = "auto"
    num_workers: int = 0
    device: str = "auto"
    chunk_size: int = 4 << 20  # input bytes parsed at once

    def __post_init__(self) -> None:
        checks = [  # (holds, what is wrong otherwise), every problem reported at once
            (0.0 <= self.min_confidence <= 1.0,
             f"min_confidence {self.min_confidence} must be in [0, 1]"),
            (0.0 <= self.min_margin <= 1.0, f"min_margin {self.min_margin} must be in [0, 1]"),
            (self.top_k >= 1, f"top_k {self.top_k} must be at least 1"),
            (self.batch_size >= 1, f"batch_size {self.batch_size} must be at least 1"),
            (self.num_workers >= 0, f"num_workers {self.num_workers} must be >= 0"),
            (self.paired in PAIRED_MODES,
             f"paired {self.paired!r} is not one of {', '.join(PAIRED_MODES)}"),
            (self.device in DEVICES or str(self.device).startswith("cuda:"),
             f"device {self.device!r} is not one of {', '.join(DEVICES)}"),
        ]
        problems = [msg for holds, msg in checks if not holds]
        if problems:
            raise UsageError("; ".join(problems))


@dataclass
class Predictions:
    """Calls for a run of units (reads or pairs), one row each.

    ``class_index`` is -1 for unclassified units; ``confidence`` is the top probability (NaN
    where Kraken2's call was kept); ``top_index``/``top_conf`` the best classes, best first;
    ``mate_lengths`` is -1 for single reads; ``source`` 0 = model, 1 = Kraken2;
    ``kmer_columns`` Kraken2's own fifth column for its kept calls ("" elsewhere), or None.
    """

    ids: list[str]
    class_index: np.ndarray
    confidence: np.ndarray
    top_index: np.ndarray
    top_conf: np.ndarray
    lengths: np.ndarray
    mate_lengths: np.ndarray
    source: np.ndarray
    kmer_columns: list[str] | None = None

    def __len__(self) -> int:
        return len(self.class_index)

    def label_names(self, label_map: LabelMap) -> list[str]:
        names = np.array([*label_map.names, "unclassified"], dtype=object)
        return names[self.class_index].tolist()  # -1 picks the appended "unclassified"

    def tax_ids(self, label_map: LabelMap) -> np.ndarray:
        return np.append(label_map.tax_ids, 0)[self.class_index]

    @classmethod
    def concat(cls, parts: list[Predictions]) -> Predictions:
        if not parts:
            z = np.zeros(0, np.int64)
            return cls([], z, np.zeros(0, np.float32), np.zeros((0, 1), np.int64),
                       np.zeros((0, 1), np.float32), z, z, np.zeros(0, np.uint8))
        kmers = None
        if any(p.kmer_columns is not None for p in parts):
            kmers = [k for p in parts for k in (p.kmer_columns or [""] * len(p))]
        return cls(
            [i for p in parts for i in p.ids],
            *(np.concatenate([getattr(p, f) for p in parts])
              for f in ("class_index", "confidence", "top_index", "top_conf", "lengths",
                        "mate_lengths", "source")),
            kmers,
        )


@dataclass
class PredictSummary:
    """What a prediction run did; ``counts[c]`` units called class c, ``counts[-1]`` unclassified."""

    units: int
    pairs: int
    counts: np.ndarray
    from_kraken: int = 0
    from_model: int = 0
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def classified(self) -> int:
        return int(self.counts[:-1].sum())

    @property
    def unclassified(self) -> int:
        return int(self.counts[-1])
