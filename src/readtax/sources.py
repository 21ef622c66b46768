"""One way from a DATA argument to a dataset, for training, evaluation and prediction.

:func:`open_data` is the only place that decides what DATA is: a store directory (it must be
the only argument) gives a :class:`readtax.loader.StoreDataset`, FASTA/FASTQ files give a
:class:`readtax.stream.StreamDataset`, an in-memory :class:`SampleDataset` (an evaluation
sample of reads files) or, for prediction, the input units of :mod:`readtax.predict.pairing`
(reads, or pairs of mates, in input order). ``purpose`` says what the data is for:

``train``
    endless, shuffled, drop-last batches of this process's share; RC augmentation and class
    balancing as configured.
``eval``
    one ordered pass, optionally over a fixed sample of ``per_class`` reads of every class;
    the data's classes are mapped onto the model's label map (:attr:`DataSource.lut`).
``predict``
    unlabelled units in input order, in batches of exactly ``batch_size`` units.

Also here: :func:`data_loader`, the one ``DataLoader`` set-up that train, evaluate and predict
share; :class:`Collate`, the ``collate_fn`` that runs the model's collator and passes the
:class:`~readtax.batch.SeqBatch` along; and the validation sample of reads files
(:func:`sample_reads_per_class`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .batch import SeqBatch
from .dist import DistInfo
from .errors import ModelError, UsageError, require
from .hashing import splitmix64
from .labels import LabelMap
from .store import is_store

torch_data = require("torch.utils.data")

PURPOSES = ("train", "eval", "predict")
BATCH_KEY = "_readtax_batch"  # key under which Collate passes the SeqBatch along
SINGLE = DistInfo()  # one process: the whole data


@dataclass
class DataSource:
    """What :func:`open_data` opened: the dataset, its kind and its classes.

    ``kind`` is ``"store"`` or ``"reads"``; ``label_map`` the data's own classes (None for reads
    files without a mapping, and for prediction); ``lut`` maps the data's class indices onto the
    model's (evaluation of a store whose label map differs; None when they agree).
    """

    dataset: Any
    kind: str
    label_map: LabelMap | None = None
    lut: np.ndarray | None = None


def data_paths(data: str | os.PathLike[str] | list) -> list[str]:
    """DATA as a non-empty list of path strings."""
    paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    if not paths:
        raise UsageError("no input data given")
    return [str(p) for p in paths]


def store_path(paths: list[str]) -> str | None:
    """The store directory DATA names, or None for reads files (a store must come alone; a
    directory without a manifest is neither)."""
    stores = [p for p in paths if is_store(p)]
    if stores:
        if len(paths) > 1:
            raise UsageError(f"a store directory ({stores[0]}) must be the only DATA argument, "
                             f"got {len(paths)} paths")
        return stores[0]
    for p in paths:
        if Path(p).is_dir():
            raise UsageError(f"{p}: a directory without manifest.json is not a readtax store "
                             "(make one with 'readtax pack', or give FASTA/FASTQ files)")
    return None


def open_data(data: str | os.PathLike[str] | list, purpose: str, *, batch_size: int,
              label_map: LabelMap | None = None, dist: DistInfo = SINGLE, seed: int = 0,
              labels: str = "lbl", skip_unknown: bool = False, with_ids: bool = False,
              augment_rc: bool = False, balance_temperature: float | None = None,
              shuffle_buffer: int | None = None, per_class: int | None = None,
              paired: str = "auto", chunk_size: int = 4 << 20) -> DataSource:
    """Open DATA for ``purpose`` (see the module docstring).

    ``label_map``: train: the class mapping of reads files (a store's must agree with it);
    eval: the model's classes. ``with_ids``: read ids in the batches (store batches of training
    carry their read numbers instead). ``per_class``/``seed``: the evaluation sample.
    ``paired``/``chunk_size``: how prediction inputs pair up and how much is parsed at once.
    """
    if purpose not in PURPOSES:
        raise UsageError(f"purpose {purpose!r} is not one of {', '.join(PURPOSES)}")
    if purpose == "predict":
        from .predict.pairing import UnitBatches, plan_sources

        # Prediction reads files only: plan_sources checks them (and refuses a directory).
        plan = plan_sources([data] if isinstance(data, (str, os.PathLike)) else list(data),
                            paired)
        return DataSource(UnitBatches(plan, batch_size, chunk_size), "reads")
    paths = data_paths(data)
    store = store_path(paths)
    if purpose == "train":
        return _open_train(paths, store, batch_size=batch_size, label_map=label_map, dist=dist,
                           seed=seed, labels=labels, skip_unknown=skip_unknown,
                           with_ids=with_ids, augment_rc=augment_rc,
                           balance_temperature=balance_temperature,
                           shuffle_buffer=shuffle_buffer)
    if label_map is None:
        raise UsageError("evaluation needs the model's label map")
    return _open_eval(paths, store, label_map, batch_size=batch_size, dist=dist,
                      per_class=per_class, seed=seed, labels=labels, skip_unknown=skip_unknown,
                      with_ids=with_ids)


def _open_train(paths: list[str], store: str | None, *, batch_size: int,
                label_map: LabelMap | None, dist: DistInfo, seed: int, labels: str,
                skip_unknown: bool, with_ids: bool, augment_rc: bool,
                balance_temperature: float | None, shuffle_buffer: int | None) -> DataSource:
    common: dict[str, Any] = dict(
        batch_size=batch_size, seed=seed, shuffle=True, drop_last=True, rank=dist.rank,
        world_size=dist.world_size, augment_rc=augment_rc, epochs=None)
    if store is not None:
        from .loader import StoreDataset

        ds = StoreDataset(store, balance_temperature=balance_temperature, label_map=label_map,
                          **common)
        return DataSource(ds, "store", getattr(ds, "label_map", None) or label_map)
    from .stream import StreamDataset

    extra = {} if shuffle_buffer is None else {"shuffle_buffer": shuffle_buffer}
    ds = StreamDataset(paths, labels=labels, label_map=label_map, skip_unknown=skip_unknown,
                       with_ids=with_ids, **extra, **common)
    return DataSource(ds, "reads", getattr(ds, "label_map", None) or label_map)


def _open_eval(paths: list[str], store: str | None, label_map: LabelMap, *, batch_size: int,
               dist: DistInfo, per_class: int | None, seed: int, labels: str,
               skip_unknown: bool, with_ids: bool) -> DataSource:
    """A store is restricted to ``stratified_indices`` of its class array; reads files are
    sampled in one bounded pass (:func:`sample_reads_per_class`)."""
    if store is not None:
        from .loader import StoreDataset
        from .store import ReadStore

        rs = ReadStore(store)
        lut = remap_lut(rs.label_map, label_map, rs.class_counts, what=f"store {store}")
        indices = None
        if per_class is not None:
            from .subset import stratified_indices

            indices = stratified_indices(rs.classes, per_class, seed)
        ds = StoreDataset(rs, batch_size=batch_size, shuffle=False, epochs=1, rank=dist.rank,
                          world_size=dist.world_size, indices=indices, with_ids=with_ids)
        return DataSource(ds, "store", rs.label_map, lut)
    if per_class is not None:
        sample = sample_reads_per_class(paths, label_map, per_class, seed, labels=labels,
                                        skip_unknown=skip_unknown)
        ds = SampleDataset(sample, label_map, batch_size=batch_size, rank=dist.rank,
                           world_size=dist.world_size)
        return DataSource(ds, "reads", label_map)
    from .stream import StreamDataset

    ds = StreamDataset(paths, batch_size=batch_size, shuffle=False, rank=dist.rank,
                       world_size=dist.world_size, labels=labels, label_map=label_map,
                       skip_unknown=skip_unknown, epochs=1, with_ids=with_ids)
    return DataSource(ds, "reads", label_map)


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
    itself passed along under :data:`BATCH_KEY` (for ``observe`` and debugging)."""

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
            out[BATCH_KEY] = batch
        return out


