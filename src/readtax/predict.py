"""Classify new reads with a trained model: per-read calls, Kraken2-style outputs, abundance.

Streaming
    Inputs (FASTA/FASTQ, plain or gzip, any number) are read in chunks and cut into batches of
    ``batch_size`` *units* (a unit is a read, or a pair of mates); batches are tokenised by the
    model's collator, run through the model under ``torch.inference_mode`` (bf16 autocast on
    CUDA), and only the top-k probabilities of each unit leave the device. Each batch's lines are
    written before the next batch is read, and only per-class counters are kept, so memory does
    not depend on the number of reads.

Pairs
    Mates are classified together: the log-softmax outputs of both mates are summed and
    renormalised, ``p(c | r1, r2) ∝ p(c | r1) p(c | r2)`` (independent mates, uniform prior). A
    pair is one line of output whose id is the first mate's id without ``/1`` or ``/2``. Pairs
    come from two files (R1 R2, zipped in order; counts and ids must match) or from one
    interleaved file (mates ``/1``, ``/2`` — or identical first words — in consecutive records).
    ``paired="auto"`` pairs two input files whose first read ids match, and any file whose
    first two records are mates.

Unclassified
    A unit is called ``unclassified`` when its top probability is below ``min_confidence`` or the
    gap between the two best classes is below ``min_margin``. Reads from species outside the
    label map are the normal case in real samples and a softmax still spreads all their
    probability over known species, so leaving the thresholds at 0 forces a species on every
    read. To choose ``min_confidence`` from ``readtax evaluate`` output on held-out reads:
    ``EVAL_DIR/metrics.json`` holds ``calibration``, one entry per confidence bin with its
    ``reads``, mean ``confidence`` and ``accuracy``. Summing the bins from a threshold X upward
    gives the share of reads still called and their accuracy; take the smallest X whose kept
    reads are accurate enough (``reliability.png`` shows the same). Then check the other side:
    run ``readtax predict`` on reads of species outside the label map (e.g. simulated from
    genomes you left out) and read the share whose ``confidence`` is still >= X — those would
    be wrong calls in a real sample. ``min_margin`` (top-1 minus top-2 probability) helps when
    unknown reads split between close relatives.

Distributed (``torchrun``)
    Every rank reads the whole input (reading is cheap beside the model) and classifies batches
    ``rank, rank + world, ...``; DataLoader workers of a rank split its batches the same way,
    so tokenisation runs in parallel while the order stays fixed. Each rank writes its lines to
    a part file next to the output; rank 0 then interleaves the parts batch by batch, so the
    merged output is in input order exactly as a single process writes it, and renames it into
    place. Part files must therefore be on a filesystem all ranks share (one node, or a shared
    output directory).

``--with-kraken``
    Kraken2 is near-perfect on reads from genomes it indexed and blind on the rest; a model is
    the opposite. The Kraken2 per-read output must list the same reads (pairs: one line per pair)
    in the same order as the input — Kraken2 keeps input order with any number of threads — and
    ids are checked line by line (without ``/1``/``/2``). Kraken2's call is kept when its tax id
    is a tax id of the label map (the first class with that tax id); the model classifies the
    rest, and only the rest is run through the model.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .dist import all_ok, barrier, dist_info, init_process_group, sum_counts
from .errors import InputError, ModelError, ReadtaxError, UsageError
from .fastx import FastxReader, ReadBatch
from .kraken import KrakenReader, format_kraken_lines, strip_mate
from .labels import LabelMap

log = logging.getLogger(__name__)

PAIRED_MODES = ("auto", "on", "off")
DEVICES = ("auto", "cpu", "cuda")
SOURCE_NAMES = ("model", "kraken2")


# -- options and results ----------------------------------------------------------------------


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
        problems = []
        if not 0.0 <= self.min_confidence <= 1.0:
            problems.append(f"min_confidence {self.min_confidence} must be in [0, 1]")
        if not 0.0 <= self.min_margin <= 1.0:
            problems.append(f"min_margin {self.min_margin} must be in [0, 1]")
        if self.top_k < 1:
            problems.append(f"top_k {self.top_k} must be at least 1")
        if self.batch_size < 1:
            problems.append(f"batch_size {self.batch_size} must be at least 1")
        if self.num_workers < 0:
            problems.append(f"num_workers {self.num_workers} must be >= 0")
        if self.paired not in PAIRED_MODES:
            problems.append(f"paired {self.paired!r} is not one of {', '.join(PAIRED_MODES)}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            problems.append(f"device {self.device!r} is not one of {', '.join(DEVICES)}")
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


# -- model ------------------------------------------------------------------------------------


def load_model(run_or_model_dir: str | os.PathLike[str], device: str = "cpu"):
    """A trained :class:`ReadClassifier` from a run directory or its ``model/`` directory."""
    path = Path(run_or_model_dir)
    if not path.exists():
        raise UsageError(f"{path}: no such run or model directory")
    if not path.is_dir():
        raise ModelError("expected a readtax run directory (with model/) or a model directory",
                         path)
    from .models import load_classifier, resolve_model_dir

    try:
        model = load_classifier(resolve_model_dir(path), device=device, merge_adapters=True)
    except ReadtaxError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"not a readtax run or model directory ({type(exc).__name__}: {exc})",
                         path) from None
    model.eval()
    return model


def pick_device(spec: str = "auto"):
    """``auto``: CUDA when present (this rank's GPU under torchrun), else CPU."""
    import torch

    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available")
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if spec == "cuda" \
            else torch.device(spec)
        torch.cuda.set_device(dev)  # NCCL collectives use the current device of each rank
        return dev
    return torch.device(spec)


class _Scorer:
    """Forward pass + mate combination + top-k; only ``[n, k]`` arrays leave the device."""

    def __init__(self, model, device, top_k: int) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.device = device
        self.num_classes = len(model.label_map)
        self.k = min(max(top_k, 2), self.num_classes)

    def __call__(self, inputs: dict, unit_of_row: np.ndarray | None, n_units: int
                 ) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        cuda = self.device.type == "cuda"
        feed = {k: v.to(self.device, non_blocking=cuda) for k, v in inputs.items()
                if k != "labels" and isinstance(v, torch.Tensor)}
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cuda
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            logits = self.model(**feed).logits
        with torch.inference_mode():
            logp = torch.log_softmax(logits.float(), dim=-1)
            if unit_of_row is not None:
                idx = torch.from_numpy(unit_of_row).to(self.device)
                summed = torch.zeros(n_units, logp.shape[1], device=self.device)
                summed.index_add_(0, idx, logp)
                logp = torch.log_softmax(summed, dim=-1)
            vals, top = logp.exp().topk(self.k, dim=-1)
            return vals.cpu().numpy(), top.cpu().numpy()


def decide(top_conf: np.ndarray, top_index: np.ndarray, min_confidence: float,
           min_margin: float) -> np.ndarray:
    """Class index per unit, -1 where the best class is not confident or clear enough."""
    best = top_conf[:, 0]
    second = top_conf[:, 1] if top_conf.shape[1] > 1 else np.zeros_like(best)
    ok = (best >= min_confidence) & (best - second >= min_margin)
    return np.where(ok, top_index[:, 0], -1).astype(np.int64)


# -- reading units ----------------------------------------------------------------------------


@dataclass
class _Source:
    """One input unit stream: a single file, an interleaved file, or an R1/R2 pair of files."""

    paths: tuple[str, ...]
    mode: str  # "single" | "interleaved" | "pair"

    def describe(self) -> str:
        return " + ".join(self.paths)


@dataclass
class _Chunk:
    """Units in input order; the reads of a pair are adjacent rows of ``reads``."""

    reads: ReadBatch
    nmates: np.ndarray  # int64 per unit: 1 or 2
    src: np.ndarray  # int64 per unit: index of its _Source
    rec: np.ndarray  # int64 per unit: 0-based unit number within its source

    def __len__(self) -> int:
        return len(self.nmates)


def _slice_reads(rb: ReadBatch, a: int, b: int) -> ReadBatch:
    """Rows ``a:b`` as a new batch of views; the bases stay lazy until someone needs them."""
    so, ho = rb.seq_offsets, rb.header_offsets
    s0, s1, h0, h1 = int(so[a]), int(so[b]), int(ho[a]), int(ho[b])

    def seq() -> np.ndarray:
        return rb.seq[s0:s1]

    qual = None if rb.qual is None else rb.qual[s0:s1]
    return ReadBatch(seq, so[a : b + 1] - s0, rb.headers[h0:h1], ho[a : b + 1] - h0, qual,
                     rb.source, -1 if rb.first_record < 0 else rb.first_record + a)


def _slice_chunk(c: _Chunk, a: int, b: int) -> _Chunk:
    if a == 0 and b == len(c):
        return c
    uo = np.zeros(len(c) + 1, np.int64)
    np.cumsum(c.nmates, out=uo[1:])
    return _Chunk(_slice_reads(c.reads, int(uo[a]), int(uo[b])), c.nmates[a:b], c.src[a:b],
                  c.rec[a:b])


def _lazy_concat(batches: list[ReadBatch]) -> ReadBatch:
    """Join batches; the bases are joined only when first used (owned batches only)."""
    if len(batches) == 1:
        return batches[0]

    def join(offs: list[np.ndarray]) -> np.ndarray:
        out = [np.zeros(1, np.int64)]
        base = 0
        for o in offs:
            out.append(o[1:] + base)
            base += int(o[-1])
        return np.concatenate(out)

    def seq() -> np.ndarray:
        return np.concatenate([b.seq for b in batches])

    return ReadBatch(seq, join([b.seq_offsets for b in batches]),
                     np.concatenate([b.headers for b in batches]),
                     join([b.header_offsets for b in batches]), None, batches[0].source,
                     batches[0].first_record)


def _concat_chunks(chunks: list[_Chunk]) -> _Chunk:
    if len(chunks) == 1:
        return chunks[0]
    return _Chunk(_lazy_concat([c.reads for c in chunks]),
                  *(np.concatenate([getattr(c, f) for c in chunks]) for f in ("nmates", "src", "rec")))


def _first_ids(path: str, n: int) -> list[str]:
    """Ids of the first ``n`` records (from the first chunk only)."""
    for rb in FastxReader(path, chunk_size=1 << 16):
        return rb.read_ids()[:n]
    return []


def _mates(a: str, b: str) -> bool:
    if a.endswith("/1") and b.endswith("/2"):
        return a[:-2] == b[:-2]
    return a == b


def plan_sources(inputs: list[str], paired: str = "auto") -> list[_Source]:
    """How the inputs pair up (see the module docstring)."""
    from .parallel import check_inputs

    inputs = check_inputs(inputs)
    if paired == "off":
        return [_Source((p,), "single") for p in inputs]
    if paired == "on":
        if len(inputs) == 2:
            return [_Source((inputs[0], inputs[1]), "pair")]
        if len(inputs) == 1:
            return [_Source((inputs[0],), "interleaved")]
        raise UsageError(f"--paired on expects one interleaved file or two files (R1 R2), "
                         f"got {len(inputs)} inputs")
    if len(inputs) == 2:
        a, b = _first_ids(inputs[0], 1), _first_ids(inputs[1], 1)
        if a and b and strip_mate(a[0]) == strip_mate(b[0]):
            log.info("pairing %s with %s (first read ids match)", inputs[0], inputs[1])
            return [_Source((inputs[0], inputs[1]), "pair")]
    out = []
    for p in inputs:
        ids = _first_ids(p, 2)
        inter = len(ids) == 2 and _mates(ids[0], ids[1])
        if inter:
            log.info("%s: interleaved pairs (ids %s, %s)", p, ids[0], ids[1])
        out.append(_Source((p,), "interleaved" if inter else "single"))
    return out


def _source_chunks(k: int, s: _Source, chunk_size: int) -> Iterator[_Chunk]:
    if s.mode == "single":
        for rb in FastxReader(s.paths[0], chunk_size=chunk_size):
            n = len(rb)
            start = rb.first_record
            yield _Chunk(rb, np.ones(n, np.int64), np.full(n, k, np.int64),
                         np.arange(start, start + n, dtype=np.int64))
    elif s.mode == "interleaved":
        yield from _interleaved_chunks(k, s, chunk_size)
    else:
        yield from _pair_chunks(k, s, chunk_size)


def _interleaved_chunks(k: int, s: _Source, chunk_size: int) -> Iterator[_Chunk]:
    carry: ReadBatch | None = None
    done = 0  # pairs so far
    for rb in FastxReader(s.paths[0], chunk_size=chunk_size):
        if carry is not None:
            rb = _lazy_concat([carry, rb])
        even = len(rb) - len(rb) % 2
        carry = _slice_reads(rb, even, len(rb)) if even < len(rb) else None
        if even:
            n = even // 2
            yield _Chunk(_slice_reads(rb, 0, even), np.full(n, 2, np.int64),
                         np.full(n, k, np.int64), np.arange(done, done + n, dtype=np.int64))
            done += n
    if carry is not None:
        raise InputError("odd number of records in an interleaved paired file: the last mate "
                         f"{carry.read_ids()[0]!r} has no partner (use --paired off to classify "
                         "reads singly)", s.paths[0], record=2 * done + 1)


def _pair_chunks(k: int, s: _Source, chunk_size: int) -> Iterator[_Chunk]:
    p1, p2 = s.paths
    it1 = iter(FastxReader(p1, chunk_size=chunk_size))
    it2 = iter(FastxReader(p2, chunk_size=chunk_size))
    b1: ReadBatch | None = None
    b2: ReadBatch | None = None
    done = 0
    while True:
        if b1 is None or len(b1) == 0:
            b1 = next(it1, None)
        if b2 is None or len(b2) == 0:
            b2 = next(it2, None)
        if b1 is None or b2 is None:
            if b1 is None and b2 is None:
                return
            short, long_ = (p1, p2) if b1 is None else (p2, p1)
            raise InputError(f"mate files differ in length: {short} ends after {done} records "
                             f"but {long_} has more", long_, record=done + 1)
        m = min(len(b1), len(b2))
        both = _lazy_concat([_slice_reads(b1, 0, m), _slice_reads(b2, 0, m)])
        order = np.stack([np.arange(m), np.arange(m) + m], axis=1).ravel()
        yield _Chunk(_lazy_take(both, order), np.full(m, 2, np.int64), np.full(m, k, np.int64),
                     np.arange(done, done + m, dtype=np.int64))
        done += m
        b1, b2 = _slice_reads(b1, m, len(b1)), _slice_reads(b2, m, len(b2))


def _lazy_take(rb: ReadBatch, order: np.ndarray) -> ReadBatch:
    """``rb.take(order)`` that gathers the bases only when they are first used."""
    from .fastx import gather_ragged

    hdr, hdr_off = gather_ragged(rb.headers, rb.header_offsets, order)
    lengths = rb.seq_offsets[order + 1] - rb.seq_offsets[order]
    seq_off = np.zeros(len(order) + 1, np.int64)
    np.cumsum(lengths, out=seq_off[1:])

    def seq() -> np.ndarray:
        return gather_ragged(rb.seq, rb.seq_offsets, order)[0]

    return ReadBatch(seq, seq_off, hdr, hdr_off, None, rb.source, -1)


class UnitBatches:
    """The input units of a prediction run, in batches of exactly ``batch_units`` (the last one:
    fewer); each iteration reads the inputs again (see :func:`iter_batches`)."""

    def __init__(self, sources: list[_Source], batch_units: int, chunk_size: int = 4 << 20
                 ) -> None:
        self.sources = sources
        self.batch_units = batch_units
        self.chunk_size = chunk_size

    def __iter__(self) -> Iterator[_Chunk]:
        return iter_batches(self.sources, self.batch_units, self.chunk_size)

    def describe(self) -> str:
        return ", ".join(s.describe() for s in self.sources)


def iter_batches(sources: list[_Source], batch_units: int, chunk_size: int = 4 << 20
                 ) -> Iterator[_Chunk]:
    """All units of all sources in order, in batches of exactly ``batch_units`` (last: fewer)."""
    pending: list[_Chunk] = []
    have = 0
    for k, s in enumerate(sources):
        for chunk in _source_chunks(k, s, chunk_size):
            if not len(chunk):
                continue
            if have + len(chunk) < batch_units:
                pending.append(chunk)
                have += len(chunk)
                continue
            # Complete the pending batch, then cut whole batches from this chunk without copies.
            need = batch_units - have
            yield _concat_chunks([*pending, _slice_chunk(chunk, 0, need)])
            pos = need
            while len(chunk) - pos >= batch_units:
                yield _slice_chunk(chunk, pos, pos + batch_units)
                pos += batch_units
            pending = [_slice_chunk(chunk, pos, len(chunk))] if pos < len(chunk) else []
            have = len(chunk) - pos
    if have:
        yield _concat_chunks(pending)


# -- batches for the model (runs in DataLoader workers) ---------------------------------------


@dataclass
class _Item:
    """A tokenised batch with what the writer needs."""

    batch_no: int
    inputs: dict
    ids: list[str]
    nmates: np.ndarray
    lengths: np.ndarray
    mate_lengths: np.ndarray

    def tensors(self) -> _Item:
        """Turn numpy inputs (from a worker) back into tensors, without copying."""
        import torch

        self.inputs = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                       for k, v in self.inputs.items()}
        return self

    def pin_memory(self) -> _Item:
        """Called by the DataLoader when pinning (CUDA): pin the tensors, not the metadata."""
        self.tensors()
        self.inputs = {k: v.pin_memory() if hasattr(v, "pin_memory") else v
                       for k, v in self.inputs.items()}
        return self


