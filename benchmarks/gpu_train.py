"""GPU training throughput of the real training path (readtax train's recipe on a store).

For each model (default: METAGENE-1 full size, random weights, bf16 backbone, LoRA r=8 with
dropout 0 and gradient checkpointing chosen by memory as in training; DNABERT-2 full size,
full fine-tune, bf16 autocast), each in its own subprocess (so that one model's memory never
shows in the next one's peak), on 150 bp reads from a packed store, measures:

* reads/s and tokens/s (padded, and real = non-padding) over timed optimiser steps after a
  warm-up;
* peak GPU memory (``torch.cuda.max_memory_allocated``);
* MFU = 6 N x real tokens per second / the GPU's dense bf16 peak, N = non-embedding
  parameters (the standard 6ND convention: padding and recomputation do not count); HFU adds
  the forward pass that gradient checkpointing repeats (8 N per token when it is on);
* the loader: the fraction of wall time the training loop waited for the next batch, the
  loader's own reads/s with the same workers and collator (no model), and GPU utilisation
  sampled through NVML when ``pynvml`` is available;
* the time one epoch of 558M reads (the seed data set) would take at the measured rate on 1
  GPU and on 8 (assuming linear scaling across GPUs).

Designed to finish in under 8 minutes on one H100/H200 (most of it writing and loading the
random 6.5B METAGENE-1 checkpoint; ``--workdir`` keeps model directories for a rerun). Without
CUDA it prints a message and exits 0; ``--tiny`` runs the same path on the CPU with tiny
stand-ins and a small store (what the test suite does).

    python benchmarks/gpu_train.py                     # both models, defaults
    python benchmarks/gpu_train.py --models dnabert2 --seconds 30 --json out.json
    python benchmarks/gpu_train.py --tiny              # CPU, tiny models, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# Dense bf16 peak (no sparsity) by device name; --peak-tflops overrides.
PEAK_TFLOPS = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0),
               ("L40S", 362.0), ("4090", 165.0), ("A10", 125.0)]

EPOCH_READS = 558_000_000  # reads in the seed data set
MODELS = {
    # name: (arch, batch size, extra config overrides)
    "metagene": ("metagene", 64, ["model.lora=true", "model.lora_r=8", "model.lora_alpha=16",
                                  "model.lora_dropout=0", "model.gradient_checkpointing=null",
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
    ap.add_argument("--loader-seconds", type=float, default=5.0,
                    help="seconds (at least 30 batches) of the loader-alone measurement")
    ap.add_argument("--tiny", action="store_true",
                    help="CPU smoke run: tiny models, 3,000 reads, 12 classes, 1 s per model")
    ap.add_argument("--in-process", action="store_true",
                    help="measure the models in this process (the subprocess mode's child)")
    args = ap.parse_args(argv)
    if args.tiny:
        args.allow_cpu, args.size, args.reads, args.classes = True, "tiny", 3000, 12
        args.seconds, args.warmup_steps, args.loader_seconds = 1.0, 1, 0.0
        args.batch_size = args.batch_size or 8
        args.workers = 0 if args.workers is None else args.workers
    return args


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


def param_counts(model) -> dict:
    """Non-embedding parameters (N of 6N) and the trainable ones among them."""
    import torch

    emb = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding)
           for p in m.parameters()}
    n = sum(p.numel() for p in model.parameters() if id(p) not in emb)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in emb)
    return {"params_non_embedding": n, "params_trainable": n_train}


def utilisation(n_params: int, real_tokens_per_s: float, peak: float | None,
                recompute: bool) -> tuple[float | None, float | None]:
    """(MFU, HFU): 6 N per real token; HFU adds the 2 N forward that checkpointing repeats."""
    if not peak:
        return None, None
    mfu = 6 * n_params * real_tokens_per_s / peak
    return mfu, (8 if recompute else 6) * n_params * real_tokens_per_s / peak


def epoch_hours(reads_per_s: float, gpus: int) -> float:
    """Hours for one epoch of the seed data set at ``reads_per_s`` per GPU."""
    return EPOCH_READS / max(reads_per_s * gpus, 1e-9) / 3600


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
            # A device tensor: summing it here must not wait for the GPU every step.
            tokens["real"] += mask.sum() if mask is not None else ids.numel()

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
    reads, padded, real = tokens["reads"], tokens["padded"], int(tokens["real"])
    seq = padded / max(reads, 1)
    counts = param_counts(model)
    recompute = bool(model.options.gradient_checkpointing)
    peak = peak_flops(device_name, args.peak_tflops) if cuda else None
    mfu, hfu = utilisation(counts["params_non_embedding"], real / wall, peak, recompute)
    rate = reads / wall
    res = {
        "model": name, "arch": arch, "size": args.size, "batch_size": bs, "workers": workers,
        "device": device_name, "setup_s": round(setup_s, 1), "steps": steps,
        "seconds": round(wall, 2), "reads_per_s": round(rate, 1),
        "tokens_per_s": round(padded / wall, 0), "real_tokens_per_s": round(real / wall, 0),
        "tokens_per_read": round(seq, 1), "real_tokens_per_read": round(real / max(reads, 1), 1),
        "gradient_checkpointing": recompute,
        "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "model_tflops_per_s": round(6 * counts["params_non_embedding"] * real / wall / 1e12, 3),
        "mfu": None if mfu is None else round(mfu, 3),
        "hfu": None if hfu is None else round(hfu, 3),
        "epoch_558m_hours_1gpu": round(epoch_hours(rate, 1), 1),
        "epoch_558m_hours_8gpu": round(epoch_hours(rate, 8), 1),
        "loader_wait_fraction": round((timed["end_wait"] - timed["wait"]) / wall, 3),
        "gpu_util_nvml": None if util is None else round(util, 3),
        **counts,
    }
    # The loader alone (same dataset kind, workers and collator, no model).
    t = time.perf_counter()
    n = 0
    for i, _ in enumerate(recipe.train_loader()):
        n += bs
        if i >= 30 and time.perf_counter() - t > args.loader_seconds:
            break
    res["loader_alone_reads_per_s"] = round(n / (time.perf_counter() - t), 0)
    del recipe, trainer, model
    if cuda:
        torch.cuda.empty_cache()
    return res


def run_child(name: str, argv: list[str]) -> dict:
    """Measure one model in a fresh interpreter (its own CUDA context and memory peak)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--models", name,
               "--in-process", "--json", str(out)]
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, check=False)
        if proc.returncode != 0 or not out.is_file():
            raise SystemExit(f"gpu_train: measuring {name} failed (exit {proc.returncode})")
        return json.loads(out.read_text())["results"][0]


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
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}")
    results = []
    for name in names:
        if args.in_process:
            r = bench_model(name, args, train, val, work, device_name, cuda)
        else:
            r = run_child(name, argv if argv is not None else sys.argv[1:])
        results.append(r)
        print(json.dumps(r), flush=True)
    if args.in_process:
        if args.json:
            Path(args.json).write_text(json.dumps({"device": device_name, "results": results}))
        return 0
    cols = ["model", "batch_size", "reads_per_s", "tokens_per_s", "real_tokens_per_s",
            "peak_gpu_mem_gb", "mfu", "hfu", "loader_alone_reads_per_s",
            "epoch_558m_hours_1gpu", "epoch_558m_hours_8gpu", "loader_wait_fraction",
            "gpu_util_nvml", "setup_s"]
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