class SampleDataset(torch_data.IterableDataset):
    """An in-memory read sample served as SeqBatches, split by rank and DataLoader worker."""

    def __init__(self, sample: SeqBatch, label_map: LabelMap, *, batch_size: int,
                 rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        self.sample = sample
        self.label_map = label_map
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        nb = -(-len(self.sample) // self.batch_size)
        return len(range(self.rank, nb, self.world_size))

    def __iter__(self) -> Iterator[SeqBatch]:
        info = torch_data.get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        n = len(self.sample)
        nb = -(-n // self.batch_size)
        for j, b in enumerate(range(self.rank, nb, self.world_size)):
            if j % nw == wid:
                rows = np.arange(b * self.batch_size, min(n, (b + 1) * self.batch_size))
                yield self.sample.take(rows)


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
            kept = SeqBatch.concat([kept, cand])
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


def quiet_tokenizer_threads(_worker_id: int) -> None:
    """DataLoader worker start: the Rust tokenizer's own thread pool off. Each worker already
    is a parallel tokeniser; a pool per worker oversubscribes the cores, and one used before a
    fork makes the library warn or deadlock."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def data_loader(dataset, collate_fn, *, num_workers: int, pin_memory: bool,
                seed: int | None = None, persistent: bool = False,
                prefetch_factor: int | None = None):
    """A ``DataLoader`` over a dataset that batches (and shards) itself: ``batch_size=None``,
    workers start with the tokenizer's thread pool off. ``seed`` gives the loader a private
    generator, so that starting an iterator draws nothing from the global RNG (a resumed
    run's dropout masks then match an uninterrupted run's); ``persistent`` and
    ``prefetch_factor`` apply only with workers."""
    workers = num_workers > 0
    generator = None
    if seed is not None:
        import torch

        generator = torch.Generator()
        generator.manual_seed(seed)
    return torch_data.DataLoader(
        dataset, batch_size=None, num_workers=num_workers, collate_fn=collate_fn,
        pin_memory=pin_memory, generator=generator,
        worker_init_fn=quiet_tokenizer_threads if workers else None,
        persistent_workers=persistent and workers,
        prefetch_factor=prefetch_factor if workers else None)
