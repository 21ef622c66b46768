"""Evaluate a trained run on any labelled data set, streaming.

``evaluate_run(RUN, DATA, EVAL_DIR)`` loads ``RUN/model``, streams DATA (a store or reads files)
through the model and accumulates :class:`~readtax.metrics.StreamingMetrics`: memory does not
grow with the number of reads. The data's classes are mapped onto the run's label map by
class id; classes the model does not know are an error (or skipped with ``skip_unknown``).
Writes ``metrics.json`` (with ``accuracy``), ``per_class.tsv``, ``confusions.tsv``,
``reliability.png`` and, for at most 50 classes, ``confusion.png``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import UsageError, require
from .metrics import StreamingMetrics, write_report
from .progress import Progress
from .sources import Collate, data_loader, open_data

log = logging.getLogger("readtax.evaluate")


def _autocast(model):
    """bf16/fp16 autocast on CUDA when the model's weights are in half precision."""
    import contextlib

    import torch

    try:
        p = next(model.parameters())
    except StopIteration:  # pragma: no cover - a model without parameters
        return contextlib.nullcontext()
    if p.device.type == "cuda" and p.dtype in (torch.bfloat16, torch.float16):
        return torch.autocast("cuda", dtype=p.dtype)
    return contextlib.nullcontext()


def _to_device(inputs: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if hasattr(v, "to") else v)
            for k, v in inputs.items()}


def stream_eval(model, loader, num_classes: int, *, prepare: Callable[[dict], dict] | None = None,
                max_reads: int | None = None, progress: Progress | None = None,
                top_k: int = 5) -> StreamingMetrics:
    """Run ``model`` over ``loader`` (dicts from a collator) and accumulate the metrics.

    ``prepare`` moves a batch to the model's device (default: the device of its first
    parameter). Keys starting with ``_`` are dropped before the forward pass. Stops after
    ``max_reads`` labelled-or-not reads.
    """
    import torch

    from .metrics import DeviceAccumulator

    device = next(model.parameters()).device
    # Counts stay on the model's device: one host sync for the whole evaluation, not per batch.
    acc = DeviceAccumulator(num_classes, top_k=top_k, device=device)
    was_training = model.training
    model.eval()
    seen = 0
    try:
        with torch.no_grad(), _autocast(model):
            for inputs in loader:
                inputs = {k: v for k, v in inputs.items() if not k.startswith("_")}
                n = int(inputs["input_ids"].shape[0])
                if max_reads is not None and seen + n > max_reads:
                    keep = max_reads - seen
                    inputs = {k: (v[:keep] if hasattr(v, "shape") and v.shape[:1] == (n,) else v)
                              for k, v in inputs.items()}
                    n = keep
                if n <= 0:
                    break
                inputs = prepare(inputs) if prepare is not None else _to_device(inputs, device)
                labels = inputs.get("labels")
                out = model(**inputs)
                logits = out["logits"] if isinstance(out, dict) else out[1]
                loss = out.get("loss") if isinstance(out, dict) else None
                if labels is None:
                    labels = torch.full((n,), -1, dtype=torch.long, device=logits.device)
                acc.update(logits, labels, loss=loss)
                seen += n
                if progress is not None:
                    progress.update(seen)
                if max_reads is not None and seen >= max_reads:
                    break
    finally:
        model.train(was_training)
    return acc.finish()


def evaluate_run(run: str | os.PathLike[str], data: list[str], out_dir: str | os.PathLike[str],
                 *, batch_size: int = 256, num_workers: int = 2, max_reads: int | None = None,
                 labels: str = "lbl", skip_unknown: bool = False, device: str | None = None,
                 top_confusions: int = 50) -> dict[str, Any]:
    """Evaluate ``run`` on ``data``; write the report to ``out_dir``; return the metrics."""
    require("torch")
    import torch

    from .models import load_classifier, resolve_model_dir

    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if max_reads is not None and max_reads < 1:
        raise UsageError(f"--max-reads must be >= 1, got {max_reads}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model_dir = resolve_model_dir(run)
    model = load_classifier(model_dir, device=device, merge_adapters=True)
    label_map = model.label_map
    source = open_data(list(data), "eval", batch_size=batch_size, label_map=label_map,
                       labels=labels, skip_unknown=skip_unknown)
    loader = data_loader(source.dataset, Collate(model.collator, source.lut, keep_batch=False),
                         num_workers=num_workers, pin_memory=device.startswith("cuda"), seed=0)
    t0 = time.monotonic()
    with Progress(max_reads, desc="evaluate", unit="reads") as bar:
        metrics = stream_eval(model, loader, len(label_map), max_reads=max_reads, progress=bar)
    elapsed = time.monotonic() - t0
    res = metrics.compute(label_map, top_confusions=top_confusions)
    res["model"] = str(model_dir)
    res["data"] = [str(d) for d in data]
    res["seconds"] = round(elapsed, 3)
    res["reads_per_s"] = round((metrics.total + metrics.unlabelled) / max(elapsed, 1e-9), 1)
    if metrics.total == 0:
        raise UsageError(f"{', '.join(map(str, data))}: no labelled reads to evaluate")
    write_report(res, out_dir, label_map, metrics)
    log.info("accuracy %.4f, macro-F1 %.4f, MCC %.4f on %s reads -> %s", res["accuracy"],
             res["macro_f1"], res["mcc"], f"{res['reads']:,}", out_dir)
    return res


def check_eval_dir(out_dir: str | os.PathLike[str], force: bool) -> Path:
    """The evaluation directory, checked as every output is (its metrics.json stands for it)."""
    from .outputs import check_output_path

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} exists and is not a directory")
    check_output_path(out / "metrics.json", force=force)
    return out
