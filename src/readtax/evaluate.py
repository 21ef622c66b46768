"""Evaluate a trained run on any labelled data set, streaming.

``evaluate_run(RUN, DATA, EVAL_DIR)`` loads ``RUN/model``, streams DATA (a store or reads files)
through the model and accumulates :class:`~readtax.metrics.StreamingMetrics`: memory does not
grow with the number of reads. The data's classes are mapped onto the run's label map by
class id; classes the model does not know are an error (or skipped with ``skip_unknown``).
Writes ``metrics.json`` (with ``accuracy``), ``per_class.tsv``, ``confusions.tsv``,
``reliability.png`` and, for at most 50 classes, ``confusion.png``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .batch import SeqBatch
from .errors import ModelError, UsageError, require
from .hashing import splitmix64
from .labels import LabelMap
from .loader import quiet_tokenizer_threads
from .metrics import StreamingMetrics, write_report
from .progress import Progress

if TYPE_CHECKING:  # pragma: no cover
    from .train import DistInfo

log = logging.getLogger("readtax.evaluate")
_META = "_readtax_batch"  # key under which Collate passes the SeqBatch along


# -- evaluation data ---------------------------------------------------------------------------


def is_store(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / "manifest.json").is_file()


def _single_store(paths: list[str]) -> str | None:
    stores = [p for p in paths if is_store(p)]
    if not stores:
        return None
    if len(paths) != 1:
        raise UsageError(f"a store ({stores[0]}) must be the only data path, got {len(paths)} paths")
    return stores[0]


def remap_lut(src: LabelMap, dst: LabelMap, counts: np.ndarray | None = None,
              what: str = "data") -> np.ndarray | None:
    """Index table from ``src`` class indices to ``dst`` ones (None when the maps are equal).

    Classes of ``src`` missing from ``dst`` are an error when they have reads (``counts``) or
    when counts are unknown.
    """
    if src == dst:
        return None
    lut = dst.index(src.class_ids)
    missing = np.flatnonzero(lut < 0)
    if counts is not None:
        missing = missing[np.asarray(counts)[missing] > 0]
    if len(missing):
        names = ", ".join(f"{src.names[i]} (class_id {int(src.class_ids[i])})"
                          for i in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ModelError(f"{len(missing)} class(es) of the {what} are not in the model's label "
                         f"map: {names}{more}")
    return lut


class Collate:
    """DataLoader ``collate_fn``: optional label remapping, the model collator, and the SeqBatch
    itself passed along under ``_readtax_batch`` (for ``observe`` and debugging)."""

    def __init__(self, collator, lut: np.ndarray | None = None, keep_batch: bool = True) -> None:
        self.collator = collator
        self.lut = lut
        self.keep_batch = keep_batch

    def __call__(self, batch: SeqBatch) -> dict:
        if self.lut is not None:
            lab = batch.labels
            batch = SeqBatch(batch.seq, batch.offsets,
                             np.where(lab >= 0, self.lut[np.maximum(lab, 0)], -1),
                             batch.index, batch.ids, batch.meta)
        out = dict(self.collator(batch))
        if self.keep_batch:
            out[_META] = batch
        return out


class SampleDataset:
    """An in-memory read sample served as SeqBatches, split by rank and DataLoader worker."""

    def __init__(self, sample: SeqBatch, label_map: LabelMap, *, batch_size: int,
                 rank: int = 0, world_size: int = 1) -> None:
        self.sample = sample
        self.label_map = label_map
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        nb = -(-len(self.sample) // self.batch_size)
        return len(range(self.rank, nb, self.world_size))

    def __iter__(self):
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        n = len(self.sample)
        nb = -(-n // self.batch_size)
        for j, b in enumerate(range(self.rank, nb, self.world_size)):
            if j % nw == wid:
                rows = np.arange(b * self.batch_size, min(n, (b + 1) * self.batch_size))
                yield self.sample.take(rows)


def _as_iterable_dataset(obj):
    """Wrap plain iterables (SampleDataset) so DataLoader treats them as IterableDatasets."""
    from torch.utils.data import IterableDataset

    if isinstance(obj, IterableDataset):
        return obj

    class _Iterable(IterableDataset):
        def __init__(self, inner) -> None:
            self.inner = inner
            self.label_map = inner.label_map

        def __iter__(self):
            return iter(self.inner)

        def __len__(self) -> int:
            return len(self.inner)

    return _Iterable(obj)


def _concat(a: SeqBatch, b: SeqBatch) -> SeqBatch:
    off = np.concatenate([a.offsets, b.offsets[1:] + a.offsets[-1]])
    idx = None if a.index is None or b.index is None else np.concatenate([a.index, b.index])
    return SeqBatch(np.concatenate([a.seq, b.seq]), off, np.concatenate([a.labels, b.labels]),
                    idx)


def sample_reads_per_class(paths: list[str], label_map: LabelMap, per_class: int, seed: int, *,
                           labels: str = "lbl", skip_unknown: bool = False) -> SeqBatch:
    """A uniform sample of ``min(per_class, available)`` reads of every class, one pass.

    Bottom-k sampling: every read gets a hash key of (seed, read number) and each class keeps
    its ``per_class`` smallest keys, merged batch by batch, so memory is O(classes x per_class)
    whatever the size of the files. The result is ordered by class, then key; ``index`` holds
    the read numbers within the concatenated files.
    """
    from .fastx import read_batches
    from .labels import Labeler, make_scheme

    labeler = Labeler(make_scheme(labels), label_map, skip_unknown=skip_unknown)
    c = len(label_map)
    top = np.iinfo(np.uint64).max
    thr = np.full(c, top, dtype=np.uint64)  # a class's largest kept key once it is full
    kept = SeqBatch(np.zeros(0, np.uint8), np.zeros(1, np.int64), np.zeros(0, np.int64),
                    np.zeros(0, np.int64))
    keys_kept = np.zeros(0, np.uint64)
    salt = np.uint64((seed * 0x2545F4914F6CDD1D + 0x5851F42D4C957F2D) % (1 << 64))
    read_no = 0
    for rb in read_batches(paths):
        cls = labeler.classes(rb)
        n = len(rb)
        keys = splitmix64(np.arange(read_no, read_no + n, dtype=np.uint64) ^ salt)
        ok = (cls >= 0) & (keys < thr[np.maximum(cls, 0)])
        ok &= cls >= 0
        if ok.any():
            rows = np.flatnonzero(ok)
            cand = SeqBatch.from_reads(rb, cls).take(rows)
            cand.index = rows.astype(np.int64) + read_no
            kept = _concat(kept, cand)
            keys_kept = np.concatenate([keys_kept, keys[rows]])
            order = np.lexsort((keys_kept, kept.labels))
            lab = kept.labels[order]
            first = np.searchsorted(lab, lab, side="left")
            rank_in_class = np.arange(len(lab)) - first
            sel = order[rank_in_class < per_class]
            sel.sort()
            kept, keys_kept = kept.take(sel), keys_kept[sel]
            counts = np.bincount(kept.labels, minlength=c)
            full = counts >= per_class
            thr[:] = top
            if full.any():
                mx = np.zeros(c, dtype=np.uint64)
                np.maximum.at(mx, kept.labels, keys_kept)
                thr[full] = mx[full]
        read_no += n
    order = np.lexsort((keys_kept, kept.labels))
    return kept.take(order)


def open_eval_data(paths: list[str], label_map: LabelMap, *, batch_size: int, dist: DistInfo,
                   per_class: int | None = None, seed: int = 0, labels: str = "lbl",
                   skip_unknown: bool = False, with_ids: bool = False
                   ) -> tuple[Any, np.ndarray | None]:
    """(dataset, label lut) for evaluation: optionally a fixed stratified sample per class.

    A store is restricted to ``stratified_indices`` of its class array; reads files are
    sampled in one bounded pass (:func:`sample_reads_per_class`). The lut maps the data's class
    indices to ``label_map``'s (None when they already agree).
    """
    store = _single_store(paths)
    if store is not None:
        from .loader import StoreDataset

        probe = StoreDataset(store, batch_size=batch_size, shuffle=False, epochs=1)
        src_map = probe.label_map
        lut = remap_lut(src_map, label_map, _store_class_counts(probe), what=f"store {store}")
        indices = None
        if per_class is not None:
            from .subset import stratified_indices

            indices = stratified_indices(_store_classes(probe), per_class, seed)
        ds = StoreDataset(store, batch_size=batch_size, shuffle=False, epochs=1,
                          rank=dist.rank, world_size=dist.world_size, indices=indices,
                          with_ids=with_ids)
        return ds, lut
    if per_class is not None:
        sample = sample_reads_per_class(list(paths), label_map, per_class, seed, labels=labels,
                                        skip_unknown=skip_unknown)
        return SampleDataset(sample, label_map, batch_size=batch_size, rank=dist.rank,
                             world_size=dist.world_size), None
    from .stream import StreamDataset

    ds = StreamDataset(list(paths), batch_size=batch_size, shuffle=False, rank=dist.rank,
                       world_size=dist.world_size, labels=labels, label_map=label_map,
                       skip_unknown=skip_unknown, epochs=1, with_ids=with_ids)
    return ds, None


def _store_of(ds):
    for name in ("store", "_store"):
        st = getattr(ds, name, None)
        if st is not None:
            return st
    raise UsageError("the store dataset does not expose its store")  # pragma: no cover


def _store_classes(ds) -> np.ndarray:
    """The per-read class array of a store dataset (a memmap, not loaded)."""
    st = _store_of(ds)
    for name in ("classes", "class_index", "labels"):
        arr = getattr(st, name, None)
        if arr is not None:
            return arr() if callable(arr) else arr
    raise UsageError("the store does not expose its per-read classes")  # pragma: no cover


def _store_class_counts(ds) -> np.ndarray | None:
    st = _store_of(ds)
    for name in ("class_counts", "counts"):
        arr = getattr(st, name, None)
        if arr is not None:
            arr = arr() if callable(arr) else arr
            return np.asarray(arr)
    return None



# -- streaming evaluation ----------------------------------------------------------------------




def _autocast(model):
    """bf16/fp16 autocast on CUDA when the model's weights are in half precision."""
    import contextlib

    import torch

    try:
        p = next(model.parameters())
    except StopIteration:  # pragma: no cover - a model without parameters
        return contextlib.nullcontext()
    if p.device.type == "cuda" and p.dtype in (torch.bfloat16, torch.float16):
        return torch.autocast("cuda", dtype=p.dtype)
    return contextlib.nullcontext()


