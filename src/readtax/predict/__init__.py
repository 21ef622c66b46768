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

Modules
    :mod:`~readtax.predict.pipeline` (the run: batches, workers, scoring),
    :mod:`~readtax.predict.pairing` (input units: pairing, mates, batches of units),
    :mod:`~readtax.predict.lines` (TSV lines, the Kraken2 merge, merging rank part files) and
    :mod:`~readtax.predict.options` (options and results). This package's names are the API.
"""

from __future__ import annotations

from .lines import format_tsv, merge_parts, tsv_header
from .options import DEVICES, PAIRED_MODES, Predictions, PredictOptions, PredictSummary
from .pairing import InputSource, UnitBatches, iter_batches, plan_sources
from .pipeline import classify_sequences, decide, load_model, pick_device, predict

__all__ = [
    "DEVICES",
    "PAIRED_MODES",
    "InputSource",
    "PredictOptions",
    "PredictSummary",
    "Predictions",
    "UnitBatches",
    "classify_sequences",
    "decide",
    "format_tsv",
    "iter_batches",
    "load_model",
    "merge_parts",
    "pick_device",
    "plan_sources",
    "predict",
    "tsv_header",
]
