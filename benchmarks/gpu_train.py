"""GPU training throughput of the real training path (readtax train's recipe on a store).

For each model (default: METAGENE-1 full size, random weights, bf16 backbone, LoRA r=8,
gradient checkpointing; DNABERT-2 full size, full fine-tune, bf16 autocast), on 150 bp reads
from a packed store, measures:

* reads/s and tokens/s (padded and real) over timed optimiser steps after a warm-up;
* peak GPU memory (``torch.cuda.max_memory_allocated``);
* MFU: model FLOPs per second / the GPU's dense bf16 peak. Model FLOPs per token =
  2 N (forward) + 2 N (input gradients) + 2 N_trainable (weight gradients) + attention
  (4 L S H forward, twice that backward), N = non-embedding parameters; recomputation from
  gradient checkpointing is not counted (the usual MFU convention);
* the loader: the fraction of wall time the training loop waited for the next batch, the
  loader's own reads/s with the same workers and collator (no model), and GPU utilisation
  sampled through NVML when ``pynvml`` is available.

Designed to finish in under 8 minutes on one H100/H200 (most of it writing and loading the
random 6.5B METAGENE-1 checkpoint; ``--workdir`` keeps model directories for a rerun). Without
CUDA it prints a message and exits 0; ``--allow-cpu --size tiny`` runs the same path on the
CPU with tiny stand-ins (what the test suite does).

    python benchmarks/gpu_train.py                     # both models, defaults
    python benchmarks/gpu_train.py --models dnabert2 --seconds 30 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# Dense bf16 peak (no sparsity) by device name; --peak-tflops overrides.
PEAK_TFLOPS = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0),
               ("L40S", 362.0), ("4090", 165.0), ("A10", 125.0)]

MODELS = {
    # name: (arch, batch size, extra config overrides)
    "metagene": ("metagene", 64, ["model.lora=true", "model.lora_r=8", "model.lora_alpha=16",
                                  "model.lora_dropout=0.1", "model.gradient_checkpointing=true",
                                  "model.dtype=auto", "train.lr=1e-4"]),
    "dnabert2": ("dnabert2", 256, ["model.lora=false", "model.dtype=float32", "train.lr=3e-5"]),
}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="metagene,dnabert2",
                    help="comma-separated: metagene, dnabert2 (default both)")
    ap.add_argument("--size", default="full", choices=("full", "tiny"))
    ap.add_argument("--reads", type=int, default=400_000, help="reads in the training store")
    ap.add_argument("--classes", type=int, default=3507)
    ap.add_argument("--seconds", type=float, default=60.0,
                    help="timed training seconds per model (after warm-up)")
    ap.add_argument("--warmup-steps", type=int, default=5)
    ap.add_argument("--max-steps", type=int, default=100_000, help="upper bound on timed steps")
    ap.add_argument("--batch-size", type=int, help="override the per-model batch size")
    ap.add_argument("--workers", type=int, default=None,
                    help="DataLoader workers (default: min(8, CPUs - 2))")
    ap.add_argument("--workdir", default=os.environ.get("READTAX_GPU_BENCH",
                                                        "/tmp/readtax_gpu_bench"))
    ap.add_argument("--peak-tflops", type=float, help="GPU dense bf16 peak for MFU")
    ap.add_argument("--json", help="write the results here as JSON")
    ap.add_argument("--allow-cpu", action="store_true", help="run on the CPU (use --size tiny)")
    return ap.parse_args(argv)


def make_data(work: Path, reads: int, classes: int, workers: int) -> tuple[Path, Path]:
    """A train store and a small val store of 150 bp reads (reused when already there)."""
    from synth import make_fasta, make_mapping

    from readtax.labels import load_mapping
    from readtax.store import is_store, pack

    work.mkdir(parents=True, exist_ok=True)
    mapping = load_mapping(make_mapping(work / "mapping.tsv", classes))
    out = []
    for name, n, seed in (("train", reads, 0), ("val", max(classes * 2, 2000), 1)):
        store = work / f"{name}_{n}_{classes}"
        if not is_store(store):
            fa = make_fasta(work / f"{name}_{n}_{classes}.fa", n, classes, 150, seed)
            pack([str(fa)], store, mapping=mapping, seed=seed, workers=workers, force=True,
                 progress=False)
            fa.unlink()
        out.append(store)
    return out[0], out[1]


def model_dir(work: Path, arch: str, size: str) -> Path:
    from readtax.models import init_model

    d = work / f"{arch}-{size}"
    if not (d / "config.json").is_file():
        t = time.perf_counter()
        init_model(arch, size, d, seed=0)
        print(f"  wrote random {arch} ({size}) in {time.perf_counter() - t:.0f} s",
              file=sys.stderr)
    return d


def peak_flops(name: str, override: float | None) -> float | None:
    if override:
        return override * 1e12
    for key, tf in PEAK_TFLOPS:
        if key in name:
            return tf * 1e12
    return None


class GpuSampler:
    """GPU utilisation sampled every 0.1 s through NVML (None when pynvml is missing)."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = None
        try:
            import pynvml

            pynvml.nvmlInit()
            import torch

            idx = torch.cuda.current_device()
            self._h = pynvml.nvmlDeviceGetHandleByIndex(idx)
            self._nvml = pynvml
        except Exception:  # noqa: BLE001 - optional: any NVML problem means no sampling
            self._nvml = None

    def start(self) -> None:
        if self._nvml is None:
            return
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self._h).gpu)

    def stop(self) -> float | None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return sum(self.samples) / len(self.samples) / 100 if self.samples else None