def _to_device(inputs: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if hasattr(v, "to") else v)
            for k, v in inputs.items()}


def stream_eval(model, loader, num_classes: int, *, prepare: Callable[[dict], dict] | None = None,
                max_reads: int | None = None, progress: Progress | None = None,
                top_k: int = 5) -> StreamingMetrics:
    """Run ``model`` over ``loader`` (dicts from a collator) and accumulate the metrics.

    ``prepare`` moves a batch to the model's device (default: the device of its first
    parameter). Keys starting with ``_`` are dropped before the forward pass. Stops after
    ``max_reads`` labelled-or-not reads.
    """
    import torch

    from .metrics import DeviceAccumulator

    device = next(model.parameters()).device
    # Counts stay on the model's device: one host sync for the whole evaluation, not per batch.
    acc = DeviceAccumulator(num_classes, top_k=top_k, device=device)
    was_training = model.training
    model.eval()
    seen = 0
    try:
        with torch.no_grad(), _autocast(model):
            for inputs in loader:
                inputs = {k: v for k, v in inputs.items() if not k.startswith("_")}
                n = int(inputs["input_ids"].shape[0])
                if max_reads is not None and seen + n > max_reads:
                    keep = max_reads - seen
                    inputs = {k: (v[:keep] if hasattr(v, "shape") and v.shape[:1] == (n,) else v)
                              for k, v in inputs.items()}
                    n = keep
                if n <= 0:
                    break
                inputs = prepare(inputs) if prepare is not None else _to_device(inputs, device)
                labels = inputs.get("labels")
                out = model(**inputs)
                logits = out["logits"] if isinstance(out, dict) else out[1]
                loss = out.get("loss") if isinstance(out, dict) else None
                if labels is None:
                    labels = torch.full((n,), -1, dtype=torch.long, device=logits.device)
                acc.update(logits, labels, loss=loss)
                seen += n
                if progress is not None:
                    progress.update(seen)
                if max_reads is not None and seen >= max_reads:
                    break
    finally:
        model.train(was_training)
    return acc.finish()


