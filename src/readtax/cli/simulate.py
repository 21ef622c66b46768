"""readtax simulate: Illumina-like labelled reads from genome FASTAs (one species per file)."""

from __future__ import annotations

HELP = "simulate labelled reads (lbl headers) from genome FASTA files, one species per file"


def add_arguments(p) -> None:
    p.add_argument("genomes", nargs="+", metavar="GENOME",
                   help="genome FASTA files (plain or gzip, any number of contigs); each file is "
                        "one species, matched to the mapping row whose label_name is the file "
                        "name without its suffix (or by --genome-map)")
    p.add_argument("-o", "--output", required=True,
                   help="reads (FASTA; FASTQ if the name ends in .fq/.fastq; gzip if .gz)")
    p.add_argument("--output2", help="with --paired: write mate 2 here instead of interleaving")
    p.add_argument("--mapping", required=True, help="mapping TSV: class_id, label_name, tax_id")
    p.add_argument("--genome-map",
                   help="TSV genome<TAB>class (genome: path, file name or stem; class: class_id "
                        "or label_name) instead of matching file names to label names")
    p.add_argument("--reads-per-species", type=int, required=True, metavar="N",
                   help="reads (pairs with --paired) per species in the output")
    p.add_argument("--length", type=int, default=150, help="read length (default 150)")
    p.add_argument("--paired", action="store_true", help="paired-end reads (/1 and /2)")
    p.add_argument("--insert-mean", type=float, default=300.0,
                   help="mean fragment length with --paired (default 300)")
    p.add_argument("--insert-sd", type=float, default=30.0,
                   help="fragment length standard deviation (default 30)")
    p.add_argument("--error-profile", choices=["hiseq", "none"], default="hiseq",
                   help="hiseq: substitutions rising 0.1%%->1%% along the read, rare indels and "
                        "Ns (default); none: exact copies of the genome")
    p.add_argument("--n-rate", type=float, default=None,
                   help="per-base probability of N (default: the profile's, 0.0002 for hiseq)")
    p.add_argument("--split", metavar="region:F",
                   help="training reads from the first fraction F of every contig, validation "
                        "reads from the rest, e.g. region:0.8")
    p.add_argument("--val-output", help="validation reads (with --split)")
    p.add_argument("--val-output2", help="validation mate 2 (with --split, --output2)")
    p.add_argument("--val-reads-per-species", type=int, default=None,
                   help="validation reads per species (default N/4)")
    p.add_argument("--sorted", action="store_true",
                   help="write species one after another instead of mixed")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")


def run(args) -> int:
    from ..labels import load_mapping
    from ..outputs import check_output_path
    from ..simulate import SimOptions, load_genome_map, parse_split, simulate

    outputs = [o for o in (args.output, args.output2, args.val_output, args.val_output2) if o]
    if len(set(outputs)) != len(outputs):
        from ..errors import UsageError

        raise UsageError("output files must be distinct")
    for out in outputs:
        check_output_path(out, force=args.force, inputs=[*args.genomes, args.mapping])
    opts = SimOptions(
        reads_per_species=args.reads_per_species, length=args.length, paired=args.paired,
        insert_mean=args.insert_mean, insert_sd=args.insert_sd, error_profile=args.error_profile,
        n_rate=args.n_rate, split=parse_split(args.split),
        val_reads_per_species=args.val_reads_per_species, seed=args.seed,
        sorted_by_species=args.sorted,
    )
    label_map = load_mapping(args.mapping)
    genome_map = load_genome_map(args.genome_map, label_map) if args.genome_map else None
    simulate(args.genomes, label_map, args.output, opts, output2=args.output2,
             val_output=args.val_output, val_output2=args.val_output2, genome_map=genome_map)
    return 0
