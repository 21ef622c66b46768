"""readtax train: fine-tune a classifier on labelled reads (store or FASTA/FASTQ), resumable."""

from __future__ import annotations

import argparse
import sys

HELP = "train a read classifier (YAML config + flags; resumable; torchrun for several processes)"

# CLI flag -> configuration key (every option is also reachable with --set key=value).
_FLAGS = {
    "train": "data.train",
    "val": "data.val",
    "mapping": "data.mapping",
    "labels": "data.labels",
    "val_per_class": "data.val_per_class",
    "num_workers": "data.num_workers",
    "model": "model.path",
    "arch": "model.arch",
    "lora": "model.lora",
    "freeze_backbone": "model.freeze_backbone",
    "output": "output",
    "seed": "seed",
    "max_steps": "train.max_steps",
    "batch_size": "train.batch_size",
    "grad_accum": "train.grad_accum",
    "lr": "train.lr",
    "eval_steps": "train.eval_steps",
    "save_steps": "train.save_steps",
    "precision": "train.precision",
    "stop_after": "train.stop_after",
}


def add_arguments(p) -> None:
    p.add_argument("--config", metavar="CFG.yaml", help="YAML configuration (flags override it)")
    p.add_argument("--train", nargs="+", metavar="DATA", help="training data: a store or reads files")
    p.add_argument("--val", nargs="+", metavar="DATA", help="validation data: a store or reads files")
    p.add_argument("--mapping", help="mapping TSV (class_id, label_name, tax_id) for reads files")
    p.add_argument("--labels", help="label scheme for reads files (lbl, regex:..., tsv:...)")
    p.add_argument("--model", metavar="DIR", help="model directory (e.g. from readtax init-model)")
    p.add_argument("--arch", help="model family (default: detected)")
    p.add_argument("-o", "--output", metavar="RUN", help="run directory")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint")
    p.add_argument("--force", action="store_true", help="start over in an existing run directory")
    p.add_argument("--max-steps", type=int, help="optimiser steps (default: one epoch, capped)")
    p.add_argument("--stop-after", type=int, metavar="N",
                   help="save and stop after N steps, keeping the max-steps schedule")
    p.add_argument("--batch-size", type=int, help="reads per batch per process")
    p.add_argument("--grad-accum", type=int, help="batches per optimiser step")
    p.add_argument("--num-workers", type=int, help="data loader workers per process")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--eval-steps", type=int, help="evaluate every N steps")
    p.add_argument("--save-steps", type=int, help="checkpoint every N steps")
    p.add_argument("--val-per-class", type=int, help="validation reads per class")
    p.add_argument("--precision", help="auto, bf16, fp16 or fp32")
    p.add_argument("--lora", action=argparse.BooleanOptionalAction, default=None,
                   help="LoRA adapters on the backbone (default: the family's default)")
    p.add_argument("--freeze-backbone", action="store_true", default=None,
                   help="train only the classification head")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="any configuration option, e.g. train.schedule=linear; lists as "
                        "a,b or [a, b] (model.lora_targets=[q_proj, v_proj])")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration and exit")
    p.add_argument("--config-help", action="store_true",
                   help="list every configuration option with its default and exit")


def overrides_from_args(args) -> list[tuple[str, object]]:
    """(key, value) pairs for the flags given, then --set items (later wins)."""
    from ..config import parse_overrides

    pairs: list[tuple[str, object]] = []
    for attr, key in _FLAGS.items():
        value = getattr(args, attr, None)
        if value is not None:
            pairs.append((key, value))
    pairs += parse_overrides(args.set)
    return pairs


def run(args) -> int:
    from .. import config

    if args.config_help:
        sys.stdout.write(config.describe())
        return 0
    overrides = overrides_from_args(args)
    if args.resume:
        from ..errors import UsageError

        if args.config:
            raise UsageError("--resume uses the run's own config.yaml; do not give --config")
        if args.output and args.output != args.resume:
            raise UsageError("--resume RUN continues RUN in place; -o must be RUN or absent")
        if args.print_config:
            from pathlib import Path

            cfg = config.load_config(Path(args.resume) / "config.yaml", overrides)
            sys.stdout.write(config.dump_config(cfg))
            return 0
        from ..train import run_training

        try:
            run_training(None, resume=args.resume, overrides=overrides)
        finally:
            _close_process_group()
        return 0
    cfg = config.load_config(args.config, overrides, require_paths=not args.print_config)
    if args.print_config:
        sys.stdout.write(config.dump_config(cfg))
        return 0
    from ..train import run_training

    try:
        run_training(cfg, force=args.force)
    finally:
        _close_process_group()
    return 0


def _close_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
