"""readtax demo: the main job end to end on bundled data in a few minutes on 2 CPU cores."""

from __future__ import annotations

HELP = "run the whole pipeline on bundled real-genome fragments (simulate → train → predict)"


def add_arguments(p) -> None:
    p.add_argument("-o", "--output", default="readtax-demo", help="output directory")
    p.add_argument("--force", action="store_true", help="reuse a non-empty output directory")
    p.add_argument("--max-steps", type=int, default=None, help="training steps (default: one epoch, the default recipe)")
    p.add_argument("--seed", type=int, default=1)


def run(args) -> int:
    from ..demo import DemoSettings, run_demo

    s = DemoSettings(seed=args.seed)
    if args.max_steps:
        s.max_steps = args.max_steps
    run_demo(args.output, s, force=args.force)
    return 0
