"""readtax stats: reads, lengths, non-ACGT bases and per-class counts of a read set or store."""

from __future__ import annotations

import logging
import sys

from . import add_label_arguments

log = logging.getLogger("readtax")

HELP = "summarise reads (FASTA/FASTQ, plain or gzip) or a packed store"


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="FASTA/FASTQ files or one store")
    add_label_arguments(p, allow_none=True)
    p.add_argument("--json", help="write all statistics as JSON here")
    p.add_argument("--tsv", help="write per-class counts as TSV here")
    p.add_argument("--plot", help="write a PNG of class sizes and read lengths here")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--force", action="store_true", help="overwrite existing --json/--tsv/--plot")


def run(args) -> int:
    from .. import stats
    from ..errors import UsageError
    from ..labels import load_mapping, report_skipped
    from ..outputs import check_output_path
    from ..store import is_store

    given = [o for o in (args.json, args.tsv, args.plot) if o]
    if len(set(given)) != len(given):
        raise UsageError("two outputs have the same name")
    for o in given:  # before the (long) pass over the input, not after it
        check_output_path(o, force=args.force, inputs=args.inputs)
    label_map = load_mapping(args.mapping) if args.mapping else None
    if len(args.inputs) == 1 and is_store(args.inputs[0]):
        from ..store import ReadStore, store_stats

        store = ReadStore(args.inputs[0], mapping=label_map)
        st = store_stats(store)
        label_map = store.label_map
    else:
        scheme = None if args.labels == "none" else args.labels
        st = stats.compute_stats(args.inputs, scheme=scheme, label_map=label_map,
                                 skip_unknown=args.skip_unknown,
                                 skip_bad=args.skip_bad, workers=args.workers)
    sys.stdout.write(stats.format_summary(st, label_map))
    report_skipped(0, st.skipped_bad)  # unknown-class skips are part of the summary above
    if args.json:
        stats.write_json(st, args.json, label_map)
    if args.tsv:
        stats.write_class_tsv(st, args.tsv, label_map)
    if args.plot:
        stats.plot_stats(st, args.plot, label_map)
    return 0
