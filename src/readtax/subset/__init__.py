"""Exact per-class random subsets of read sets, in two streaming passes (``readtax subset``).

How reads are chosen (memory O(classes x work units), never O(reads)):

1. The inputs are cut into *work units*: byte ranges of a fixed size for plain files (64 MB,
   or more for inputs over 32 GB so that there are at most 512 units), whole files for gzip.
   Units depend on the inputs only, never on the number of workers, so the result for a seed
   is the same byte for byte with any ``--workers``.
2. Pass 1 counts reads per class in every unit, in parallel (:mod:`~readtax.subset.counting`).
3. Per class, the train quota ``min(N, available)`` is split over the units with a sequential
   (multivariate) hypergeometric draw, then the validation quota over the reads each unit has
   left. Train is filled first: a class with fewer than N + M reads gives ``min(N, available)``
   reads to train and the rest (at most M) to validation (:mod:`~readtax.subset.selection`).
4. Pass 2 reads every unit again (:mod:`~readtax.subset.writing`). For each batch the number
   of train and validation reads of each class is drawn hypergeometrically from (reads of the
   class in this batch, reads of the class left in the unit, quota left), and that many reads
   of the class in the batch are picked uniformly (random keys, ranked within the class). All of
   it is whole-array numpy work per batch; each unit has its own generator keyed by (seed,
   unit).

Every step draws a uniformly random subset given the previous one, so the union is a uniform
random subset of exactly the quota for every class, and train and validation are disjoint.

Output keeps input order (each unit appends its records in unit order) unless ``shuffle``:
then a bucket shuffle through temporary files gives a uniformly random order with bounded
memory. Output names ending in ``.gz`` are gzip (one member per unit or bucket, compressed in
parallel; any gzip reader reads multi-member files). Outputs appear under their final name only
when complete. The verb itself is :func:`~readtax.subset.pipeline.subset`.
"""

from __future__ import annotations

from .counting import plan_units, read_class_list
from .pipeline import SubsetSummary, subset
from .selection import BlockSelector, CountMismatch, split_quota, stratified_indices
from .writing import format_records, record_sizes

__all__ = [
    "BlockSelector", "CountMismatch", "SubsetSummary", "format_records", "plan_units",
    "read_class_list", "record_sizes", "split_quota", "stratified_indices", "subset",
]