def evaluate_run(run: str | os.PathLike[str], data: list[str], out_dir: str | os.PathLike[str],
                 *, batch_size: int = 256, num_workers: int = 2, max_reads: int | None = None,
                 labels: str = "lbl", skip_unknown: bool = False, device: str | None = None,
                 top_confusions: int = 50) -> dict[str, Any]:
    """Evaluate ``run`` on ``data``; write the report to ``out_dir``; return the metrics."""
    require("torch")
    import torch
    from torch.utils.data import DataLoader

    from .models import load_classifier, resolve_model_dir
    from .train import DistInfo

    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if max_reads is not None and max_reads < 1:
        raise UsageError(f"--max-reads must be >= 1, got {max_reads}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model_dir = resolve_model_dir(run)
    model = load_classifier(model_dir, device=device, merge_adapters=True)
    label_map = model.label_map
    dataset, lut = open_eval_data(list(data), label_map, batch_size=batch_size, dist=DistInfo(),
                                  per_class=None, labels=labels, skip_unknown=skip_unknown)
    loader = DataLoader(_as_iterable_dataset(dataset), batch_size=None, num_workers=num_workers,
                        collate_fn=Collate(model.collator, lut, keep_batch=False),
                        pin_memory=device.startswith("cuda"),
                        worker_init_fn=quiet_tokenizer_threads if num_workers > 0 else None,
                        generator=torch.Generator().manual_seed(0))
    t0 = time.monotonic()
    with Progress(max_reads, desc="evaluate", unit="reads") as bar:
        metrics = stream_eval(model, loader, len(label_map), max_reads=max_reads, progress=bar)
    elapsed = time.monotonic() - t0
    res = metrics.compute(label_map, top_confusions=top_confusions)
    res["model"] = str(model_dir)
    res["data"] = [str(d) for d in data]
    res["seconds"] = round(elapsed, 3)
    res["reads_per_s"] = round((metrics.total + metrics.unlabelled) / max(elapsed, 1e-9), 1)
    if metrics.total == 0:
        raise UsageError(f"{', '.join(map(str, data))}: no labelled reads to evaluate")
    write_report(res, out_dir, label_map, metrics)
    log.info("accuracy %.4f, macro-F1 %.4f, MCC %.4f on %s reads -> %s", res["accuracy"],
             res["macro_f1"], res["mcc"], f"{res['reads']:,}", out_dir)
    return res


def check_eval_dir(out_dir: str | os.PathLike[str], force: bool) -> Path:
    """The evaluation directory, checked as every output is (its metrics.json stands for it)."""
    from .outputs import check_output_path

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} exists and is not a directory")
    check_output_path(out / "metrics.json", force=force)
    return out
