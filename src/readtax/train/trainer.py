"""readtax's Hugging Face ``Trainer`` subclass and callbacks, built on first use so that
importing readtax does not import transformers.

The subclass takes its data loaders from the recipe, evaluates by streaming metrics (no logits
gathered), checkpoints only the trainable weights plus the data position, and reports reads/s
and a reads-based epoch; the callbacks write ``metrics.jsonl``, show progress and stop early
after a given step without changing the ``max_steps`` schedule.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..checkpoints import CHECKPOINT_PREFIX, load_weights, save_weights
from ..errors import require

log = logging.getLogger("readtax.train")

if TYPE_CHECKING:
    from .recipe import TrainRecipe


def load_transformers():
    require("torch")
    return require("transformers")


def make_trainer_class():
    tf = load_transformers()
    import torch

    class ReadtaxTrainer(tf.Trainer):
        """Trainer with readtax data loaders, streaming evaluation and small checkpoints."""

        def __init__(self, *args, recipe: TrainRecipe, **kw) -> None:
            super().__init__(*args, **kw)
            self.recipe = recipe
            # Our forward returns a per-batch mean loss and ignores num_items_in_batch:
            # let the Trainer divide by the accumulation steps itself.
            self.model_accepts_loss_kwargs = False

        def _prepare_input(self, data):
            # Batches come from pinned memory: copy without blocking the host.
            if isinstance(data, torch.Tensor):
                return data.to(self.args.device, non_blocking=True)
            return super()._prepare_input(data)

        def get_train_dataloader(self):
            return self.recipe.train_loader()

        def get_eval_dataloader(self, eval_dataset=None):
            return self.recipe.eval_loader()

        def evaluation_loop(self, dataloader, description, prediction_loss_only=None,
                            ignore_keys=None, metric_key_prefix="eval"):
            from ..evaluate import stream_eval

            metrics = stream_eval(self.model, dataloader, self.recipe.num_classes,
                                  prepare=self._prepare_inputs)
            metrics.all_reduce()
            self.recipe.last_eval = metrics
            res = metrics.scalars()
            out = {f"{metric_key_prefix}_{k}": v for k, v in res.items()
                   if k not in ("num_classes",)}
            return tf.trainer_utils.EvalLoopOutput(predictions=None, label_ids=None,
                                                   metrics=out, num_samples=metrics.total)

        def _save(self, output_dir=None, state_dict=None) -> None:
            if not self.args.should_save:
                return
            output_dir = output_dir or self.args.output_dir
            save_weights(self.accelerator.unwrap_model(self.model), output_dir)

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None) -> None:
            load_weights(model if model is not None else self.model, resume_from_checkpoint)

        def _load_best_model(self) -> None:
            ckpt = self.state.best_model_checkpoint
            log.info("loading the best checkpoint %s (macro-F1 %.4f)", ckpt,
                     self.state.best_metric or 0.0)
            load_weights(self.accelerator.unwrap_model(self.model), ckpt)

        def _save_checkpoint(self, model, trial) -> None:
            from ..outputs import no_space_as_error

            out = Path(self._get_output_dir(trial)) / f"{CHECKPOINT_PREFIX}{self.state.global_step}"
            with no_space_as_error(out):  # the optimiser/RNG files are torch.save's own
                self.recipe.save_data_state(out)
                super()._save_checkpoint(model, trial)

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if "loss" in logs:
                logs.update(self.recipe.throughput())
            # The Trainer logs state.epoch; ours is endless and bounded by max_steps, so its own
            # count (steps / estimated steps) means nothing: use reads seen / read count.
            epoch = self.recipe.epoch()
            if epoch is not None:
                self.state.epoch = epoch
            super().log(logs, start_time)

    return ReadtaxTrainer, torch


def make_callbacks():
    tf = load_transformers()

    class JsonlLogger(tf.TrainerCallback):
        """Appends each log/eval event to RUN/metrics.jsonl and mirrors it to the log as
        ``step N: key=value ...`` (one format, on a terminal or not)."""

        def __init__(self, path: Path, progress: ReadsProgress | None = None) -> None:
            self.path = path
            self.progress = progress

        def on_log(self, args, state, control, logs=None, **kw):
            if not state.is_world_process_zero or not logs:
                return
            event = {"step": state.global_step, "time": round(time.time(), 3), **logs}
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(event, default=float) + "\n")
            if self.progress is not None and self.progress.bar is not None:
                self.progress.bar.clear()  # the log line takes the bar's place; it comes back
            log.info("%s", format_log_line(state.global_step, logs))

    class StopAfter(tf.TrainerCallback):
        """Save and stop after ``step`` optimiser steps, keeping the max_steps schedule."""

        def __init__(self, step: int) -> None:
            self.step = step

        def on_step_end(self, args, state, control, **kw):
            if self.step <= state.global_step < state.max_steps:
                control.should_save = True
                control.should_training_stop = True
            return control

    class ReadsProgress(tf.TrainerCallback):
        """Steps, ETA and reads/s through :class:`readtax.progress.Progress` (a live bar on a
        terminal, a plain line every READTAX_PROGRESS_INTERVAL seconds otherwise)."""

        def __init__(self, recipe: TrainRecipe, enabled: bool | None) -> None:
            self.recipe = recipe
            self.enabled = enabled
            self.bar = None

        def on_train_begin(self, args, state, control, **kw):
            from ..progress import Progress

            if state.is_world_process_zero:
                self.bar = Progress(state.max_steps, "train", unit="steps", enabled=self.enabled,
                                    initial=state.global_step)

        def on_step_end(self, args, state, control, **kw):
            if self.bar is not None:
                self.bar.update(state.global_step, f"{self.recipe.reads_rate():,.0f} reads/s")

        def on_train_end(self, args, state, control, **kw):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return JsonlLogger, StopAfter, ReadsProgress


def _short(v: float) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def format_log_line(step: int, logs: dict) -> str:
    """``step N: key=value ...`` over the numeric fields of a Trainer log event."""
    shown = " ".join(f"{k}={_short(v)}" for k, v in logs.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool))
    return f"step {step}: {shown}"