@dataclass
class _End:
    units: int


@dataclass
class _Failed:
    error: ReadtaxError


def _unit_ids(c: _Chunk, sources: list[_Source]) -> list[str]:
    """Unit ids (pairs: without /1 /2), checking that mates belong together."""
    ids = c.reads.read_ids()
    if not (c.nmates == 2).any():
        return ids
    uo = np.zeros(len(c) + 1, np.int64)
    np.cumsum(c.nmates, out=uo[1:])
    out = []
    for u, (r, m) in enumerate(zip(uo[:-1].tolist(), c.nmates.tolist())):
        a = ids[r]
        if m == 2:
            b = ids[r + 1]
            if strip_mate(a) != strip_mate(b):
                s = sources[int(c.src[u])]
                n = int(c.rec[u])
                if s.mode == "pair":
                    raise InputError(f"mate ids differ: record {n + 1} is {b!r} here but {a!r} "
                                     f"in {s.paths[0]}", s.paths[1], record=n + 1)
                raise InputError(f"interleaved mates differ: {a!r} is followed by {b!r}",
                                 s.paths[0], record=2 * n + 2)
            a = strip_mate(a)
        out.append(a)
    return out


def _prepare(b: int, c: _Chunk, sources: list[_Source], collator, as_numpy: bool = False
             ) -> _Item:
    from .batch import SeqBatch

    ids = _unit_ids(c, sources)
    rb = c.reads
    seqs = SeqBatch(rb.seq, rb.seq_offsets, np.full(len(rb), -1, np.int64))
    lengths = rb.lengths
    uo = np.zeros(len(c) + 1, np.int64)
    np.cumsum(c.nmates, out=uo[1:])
    first = lengths[uo[:-1]]
    second = np.where(c.nmates == 2, lengths[np.minimum(uo[:-1] + 1, len(lengths) - 1)], -1)
    inputs = collator(seqs)
    if as_numpy:
        # From a worker, numpy arrays travel pickled through the pipe; torch tensors would go
        # through shared-memory segments, which grew the main process by ~100 MB here.
        inputs = {k: v.numpy() if hasattr(v, "numpy") else v for k, v in inputs.items()}
    return _Item(b, inputs, ids, c.nmates, first, second)


