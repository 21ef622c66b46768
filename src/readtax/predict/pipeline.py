"""The prediction run: model loading, batches through DataLoader workers, scoring, writing.

See :mod:`readtax.predict` for the rules (pairs, thresholds, ranks, Kraken2 merge).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..dist import all_ok, barrier, dist_info, init_process_group, sum_counts
from ..errors import InputError, ModelError, ReadtaxError, UsageError
from ..kraken import format_kraken_lines, strip_mate
from ..labels import LabelMap
from .lines import KrakenMerge, format_tsv, merge_parts, part_path, tsv_header
from .options import Predictions, PredictOptions, PredictSummary
from .pairing import InputSource, UnitBatches, UnitChunk, unit_ids

log = logging.getLogger("readtax.predict")


def load_model(run_or_model_dir: str | os.PathLike[str], device: str = "cpu"):
    """A trained :class:`ReadClassifier` from a run directory or its ``model/`` directory."""
    path = Path(run_or_model_dir)
    if not path.exists():
        raise UsageError(f"{path}: no such run or model directory")
    if not path.is_dir():
        raise ModelError("expected a readtax run directory (with model/) or a model directory",
                         path)
    from ..models import load_classifier, resolve_model_dir

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


def _prepare(b: int, c: UnitChunk, sources: list[InputSource], collator, as_numpy: bool = False
             ) -> _Item:
    from ..batch import SeqBatch

    ids = unit_ids(c, sources)
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
        # through shared-memory segments, which the main process keeps mapped (its RSS grows).
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


# -- scoring and the API -----------------------------------------------------------------------


def _predict_item(item: _Item, scorer: _Scorer, opts: PredictOptions,
                  kraken: KrakenMerge | None) -> Predictions:
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


def classify_sequences(model, seqs: list[str], *, mates: list[str] | None = None,
                       ids: list[str] | None = None, min_confidence: float = 0.0,
                       min_margin: float = 0.0, top_k: int = 1, batch_size: int = 256,
                       device: str | None = None) -> Predictions:
    """Classify in-memory reads (``mates``: the second reads of pairs) as :func:`predict` does.

    ``model`` is a loaded classifier or a run/model directory. Returns one row per read or pair.
    """
    from ..batch import SeqBatch

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
        from ..kraken import load_taxonomy

        tax = load_taxonomy(taxonomy, label_map.tax_ids.tolist())
    sizes = None
    if genome_sizes:
        if not abundance:
            raise UsageError("--genome-sizes needs --abundance")
        from ..abundance import load_genome_sizes

        sizes = load_genome_sizes(genome_sizes, label_map)
    if abundance_plot and not abundance:
        raise UsageError("--abundance-plot needs --abundance")
    from ..sources import open_data

    units = open_data(list(inputs), "predict", batch_size=opts.batch_size, paired=opts.paired,
                      chunk_size=opts.chunk_size).dataset
    kraken = KrakenMerge(with_kraken, label_map, opts.batch_size) if with_kraken else None

    started = init_process_group(world, device)
    out = Path(output)
    kout = Path(kraken_out) if kraken_out else None
    if world > 1:
        tsv_path, k_path = part_path(out, rank, world), kout and part_path(kout, rank, world)
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
            merge_parts([part_path(out, r, world) for r in range(world)], out, opts.batch_size,
                        header)
            if kout:
                merge_parts([part_path(kout, r, world) for r in range(world)], kout,
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
        from ..kraken import write_report

        direct: dict[int, int] = {}
        names: dict[int, str] = {}
        for i, t in enumerate(label_map.tax_ids.tolist()):
            direct[t] = direct.get(t, 0) + int(counts[i])
            names.setdefault(t, label_map.names[i])
        write_report(report, direct, int(counts[-1]), names, tax)
        summary.outputs["report"] = str(report)
    if abundance:
        from ..abundance import abundance_rows, plot_abundance, write_abundance

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
    from ..outputs import atomic_open
    from ..progress import Progress
    from ..sources import data_loader

    ds = _make_stream(units, model.collator, rank, world)
    loader = data_loader(ds, _passthrough, num_workers=opts.num_workers,
                         pin_memory=device.type == "cuda")
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
