"""readtax predict: classify reads with a trained run; Kraken2-style outputs and abundance."""

from __future__ import annotations

import argparse

HELP = "classify reads with a trained model (per-read TSV, Kraken2 output/report, abundance)"

EPILOG = """\
per-read TSV columns: read_id, class_index (-1 = unclassified), label_name, tax_id (0 =
unclassified), confidence (top probability; NA where Kraken2's call was kept), then with
--top-k K > 1: top1_label, top1_conf, ..., topK_label, topK_conf (the model's K best classes,
whatever the thresholds), then with --with-kraken: source (model or kraken2). A pair is one
line whose id has no /1 /2; its probabilities combine both mates (log-probabilities summed).

--kraken-out columns: C/U, read id (first word), tax id (0 = unclassified), length (150, or
150|150 for a pair), k-mer runs. readtax has no k-mer hits: column 5 is a placeholder, one
taxid:count run per mate covering all its k-mers (k = 35), e.g. 562:116, in Kraken2's syntax; it
carries no positional evidence. With --with-kraken, reads whose Kraken2 call is kept keep
Kraken2's own column 5. KrakenTools, Krona, Pavian and Bracken read columns 1-4 only.

choosing --min-confidence: reads of species outside the label map still get a species, with
full softmax confidence spread over the known ones. In `readtax evaluate` output
(EVAL_DIR/metrics.json, "calibration": reads, mean confidence and accuracy per confidence bin)
sum the bins from X upward: the smallest X whose kept reads are accurate enough is a good
start; then check on reads of species the model never saw how many stay >= X.

under torchrun every rank runs this command on the same arguments; rank 0 writes the outputs,
in input order, from per-rank part files beside them (the output directory must be shared).
"""


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
    return v


def _int_at_least(minimum: int):
    """argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{text} must be >= {minimum}")
        return v

    return parse


def add_arguments(p) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("run", metavar="RUN", help="training run directory (or its model/ directory)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="FASTA/FASTQ files, plain or gzip (two files R1 R2 for pairs)")
    p.add_argument("-o", "--output", required=True, metavar="PRED.tsv",
                   help="per-read predictions (TSV; .gz compresses)")
    p.add_argument("--report", metavar="R.txt", help="Kraken2-style report")
    p.add_argument("--kraken-out", metavar="K.out",
                   help="Kraken2-format per-read output (column 5 is a placeholder: see below)")
    p.add_argument("--taxonomy", metavar="DIR",
                   help="NCBI taxdump directory (nodes.dmp, names.dmp): full lineages in the "
                        "report (default: root and species only)")
    p.add_argument("--abundance", metavar="A.tsv", help="per-species read counts and fractions")
    p.add_argument("--genome-sizes", metavar="TSV",
                   help="tax_id or label_name -> genome length: adds length-normalised "
                        "abundance (every species of the model needs a size)")
    p.add_argument("--abundance-plot", metavar="P.png", help="bar chart of the top species")
    p.add_argument("--with-kraken", metavar="K2.out",
                   help="Kraken2 per-read output for the same reads, same order: keep its calls "
                        "whose tax id is in the label map, classify the rest with the model")
    p.add_argument("--min-confidence", type=_fraction, default=0.0, metavar="X",
                   help="call a read unclassified when its top probability is below X "
                        "(default 0: always call a species)")
    p.add_argument("--min-margin", type=_fraction, default=0.0, metavar="Y",
                   help="... or when the best two probabilities differ by less than Y (default 0)")
    p.add_argument("--top-k", type=_int_at_least(1), default=1, metavar="K",
                   help="write the K best classes per read (default 1: no extra columns)")
    p.add_argument("--paired", choices=("auto", "on", "off"), default="auto",
                   help="classify mates together: two files R1 R2 or one interleaved file "
                        "(auto: when the read ids pair up; default)")
    p.add_argument("--batch-size", type=_int_at_least(1), default=256, metavar="B",
                   help="reads (or pairs) per model call (default 256)")
    p.add_argument("--num-workers", type=_int_at_least(0), default=1, metavar="W",
                   help="processes reading and tokenising input (default 1; 0 = in-process)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA when available (default)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")


def run(args) -> int:
    from ..dist import dist_info
    from ..outputs import check_output_path
    from ..predict import PredictOptions, predict

    outputs = [args.output, args.report, args.kraken_out, args.abundance, args.abundance_plot]
    given = [o for o in outputs if o]
    if len(set(given)) != len(given):
        from ..errors import UsageError

        raise UsageError("two outputs have the same name")
    # Only rank 0 writes final files; the others would find them already written by rank 0.
    if dist_info().is_main:
        for o in given:
            check_output_path(o, force=args.force,
                              inputs=[*args.inputs, *([args.with_kraken] if args.with_kraken else [])])
    opts = PredictOptions(min_confidence=args.min_confidence, min_margin=args.min_margin,
                          top_k=args.top_k, batch_size=args.batch_size, paired=args.paired,
                          num_workers=args.num_workers, device=args.device)
    predict(args.run, args.inputs, args.output, options=opts, report=args.report,
            kraken_out=args.kraken_out, abundance=args.abundance,
            genome_sizes=args.genome_sizes, abundance_plot=args.abundance_plot,
            with_kraken=args.with_kraken, taxonomy=args.taxonomy,
            progress=None if not args.quiet else False)
    return 0