class TimedLoader:
    """Wraps the training loader: time the loop spends waiting for the next batch."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.wait = 0.0

    def __iter__(self):
        it = iter(self.inner)
        while True:
            t = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            self.wait += time.perf_counter() - t
            yield item


def _flops_per_token(model, seq_len: float) -> tuple[float, dict]:
    import torch

    emb = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding)
           for p in m.parameters()}
    n = sum(p.numel() for p in model.parameters() if id(p) not in emb)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in emb)
    cfg = getattr(model, "backbone_config", {}) or {}
    layers = int(cfg.get("num_hidden_layers", cfg.get("num_layers", 0)) or 0)
    hidden = int(getattr(model, "hidden_size", 0))
    attn = 4 * layers * seq_len * hidden * 3  # forward 4LSH, backward twice that
    return 4 * n + 2 * n_train + attn, {"params_non_embedding": n, "params_trainable": n_train}


def bench_model(name: str, args, train: Path, val: Path, work: Path, device_name: str,
                cuda: bool) -> dict:
    import torch
    from transformers import TrainerCallback

    from readtax.config import load_config
    from readtax.train import TrainRecipe

    arch, bs, extra = MODELS[name]
    bs = args.batch_size or bs
    mdir = model_dir(work, arch, args.size)
    run = work / f"run-{name}"
    workers = args.workers if args.workers is not None else max(1, min(8, (os.cpu_count() or 2)
                                                                       - 2))
    cfg = load_config(overrides=[
        ("data.train", [str(train)]), ("data.val", [str(val)]), ("model.path", str(mdir)),
        ("model.arch", arch), ("output", str(run)), ("train.batch_size", bs),
        ("train.max_steps", args.warmup_steps + args.max_steps), ("data.num_workers", workers),
        ("data.val_per_class", 1), ("train.eval_steps", 10**9), ("train.save_steps", 10**9),
        ("train.load_best_at_end", False), ("train.early_stopping_patience", None),
        ("train.final_eval", False), ("train.logging_steps", 10**9), ("train.progress", False),
        ("data.augment_rc", True), *[tuple(e.split("=", 1)) for e in extra]])
    t0 = time.perf_counter()
    recipe = TrainRecipe(cfg, force=True).setup()
    setup_s = time.perf_counter() - t0
    model = recipe.model
    trainer = recipe.trainer
    timed = {}
    tokens = {"padded": 0, "real": 0, "reads": 0}

    def count(_mod, _args, kwargs):
        ids = kwargs.get("input_ids")
        mask = kwargs.get("attention_mask")
        if ids is not None and timed.get("on"):
            tokens["padded"] += ids.numel()
            tokens["reads"] += ids.shape[0]
            tokens["real"] += int(mask.sum()) if mask is not None else ids.numel()

    model.register_forward_pre_hook(count, with_kwargs=True)
    sampler = GpuSampler() if cuda else None

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            step = state.global_step
            if step == args.warmup_steps:
                timed.update(on=True, t=time.perf_counter(), step=step,
                             wait=loader.wait)
                tokens.update(padded=0, real=0, reads=0)
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                if sampler is not None:
                    sampler.start()
            elif timed.get("on") and (time.perf_counter() - timed["t"] >= args.seconds):
                control.should_training_stop = True
            timed["end"], timed["end_step"], timed["end_wait"] = (time.perf_counter(), step,
                                                                   loader.wait)
            return control

    loader = TimedLoader(recipe.train_loader())
    trainer.get_train_dataloader = lambda: loader
    trainer.add_callback(Clock())
    trainer.train()
    util = sampler.stop() if sampler is not None else None
    steps = timed["end_step"] - timed["step"]
    wall = timed["end"] - timed["t"]
    # The hook sits on the classifier's own forward, which gradient checkpointing does not
    # repeat (it recomputes inner layers): each read is counted once.
    reads, padded, real = tokens["reads"], tokens["padded"], tokens["real"]
    seq = padded / max(reads, 1)
    fpt, counts = _flops_per_token(model, seq)
    peak = peak_flops(device_name, args.peak_tflops) if cuda else None
    res = {
        "model": name, "arch": arch, "size": args.size, "batch_size": bs, "workers": workers,
        "setup_s": round(setup_s, 1), "steps": steps, "seconds": round(wall, 2),
        "reads_per_s": round(reads / wall, 1),
        "tokens_per_s": round(padded / wall, 0), "real_tokens_per_s": round(real / wall, 0),
        "tokens_per_read": round(seq, 1),
        "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "model_tflops_per_s": round(fpt * padded / wall / 1e12, 1),
        "mfu": round(fpt * padded / wall / peak, 3) if peak else None,
        "loader_wait_fraction": round((timed["end_wait"] - timed["wait"]) / wall, 3),
        "gpu_util_nvml": None if util is None else round(util, 3),
        **counts,
    }
    # The loader alone (same dataset kind, workers and collator, no model).
    t = time.perf_counter()
    n = 0
    for i, _ in enumerate(recipe.train_loader()):
        n += bs
        if i >= 30 and time.perf_counter() - t > 5:
            break
    res["loader_alone_reads_per_s"] = round(n / (time.perf_counter() - t), 0)
    del recipe, trainer, model
    if cuda:
        torch.cuda.empty_cache()
    return res


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        print("gpu_train: torch is not installed; nothing measured")
        return 0
    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print("gpu_train: no CUDA device here; nothing measured (run it on a GPU machine, or "
              "--allow-cpu --size tiny to exercise the set-up path)")
        return 0
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    work = Path(args.workdir)
    workers = os.cpu_count() or 2
    t0 = time.perf_counter()
    train, val = make_data(work, args.reads, args.classes, workers)
    print(f"device: {device_name}; data: {args.reads:,} x 150 bp reads, {args.classes} classes "
          f"({time.perf_counter() - t0:.0f} s to prepare)", flush=True)
    results = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in MODELS:
            raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
        r = bench_model(name, args, train, val, work, device_name, cuda)
        results.append(r)
        print(json.dumps(r), flush=True)
    cols = ["model", "batch_size", "reads_per_s", "tokens_per_s", "peak_gpu_mem_gb", "mfu",
            "loader_wait_fraction", "loader_alone_reads_per_s", "gpu_util_nvml", "setup_s"]
    print("\n" + "\t".join(cols))
    for r in results:
        print("\t".join(str(r[c]) for c in cols))
    for r in results:
        slack = (r["loader_alone_reads_per_s"] or 0) / max(r["reads_per_s"], 1e-9)
        verdict = "the loader is NOT the bottleneck" if r["loader_wait_fraction"] < 0.05 \
            else "the loader limits training"
        print(f"{r['model']}: loader alone {slack:.1f}x the training rate; waited "
              f"{100 * r['loader_wait_fraction']:.1f}% of the time: {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device_name, "results": results},
                                              indent=2) + "\n")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
