"""readtax evaluate: metrics of a trained run on a labelled data set (store or reads files)."""

from __future__ import annotations

HELP = "evaluate a trained run on labelled reads: metrics.json, per-class and confusion tables, plots"


def add_arguments(p) -> None:
    p.add_argument("run", metavar="RUN", help="run directory (or its model/ directory)")
    p.add_argument("--data", nargs="+", required=True, metavar="DATA",
                   help="a store directory or FASTA/FASTQ files with labelled reads")
    p.add_argument("-o", "--output", required=True, metavar="EVAL_DIR", help="report directory")
    p.add_argument("--batch-size", type=int, default=256, help="reads per batch (default 256)")
    p.add_argument("--num-workers", type=int, default=2, help="data loader workers (default 2)")
    p.add_argument("--max-reads", type=int, help="stop after this many reads")
    p.add_argument("--labels", default="lbl", help="label scheme of reads files (default lbl)")
    p.add_argument("--skip-unknown", action="store_true",
                   help="skip reads of classes the model does not know instead of failing")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--force", action="store_true", help="overwrite an existing report")


def run(args) -> int:
    from ..evaluate import check_eval_dir, evaluate_run

    out = check_eval_dir(args.output, args.force)
    res = evaluate_run(args.run, args.data, out, batch_size=args.batch_size,
                       num_workers=args.num_workers, max_reads=args.max_reads,
                       labels=args.labels, skip_unknown=args.skip_unknown, device=args.device)
    print(f"accuracy\t{res['accuracy']:.6f}\nmacro_f1\t{res['macro_f1']:.6f}\n"
          f"mcc\t{res['mcc']:.6f}\nreads\t{res['reads']}")
    return 0