def _make_stream(units: UnitBatches, collator, rank, world):
    """An IterableDataset of this rank's batches; worker w of W takes every W-th of them."""
    import torch.utils.data as tud

    class _PredictStream(tud.IterableDataset):
        def __iter__(self):
            info = tud.get_worker_info()
            w, nw = (info.id, info.num_workers) if info is not None else (0, 1)
            n = 0
            try:
                for b, chunk in enumerate(units):
                    n += len(chunk)
                    if b % world == rank and (b // world) % nw == w:
                        yield _prepare(b, chunk, units.sources, collator, info is not None)
            except ReadtaxError as exc:  # passed on as an item: DataLoader mangles exceptions
                yield _Failed(exc)
                return
            yield _End(n)

    return _PredictStream()


def _passthrough(x):
    return x


# -- writing ----------------------------------------------------------------------------------


def tsv_header(label_map: LabelMap, top_k: int, with_source: bool) -> str:
    cols = ["read_id", "class_index", "label_name", "tax_id", "confidence"]
    for j in range(1, min(top_k, len(label_map)) + 1 if top_k > 1 else 1):
        cols += [f"top{j}_label", f"top{j}_conf"]
    if with_source:
        cols.append("source")
    return "\t".join(cols) + "\n"


def format_tsv(p: Predictions, label_map: LabelMap, top_k: int, with_source: bool) -> str:
    """Per-read TSV lines (no header) for a batch of predictions."""
    n = len(p)
    if not n:
        return ""
    names = np.array([*label_map.names, "unclassified"], dtype=object)
    conf = p.confidence.tolist()
    cols = [p.ids, p.class_index.tolist(), names[p.class_index].tolist(),
            np.append(label_map.tax_ids, 0)[p.class_index].tolist(), conf]
    fmts = ["%s", "%d", "%s", "%d", "%.4f"]
    if top_k > 1:
        na = np.array([*label_map.names, "NA"], dtype=object)
        for j in range(min(top_k, len(label_map), p.top_index.shape[1])):
            cols += [na[p.top_index[:, j]].tolist(), p.top_conf[:, j].tolist()]
            fmts += ["%s", "%.4f"]
    if with_source:
        cols.append(np.array(SOURCE_NAMES, dtype=object)[p.source].tolist())
        fmts.append("%s")
    if np.isnan(p.confidence).any():  # Kraken2's calls have no probability: write NA
        for j, f in enumerate(fmts):
            if f == "%.4f":
                cols[j] = ["NA" if v != v else f"{v:.4f}" for v in cols[j]]
                fmts[j] = "%s"
    # One %-format over the whole batch: about twice as fast as joining fields per line.
    line = "\t".join(fmts) + "\n"
    return (line * n) % tuple(itertools.chain.from_iterable(zip(*cols)))


class _TaxLookup:
    """Tax id -> class index (the first class with that tax id), vectorised."""

    def __init__(self, label_map: LabelMap) -> None:
        tax = label_map.tax_ids
        order = np.argsort(tax, kind="stable")
        keys, first = np.unique(tax[order], return_index=True)
        self.keys = keys
        self.cls = order[first]

    def __call__(self, taxids: np.ndarray) -> np.ndarray:
        if not len(self.keys):
            return np.full(len(taxids), -1, np.int64)
        pos = np.minimum(np.searchsorted(self.keys, taxids), len(self.keys) - 1)
        hit = (self.keys[pos] == taxids) & (taxids > 0)
        return np.where(hit, self.cls[pos], -1)


class _KrakenMerge:
    """Aligns a Kraken2 per-read output with the batches this process sees."""

    def __init__(self, path: str, label_map: LabelMap, batch_units: int) -> None:
        self.reader = KrakenReader(path)
        self.path = path
        self.lookup = _TaxLookup(label_map)
        self.batch_units = batch_units

    def calls(self, batch_no: int, ids: list[str]) -> tuple[np.ndarray, list[str]]:
        """Class index per unit from Kraken2 (-1: not a label-map tax id, use the model), and
        each line's own fifth column (its k-mer runs)."""
        target = batch_no * self.batch_units
        self._skip_to(target)
        block = self.reader.read(len(ids))
        if len(block.ids) < len(ids):
            self._short(target + len(block.ids))
        for j, (kid, rid) in enumerate(zip(block.ids, ids)):
            if kid != strip_mate(rid):
                raise InputError(
                    f"read id {kid!r} does not match input read {target + j + 1} ({rid!r}); the "
                    "Kraken2 output must list the same reads in the same order",
                    self.path, line=block.first_line + j)
        return self.lookup(block.tax_ids), block.kmer_columns

    def _skip_to(self, line: int) -> None:
        if self.reader.line < line:
            self.reader.skip(line - self.reader.line)
            if self.reader.line < line:
                self._short(self.reader.line)

    def _short(self, lines: int):
        raise InputError(f"Kraken2 output ends after {lines} lines but the input has more "
                         "reads (or pairs)", self.path)

    def finish(self, total_units: int) -> None:
        """The file must not hold more lines than the input has units."""
        self._skip_to(total_units)
        if self.reader.skip(1):
            raise InputError(f"Kraken2 output has more lines than the input has reads or pairs "
                             f"({total_units})", self.path, line=total_units + 1)
        self.reader.close()


def _predict_item(item: _Item, scorer: _Scorer, opts: PredictOptions,
                  kraken: _KrakenMerge | None) -> Predictions:
    n = len(item.ids)
    k = scorer.k
    cls = np.full(n, -1, np.int64)
    conf = np.full(n, np.nan, np.float32)
    top_i = np.full((n, k), -1, np.int64)
    top_c = np.full((n, k), np.nan, np.float32)
    source = np.zeros(n, np.uint8)
    run = np.ones(n, bool)
    kmer_columns = None
    if kraken is not None:
        kc, k2_columns = kraken.calls(item.batch_no, item.ids)
        kept = kc >= 0
        # A kept call keeps Kraken2's evidence; the model's calls get the placeholder column.
        kmer_columns = [c if k else "" for c, k in zip(k2_columns, kept.tolist())]
        cls[kept] = kc[kept]
        source[kept] = 1
        run = ~kept
    if run.any():
        inputs = item.inputs
        nmates = item.nmates
        if not run.all():
            rows = np.repeat(run, nmates)
            inputs = {key: v[rows] for key, v in inputs.items() if hasattr(v, "shape")}
            nmates = nmates[run]
        paired = (nmates == 2).any()
        unit_of_row = np.repeat(np.arange(len(nmates)), nmates) if paired else None
        vals, idx = scorer(inputs, unit_of_row, len(nmates))
        cls[run] = decide(vals, idx, opts.min_confidence, opts.min_margin)
        conf[run] = vals[:, 0]
        top_i[run] = idx
        top_c[run] = vals
    return Predictions(item.ids, cls, conf, top_i, top_c, item.lengths, item.mate_lengths, source,
                       kmer_columns)


@dataclass
class _Outputs:
    """Where this process writes per-read lines (final files, or part files under torchrun)."""

    tsv: Path
    kraken: Path | None


def _part_path(out: Path, rank: int, world: int) -> Path:
    return out.parent / f".{out.name}.part{rank}of{world}"


def merge_parts(parts: list[Path], out: str | os.PathLike[str], batch_units: int,
                header: str = "") -> None:
    """Interleave per-rank part files batch by batch (batch b came from rank b mod world).

    Every batch holds exactly ``batch_units`` lines except the last one, so reading that many
    lines from each part in turn restores input order; the output is written atomically.
    """
    from .outputs import atomic_open

    handles = [open(p, encoding="utf-8", newline="\n") for p in parts]  # noqa: SIM115
    try:
        with atomic_open(out) as fh:
            fh.write(header)
            for b in itertools.count():
                lines = list(itertools.islice(handles[b % len(handles)], batch_units))
                fh.writelines(lines)
                if len(lines) < batch_units:
                    break
            for h in handles:
                if h.readline():
                    raise ReadtaxError(f"internal error: part file {h.name} has lines left "
                                       "after the merge")
    finally:
        for h in handles:
            h.close()


# -- the API ----------------------------------------------------------------------------------


def classify_sequences(model, seqs: list[str], *, mates: list[str] | None = None,
                       ids: list[str] | None = None, min_confidence: float = 0.0,
                       min_margin: float = 0.0, top_k: int = 1, batch_size: int = 256,
                       device: str | None = None) -> Predictions:
    """Classify in-memory reads (``mates``: the second reads of pairs) as :func:`predict` does.

    ``model`` is a loaded classifier or a run/model directory. Returns one row per read or pair.
    """
    from .batch import SeqBatch

    opts = PredictOptions(min_confidence=min_confidence, min_margin=min_margin, top_k=top_k,
                          batch_size=batch_size)
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model, "cpu" if device is None else str(pick_device(device)))
    dev = next(model.parameters()).device if device is None else pick_device(device)
    if mates is not None and len(mates) != len(seqs):
        raise UsageError(f"{len(seqs)} reads but {len(mates)} mates")
    if ids is None:
        ids = [str(i) for i in range(len(seqs))]
    elif len(ids) != len(seqs):
        raise UsageError(f"{len(seqs)} reads but {len(ids)} ids")
    model = model.to(dev).eval()
    scorer = _Scorer(model, dev, top_k)
    parts = []
    for a in range(0, len(seqs), batch_size):
        b = min(a + batch_size, len(seqs))
        if mates is None:
            rows = seqs[a:b]
            nmates = np.ones(b - a, np.int64)
        else:
            rows = [s for pair in zip(seqs[a:b], mates[a:b]) for s in pair]
            nmates = np.full(b - a, 2, np.int64)
        batch = SeqBatch.from_strings(rows)
        lengths = batch.lengths
        first = lengths[0::2] if mates is not None else lengths
        second = lengths[1::2] if mates is not None else np.full(b - a, -1, np.int64)
        unit_ids = [strip_mate(i) for i in ids[a:b]] if mates is not None else ids[a:b]
        item = _Item(a // batch_size, model.collator(batch), unit_ids, nmates, first, second)
        parts.append(_predict_item(item, scorer, opts, None))
    out = Predictions.concat(parts)
    k = min(top_k, len(model.label_map))
    out.top_index, out.top_conf = out.top_index[:, :k], out.top_conf[:, :k]
    return out


def predict(model_or_run, inputs: list[str], output: str | os.PathLike[str], *,
            options: PredictOptions | None = None, report: str | None = None,
            kraken_out: str | None = None, abundance: str | None = None,
            genome_sizes: str | None = None, abundance_plot: str | None = None,
            with_kraken: str | None = None, taxonomy: str | None = None,
            progress: bool | None = None) -> PredictSummary:
    """Classify every read of ``inputs`` and write the requested outputs (see module doc).

    ``model_or_run``: a run directory, a model directory or a loaded classifier. Under
    ``torchrun`` (``WORLD_SIZE`` > 1) every rank calls this; rank 0 writes the outputs and gets
    the full summary, other ranks get their own share.
    """
    opts = options or PredictOptions()
    info = dist_info()
    rank, world = info.rank, info.world_size
    device = pick_device(opts.device)
    if isinstance(model_or_run, (str, os.PathLike)):
        model = load_model(model_or_run, str(device))
    else:
        model = model_or_run.to(device).eval()
    label_map: LabelMap = model.label_map
    C = len(label_map)

    # Everything that can fail on bad input is checked before the first read is classified.
    if (report or kraken_out) and (label_map.tax_ids <= 0).any():
        bad = [label_map.names[i] for i in np.flatnonzero(label_map.tax_ids <= 0)[:5].tolist()]
        raise UsageError("Kraken2-format output needs an NCBI tax id for every class; "
                         f"the label map has none for {', '.join(bad)}")
    tax = None
    if taxonomy:
        from .kraken import load_taxonomy

        tax = load_taxonomy(taxonomy, label_map.tax_ids.tolist())
    sizes = None
    if genome_sizes:
        if not abundance:
            raise UsageError("--genome-sizes needs --abundance")
        from .abundance import load_genome_sizes

        sizes = load_genome_sizes(genome_sizes, label_map)
    if abundance_plot and not abundance:
        raise UsageError("--abundance-plot needs --abundance")
    from .sources import open_data

    units = open_data(list(inputs), "predict", batch_size=opts.batch_size, paired=opts.paired,
                      chunk_size=opts.chunk_size).dataset
    kraken = _KrakenMerge(with_kraken, label_map, opts.batch_size) if with_kraken else None

    started = init_process_group(world, device)
    out = Path(output)
    kout = Path(kraken_out) if kraken_out else None
    if world > 1:
        tsv_path, k_path = _part_path(out, rank, world), kout and _part_path(kout, rank, world)
    else:
        tsv_path, k_path = out, kout
    counts = np.zeros(C + 1, np.int64)
    src_counts = np.zeros(2, np.int64)
    state = {"units": 0, "pairs": 0}
    error: BaseException | None = None
    try:
        _run(model, device, units, opts, label_map, kraken, tsv_path, k_path, world == 1,
             rank, world, counts, src_counts, state, progress)
    except BaseException as exc:  # noqa: BLE001 - every rank must reach the collective below
        error = exc
    if world > 1:
        ok = all_ok(error is None, device)
        if error is not None or not ok:
            for p in (tsv_path, k_path):
                if p is not None:
                    with contextlib.suppress(OSError):
                        p.unlink()
            if error is not None:
                raise error
            raise ReadtaxError("prediction failed on another rank (see its message)")
        flat = sum_counts(np.concatenate([counts, src_counts, [state["units"], state["pairs"]]]),
                          device)
        n = len(counts)
        counts, src_counts = flat[:n], flat[n : n + 2]
        state = {"units": int(flat[-2]), "pairs": int(flat[-1])}
        if rank == 0:
            header = tsv_header(label_map, opts.top_k, kraken is not None)
            merge_parts([_part_path(out, r, world) for r in range(world)], out, opts.batch_size,
                        header)
            if kout:
                merge_parts([_part_path(kout, r, world) for r in range(world)], kout,
                            opts.batch_size)
        barrier(device)
        for p in (tsv_path, k_path):
            if p is not None:
                with contextlib.suppress(OSError):
                    p.unlink()
        if started:
            import torch.distributed as tdist

            tdist.destroy_process_group()
    elif error is not None:
        raise error

    summary = PredictSummary(state["units"], state["pairs"], counts, int(src_counts[1]),
                             int(src_counts[0]), {"predictions": str(out)})
    if rank != 0:
        return summary
    if kout:
        summary.outputs["kraken"] = str(kout)
    if report:
        from .kraken import write_report

        direct: dict[int, int] = {}
        names: dict[int, str] = {}
        for i, t in enumerate(label_map.tax_ids.tolist()):
            direct[t] = direct.get(t, 0) + int(counts[i])
            names.setdefault(t, label_map.names[i])
        write_report(report, direct, int(counts[-1]), names, tax)
        summary.outputs["report"] = str(report)
    if abundance:
        from .abundance import abundance_rows, plot_abundance, write_abundance

        rows = abundance_rows(counts[:-1], label_map, sizes)
        write_abundance(abundance, rows)
        summary.outputs["abundance"] = str(abundance)
        if abundance_plot:
            plot_abundance(abundance_plot, rows, unclassified=int(counts[-1]))
            summary.outputs["abundance_plot"] = str(abundance_plot)
    _log_summary(summary, kraken is not None)
    return summary


def _run(model, device, units, opts, label_map, kraken, tsv_path, k_path, with_header, rank,
         world, counts, src_counts, state, progress) -> None:
    """This process's share: read, classify, write lines, count."""
    import torch.utils.data as tud

    from .loader import quiet_tokenizer_threads
    from .outputs import atomic_open
    from .progress import Progress

    ds = _make_stream(units, model.collator, rank, world)
    loader = tud.DataLoader(ds, batch_size=None, num_workers=opts.num_workers,
                            collate_fn=_passthrough, pin_memory=device.type == "cuda",
                            worker_init_fn=(quiet_tokenizer_threads if opts.num_workers > 0
                                            else None),
                            persistent_workers=False)
    scorer = _Scorer(model, device, opts.top_k)
    C = len(label_map)
    total_units = None
    opener = atomic_open if world == 1 else _plain_open
    bar = Progress(None, "predict", unit="reads", enabled=progress)
    with contextlib.ExitStack() as stack:
        fh = stack.enter_context(opener(tsv_path))
        kh = stack.enter_context(opener(k_path)) if k_path is not None else None
        if with_header:
            fh.write(tsv_header(label_map, opts.top_k, kraken is not None))
        for item in loader:
            if isinstance(item, _Failed):
                raise item.error
            if isinstance(item, _End):
                total_units = item.units
                continue
            p = _predict_item(item.tensors(), scorer, opts, kraken)
            fh.write(format_tsv(p, label_map, opts.top_k, kraken is not None))
            if kh is not None:
                kh.write(format_kraken_lines(p.ids, p.tax_ids(label_map), p.lengths,
                                             p.mate_lengths, p.kmer_columns))
            counts += np.bincount(np.where(p.class_index < 0, C, p.class_index),
                                  minlength=C + 1)
            src_counts += np.bincount(p.source, minlength=2)[:2]
            state["units"] += len(p)
            state["pairs"] += int((p.mate_lengths >= 0).sum())
            bar.update(state["units"])
        bar.close()
        if total_units is None:
            raise ReadtaxError("internal error: the reader stopped without an end marker")
        if total_units == 0:
            raise InputError("no reads in the inputs", units.describe())
        if kraken is not None:
            kraken.finish(total_units)


@contextlib.contextmanager
def _plain_open(path: Path):
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        yield fh


def _log_summary(s: PredictSummary, with_kraken: bool) -> None:
    units = max(s.units, 1)
    what = f"{s.units:,} reads" if not s.pairs else f"{s.units:,} reads/pairs ({s.pairs:,} pairs)"
    log.info("classified %s: %s called (%.1f%%), %s unclassified", what, f"{s.classified:,}",
             100.0 * s.classified / units, f"{s.unclassified:,}")
    if with_kraken:
        log.info("calls from Kraken2: %s, from the model: %s", f"{s.from_kraken:,}",
                 f"{s.from_model:,}")
