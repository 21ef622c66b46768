"""Checkpoint files of a training run: the small weights file, and the checkpoint directories.

A checkpoint holds only the trainable parameters (LoRA + head, and persistent buffers) when
part of the model is frozen, else the whole state dict (:func:`save_weights`). A run killed
while writing leaves a checkpoint that :func:`checkpoint_complete` rejects; resuming removes
checkpoints newer than the one resumed from and the events logged after it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from .errors import ModelError

log = logging.getLogger("readtax.train")

DATA_STATE = "readtax_data_state.json"
WEIGHTS = "readtax_weights.pt"
CHECKPOINT_PREFIX = "checkpoint-"


def checkpoint_state(model) -> tuple[dict, str]:
    """(state dict, kind): only trainable parameters + persistent buffers when anything is
    frozen (LoRA, frozen backbone), else the whole state dict."""
    params = list(model.named_parameters())
    frozen = any(not p.requires_grad for _, p in params)
    if not frozen:
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}, "full"
    from .models import trainable_state_dict

    sd = {k: v.detach().cpu() for k, v in trainable_state_dict(model).items()}
    pnames = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    for k, v in model.state_dict().items():
        if k not in pnames and k not in sd:  # buffers (e.g. norm statistics)
            sd[k] = v.detach().cpu()
    return sd, "trainable"


def save_weights(model, directory: str | os.PathLike[str]) -> None:
    import torch

    from .outputs import atomic_path

    sd, kind = checkpoint_state(model)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    with atomic_path(d / WEIGHTS) as tmp:
        torch.save({"kind": kind, "state_dict": sd}, tmp)


def load_weights(model, directory: str | os.PathLike[str]) -> None:
    """Load :func:`save_weights` output; every saved tensor must land in the model."""
    import torch

    path = Path(directory) / WEIGHTS
    if not path.is_file():
        raise ModelError("checkpoint has no readtax weights", path)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    sd = blob["state_dict"]
    res = model.load_state_dict(sd, strict=blob["kind"] == "full")
    if res.unexpected_keys:
        raise ModelError(f"checkpoint weights do not fit the model (unexpected: "
                         f"{', '.join(res.unexpected_keys[:5])})", path)


# -- checkpoint directories ------------------------------------------------------------------


def checkpoint_step(path: Path) -> int:
    name = path.name
    return int(name[len(CHECKPOINT_PREFIX):]) if name.startswith(CHECKPOINT_PREFIX) else -1


def checkpoint_complete(path: Path) -> bool:
    """A checkpoint is complete once the Trainer's state file, written after the weights,
    optimiser, scheduler and RNG files, parses and names the checkpoint's own step; the
    readtax weights and data position must be there and parse too. A run killed while it
    was writing a checkpoint leaves one that fails this test."""
    step = checkpoint_step(path)
    if step < 0 or not (path / WEIGHTS).is_file():
        return False
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        json.loads((path / DATA_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("global_step") == step


def latest_checkpoint(run: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint of a run directory (see :func:`checkpoint_complete`)."""
    d = Path(run) / "checkpoints"
    if not d.is_dir():
        return None
    done = [p for p in d.iterdir() if p.is_dir() and checkpoint_complete(p)]
    return max(done, key=checkpoint_step) if done else None


def drop_checkpoints_after(run: Path, step: int) -> None:
    """Remove checkpoints newer than the one resumed from: half-written by a killed run (or
    complete but about to be written again), they must not be picked or rotated in later."""
    d = run / "checkpoints"
    if not d.is_dir():
        return
    for p in d.iterdir():
        if checkpoint_step(p) > step:
            log.info("removing %s (newer than the checkpoint resumed from)", p)
            shutil.rmtree(p, ignore_errors=True)


def truncate_events(path: Path, step: int) -> None:
    """Drop metrics.jsonl events logged after ``step`` (they will be logged again), and a
    last line cut short by a killed run."""
    if not path.is_file() or step < 0:
        return
    from .outputs import atomic_open

    lines = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for ln in fh:
            if not ln.strip():
                continue
            try:
                event = json.loads(ln)
            except ValueError:
                continue  # a line the killed run did not finish
            if event.get("step", 0) <= step:
                lines.append(ln if ln.endswith("\n") else ln + "\n")
    with atomic_open(path) as fh:
        fh.writelines(lines)
