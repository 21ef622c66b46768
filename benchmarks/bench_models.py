"""Model families: tokenisation speed, CPU training speed of the tiny stand-ins, full sizes.

Prints, for 150 bp reads:
1. collator (tokenizer) reads/s per family on one core (``TOKENIZERS_PARALLELISM=false``, one
   torch thread), over batches of ``--batch`` reads;
2. forward+backward reads/s of each family's tiny stand-in classifier on the CPU (all threads);
3. parameter counts of the ``--size full`` configs, counted on the meta device (nothing allocated).

    python benchmarks/bench_models.py [--reads 20000] [--batch 256] [--steps 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # per-core tokenizer figures

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

from readtax.batch import SeqBatch  # noqa: E402

FAMILIES = ("kmer-cnn", "dnabert", "dnabert2", "metagene", "auto")


def random_reads(n: int, length: int = 150, seed: int = 0) -> SeqBatch:
    """``n`` uniform random ACGT reads of ``length`` bp with labels 0..2."""
    rng = np.random.default_rng(seed)
    seq = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, n * length)]
    offsets = np.arange(n + 1, dtype=np.int64) * length
    return SeqBatch(seq, offsets, rng.integers(0, 3, n).astype(np.int64))


def bench_collators(dirs: dict[str, Path], n_reads: int, batch: int) -> None:
    import torch

    from readtax.labels import LabelMap
    from readtax.models import build_classifier

    torch.set_num_threads(1)
    reads = random_reads(n_reads)
    batches = [reads.take(np.arange(i, min(i + batch, n_reads))) for i in range(0, n_reads, batch)]
    lm = LabelMap.from_ids([0, 1, 2])
    print(f"== collator (tokenizer) speed, {n_reads} x 150 bp reads, batches of {batch}, one core")
    print(f"{'family':10s} {'reads/s':>10s} {'tokens/read':>12s}")
    for arch in FAMILIES:
        collator = build_classifier(dirs[arch], lm).collator
        collator(batches[0])  # warm up (lazy tokenizer construction)
        t = time.perf_counter()
        tokens = 0
        for b in batches:
            tokens += int(collator(b)["attention_mask"].sum())
        dt = time.perf_counter() - t
        print(f"{arch:10s} {n_reads / dt:10,.0f} {tokens / n_reads:12.1f}")


def bench_training(dirs: dict[str, Path], batch: int, steps: int) -> None:
    import torch

    from readtax.labels import LabelMap
    from readtax.models import ModelOptions, build_classifier

    torch.set_num_threads(os.cpu_count() or 1)
    lm = LabelMap.from_ids(list(range(10)))
    reads = random_reads(batch, seed=1)
    reads.labels = reads.labels % 10
    print(f"\n== tiny stand-ins: CPU forward+backward+AdamW step, batch {batch}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'family':10s} {'params':>10s} {'trainable':>10s} {'reads/s':>10s} {'fwd-only/s':>11s}")
    for arch in FAMILIES:
        model = build_classifier(dirs[arch], lm, options=ModelOptions())
        inputs = model.collator(reads)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        model.train()
        for _ in range(2):  # warm up
            model(**inputs).loss.backward()
            opt.step()
            opt.zero_grad()
        t = time.perf_counter()
        for _ in range(steps):
            model(**inputs).loss.backward()
            opt.step()
            opt.zero_grad()
        train = batch * steps / (time.perf_counter() - t)
        model.eval()
        with torch.no_grad():
            t = time.perf_counter()
            for _ in range(steps):
                model(**inputs)
            fwd = batch * steps / (time.perf_counter() - t)
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"{arch:10s} {total:10,d} {trainable:10,d} {train:10,.0f} {fwd:11,.0f}")


def print_full_sizes() -> None:
    from readtax.models import count_parameters, model_config

    print("\n== --size full configs (parameters counted on the meta device, nothing allocated)")
    for arch in ("metagene", "dnabert2", "dnabert", "kmer-cnn"):
        cfg = model_config(arch, "full")
        n = count_parameters(arch, "full")
        dims = ", ".join(f"{k} {cfg[k]}" for k in ("num_hidden_layers", "hidden_size", "vocab_size",
                                                   "k", "embed_dim") if k in cfg)
        print(f"{arch:10s} {n:>15,d}  ({n / 1e6:,.1f}M; {dims})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reads", type=int, default=20000, help="reads for the tokenizer figures")
    p.add_argument("--batch", type=int, default=256, help="reads per batch")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per family")
    args = p.parse_args(argv)
    from readtax.models import init_model

    with tempfile.TemporaryDirectory() as tmp:
        dirs = {arch: init_model(arch, "tiny", Path(tmp) / arch) for arch in FAMILIES}
        bench_collators(dirs, args.reads, args.batch)
        bench_training(dirs, args.batch, args.steps)
    print_full_sizes()
    return 0


if __name__ == "__main__":
    sys.exit(main())
