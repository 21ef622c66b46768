"""The training recipe: one object that sets up, trains, saves and resumes a read classifier.

The loop is Hugging Face's :class:`~transformers.Trainer` (mixed precision, gradient
accumulation, DDP under ``torchrun``, checkpoint rotation, TensorBoard, early stopping). What
readtax plugs in:

- data: our own ``DataLoader(dataset, batch_size=None)`` over a store or stream dataset that
  already shards by (rank, worker), so accelerate does not re-shard it; a wrapper reports every
  consumed batch to ``dataset.observe`` and the checkpoint stores ``dataset.state_dict()``
  (``readtax_data_state.json``) so that ``--resume`` continues right after the last batch
  trained on (``ignore_data_skip``: the Trainer never replays batches itself);
- evaluation: a streaming loop feeding :class:`~readtax.metrics.StreamingMetrics` batch by batch
  on a fixed stratified validation sample (no logits are gathered), summed over processes;
- checkpoints: only the trainable parameters (LoRA + head) when part of the model is frozen,
  the final model through :func:`readtax.models.save_classifier`.

Run directory: ``model/``, ``label_map.tsv``, ``config.yaml``, ``metrics.jsonl``,
``checkpoints/checkpoint-<step>/``, ``tb/``, ``plots/``, ``eval/`` (final validation report).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..batch import SeqBatch
from ..checkpoints import (
    DATA_STATE,
    checkpoint_step,
    drop_checkpoints_after,
    latest_checkpoint,
    truncate_events,
)
from ..config import RunConfig, dump_config, load_config, save_steps_of
from ..dist import DistInfo, barrier, dist_info, gather_objects
from ..errors import ReadtaxError, UsageError
from ..labels import LabelMap
from ..models.families import default_batch_size, default_lr
from ..sources import Collate, data_loader, open_data
from .data import ObservedLoader, estimate_train_reads, probe_read_length, probe_tokens
from .trainer import load_transformers, make_callbacks, make_trainer_class

log = logging.getLogger("readtax.train")


class TrainRecipe:
    """``setup()`` -> ``train()`` -> ``save()``; :meth:`resume` rebuilds one from a run dir."""

    def __init__(self, cfg: RunConfig, *, resume_from: str | None = None,
                 force: bool = False) -> None:
        self.cfg = cfg
        self.run = Path(cfg.output or ".")
        self.resume_from = resume_from
        self.force = force
        self.dist = DistInfo()
        self.model = None
        self.trainer = None
        self.train_dataset = None
        self.val_dataset = None
        self.val_lut: np.ndarray | None = None
        self.label_map: LabelMap | None = None
        self.num_classes = 0
        self.last_eval = None
        self.stopped_early = False
        self._train_loader: ObservedLoader | None = None
        self._eval_loader = None
        self._reads_before = 0  # reads trained on before this session (resume)
        self.train_reads = 0  # reads in one epoch of the training data (estimated for files)
        self._rate_mark = (time.monotonic(), 0)
        self._record_fh = None
        self._session_start = time.monotonic()

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def resume(cls, run_dir: str | os.PathLike[str], overrides=()) -> TrainRecipe:
        """A recipe continuing the run in ``run_dir`` from its last checkpoint."""
        run = Path(run_dir)
        if not (run / "config.yaml").is_file():
            raise UsageError(f"{run}: not a run directory (no config.yaml)")
        ckpt = latest_checkpoint(run)
        if ckpt is None:
            raise UsageError(f"{run}: no checkpoint to resume from")
        # A pause requested for the earlier session does not carry over to this one.
        pairs = [("train.stop_after", None), *overrides, ("output", str(run))]
        cfg = load_config(run / "config.yaml", pairs)
        return cls(cfg, resume_from=str(ckpt))

    def setup(self) -> TrainRecipe:
        """Process group, run directory, data, model and Trainer."""
        tf = load_transformers()
        import torch

        cfg = self.cfg
        cuda = torch.cuda.is_available()
        if int(os.environ.get("WORLD_SIZE", 1)) > 1:
            # Join the process group now (the Trainer's arguments would do it later) so that
            # ranks can synchronise around the run directory.
            from accelerate import PartialState

            PartialState(cpu=not cuda, backend=None if cuda else "gloo")
        self.dist = dist_info()
        if not self.dist.is_main:
            logging.getLogger("readtax").setLevel(logging.WARNING)
        self._prepare_run_dir()
        torch.manual_seed(cfg.seed)
        precision = self._precision(cuda)

        if cfg.train.batch_size is None:  # the saved config records the size used
            cfg.train.batch_size = default_batch_size(self._arch())
            log.info("batch size %d (the %s default)", cfg.train.batch_size, self._arch())
        # Data: the training label map decides the classes.
        mapping = None
        if cfg.data.mapping:
            from ..labels import load_mapping

            mapping = load_mapping(cfg.data.mapping)
        d = cfg.data
        train = open_data(d.train, "train", batch_size=cfg.train.batch_size, label_map=mapping,
                          dist=self.dist, seed=cfg.seed, labels=d.labels,
                          skip_unknown=d.skip_unknown, with_ids=cfg.train.record_reads,
                          augment_rc=d.augment_rc, balance_temperature=d.balance_temperature,
                          shuffle_buffer=d.shuffle_buffer)
        self.train_dataset = train.dataset
        label_map = train.label_map
        if label_map is None:
            raise UsageError("reads files need a class mapping: give data.mapping (--mapping)")
        self.label_map = label_map
        self.num_classes = len(label_map)
        if self.num_classes < 2:
            raise UsageError(f"training needs at least 2 classes, the data has {self.num_classes}")
        eval_bs = eval_batch_size(cfg)
        val = open_data(d.val, "eval", batch_size=eval_bs, label_map=label_map, dist=self.dist,
                        per_class=d.val_per_class, seed=cfg.seed, labels=d.labels,
                        skip_unknown=d.skip_unknown)
        self.val_dataset, self.val_lut = val.dataset, val.lut

        max_steps = self._resolve_max_steps()
        self.model = self._build_model(precision, cuda)
        if cfg.train.lr is None:
            cfg.train.lr = default_lr(self.model.arch, bool(self.model.options.lora))
            log.info("learning rate %g (the %s default)", cfg.train.lr, self.model.arch)
        if self.resume_from is not None:
            self._load_data_state(Path(self.resume_from))

        args = self.training_args(tf, max_steps, precision, cuda)
        trainer_cls, _ = make_trainer_class()
        JsonlLogger, StopAfter, ReadsProgress = make_callbacks()
        progress = ReadsProgress(self, cfg.train.progress) if self.dist.is_main else None
        callbacks = [JsonlLogger(self.run / "metrics.jsonl", progress)]
        if cfg.train.early_stopping_patience is not None:
            callbacks.append(tf.EarlyStoppingCallback(
                early_stopping_patience=cfg.train.early_stopping_patience,
                early_stopping_threshold=cfg.train.early_stopping_threshold))
        if cfg.train.stop_after is not None:
            callbacks.append(StopAfter(cfg.train.stop_after))
        if _tensorboard_available():
            tb = tf.integrations.TensorBoardCallback()
            tb.logging_dir = str(self.run / "tb")
            callbacks.append(tb)
        self.trainer = trainer_cls(model=self.model, args=args, train_dataset=self.train_dataset,
                                   eval_dataset=self.val_dataset, callbacks=callbacks,
                                   recipe=self)
        self.trainer.remove_callback(tf.trainer_callback.PrinterCallback)
        self.trainer.remove_callback(tf.trainer_callback.ProgressCallback)
        if progress is not None:
            self.trainer.add_callback(progress)
        if self.dist.is_main:
            self._write_run_files()
        return self

    def _precision(self, cuda: bool) -> str:
        p = self.cfg.train.precision
        if p == "auto":
            if not cuda:
                return "fp32"
            import torch

            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if p == "fp16" and not cuda:
            raise UsageError("train.precision fp16 needs a CUDA GPU (use fp32 or bf16 on CPU)")
        return p

    def _prepare_run_dir(self) -> None:
        from ..outputs import check_writable_dir

        run = self.run
        check_writable_dir(run / "config.yaml", what="run directory")
        existing = (run / "config.yaml").exists() or (run / "checkpoints").exists()
        if self.resume_from is None and self.dist.is_main and existing:
            if not self.force:
                raise UsageError(f"{run} already holds a run: use --resume {run} to continue "
                                 "it or --force to start over")
            for sub in ("checkpoints", "tb", "plots", "eval", "model", "debug"):
                shutil.rmtree(run / sub, ignore_errors=True)
            for f in ("metrics.jsonl", "config.yaml", "label_map.tsv"):
                (run / f).unlink(missing_ok=True)
        run.mkdir(parents=True, exist_ok=True)
        barrier()
        if self.resume_from is not None and self.dist.is_main:
            step = checkpoint_step(Path(self.resume_from))
            drop_checkpoints_after(run, step)
            truncate_events(run / "metrics.jsonl", step)

    def _resolve_max_steps(self) -> int:
        """``max_steps`` if set, else whole ``epochs`` over the training reads (no cap unless
        ``auto_max_steps``); the LR schedule is then built on this real step count."""
        t = self.cfg.train
        reads, exact = estimate_train_reads(self.cfg.data.train)
        self.train_reads = reads
        if t.max_steps is not None:
            return t.max_steps
        per_step = t.batch_size * t.grad_accum * self.dist.world_size
        steps = max(1, math.ceil(reads * t.epochs / per_step))
        capped = t.auto_max_steps is not None and steps > t.auto_max_steps
        if capped:
            steps = t.auto_max_steps
        log.info("max_steps %d (%s%s reads, %g epoch(s), %d reads per step%s)", steps,
                 "" if exact else "~", f"{reads:,}", t.epochs, per_step,
                 f", capped by auto_max_steps {t.auto_max_steps}" if capped else "")
        t.max_steps = steps  # the saved config records what was used (and resume reuses it)
        return steps

    def _arch(self) -> str:
        """The model family, before the model is built (family defaults need it)."""
        from ..models import detect_arch

        m = self.cfg.model
        try:
            return m.arch or (detect_arch(m.path) if m.path else "auto")
        except ReadtaxError:
            return "auto"  # build_classifier reports what is wrong with the directory

    def _build_model(self, precision: str, cuda: bool):
        from ..models import ModelOptions, build_classifier

        m = self.cfg.model
        dtype = m.dtype
        if dtype == "auto":
            # A frozen (or LoRA) backbone can sit in bf16: it gets no optimiser updates.
            lora = m.lora
            if lora is None:
                from ..models import LORA_DEFAULTS, detect_arch

                try:
                    lora = LORA_DEFAULTS[m.arch or detect_arch(m.path)][0]
                except (ReadtaxError, KeyError):
                    lora = False  # build_classifier reports what is wrong with the directory
            frozen = m.freeze_backbone or lora
            dtype = "bfloat16" if cuda and precision == "bf16" and frozen else "float32"
        opts = ModelOptions(
            pooling=m.pooling, dropout=m.dropout, freeze_backbone=m.freeze_backbone, lora=m.lora,
            lora_r=m.lora_r, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout,
            lora_targets=m.lora_targets, gradient_checkpointing=bool(m.gradient_checkpointing),
            dtype=dtype, max_length=m.max_length)
        model = build_classifier(m.path, self.label_map, arch=m.arch, options=opts,
                                 seed=self.cfg.seed)
        if m.gradient_checkpointing is None and self.checkpointing_needed(model, precision, cuda):
            from ..models import enable_gradient_checkpointing

            enable_gradient_checkpointing(model)
        n_all = sum(p.numel() for p in model.parameters())
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log.info("model %s (%s): %s parameters, %s trainable; %d classes", m.path, model.arch,
                 f"{n_all:,}", f"{n_train:,}", self.num_classes)
        return model

    def checkpointing_needed(self, model, precision: str, cuda: bool) -> bool:
        """Whether the estimated weights + activations of one training batch exceed 90% of the
        free GPU memory (never on CPU, where memory is not the limit worth the 1.3x work)."""
        if not cuda:
            return False
        import torch

        from ..models import activation_bytes

        tokens = probe_tokens(model, probe_read_length(self.cfg.data.train))
        elem = 4 if precision == "fp32" else 2
        params = sum(p.numel() * p.element_size() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        need = (params + trainable * 12  # fp32 grads + AdamW moments of what trains
                + activation_bytes(model, self.cfg.train.batch_size, tokens, elem))
        free, _ = torch.cuda.mem_get_info()
        on = need > 0.9 * free
        log.info("gradient checkpointing %s: ~%.1f GB needed for %d reads of %d tokens, "
                 "%.1f GB free", "on" if on else "off", need / 1e9, self.cfg.train.batch_size,
                 tokens, free / 1e9)
        return on

    def training_args(self, tf, max_steps: int, precision: str, cuda: bool):
        t = self.cfg.train
        warmup = t.warmup_steps if t.warmup_steps is not None else math.ceil(
            t.warmup_ratio * max_steps)
        sched = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}
        kw: dict[str, Any] = dict(
            output_dir=str(self.run / "checkpoints"),
            max_steps=max_steps,
            per_device_train_batch_size=t.batch_size,
            per_device_eval_batch_size=eval_batch_size(self.cfg),
            gradient_accumulation_steps=t.grad_accum,
            learning_rate=t.lr,
            weight_decay=t.weight_decay,
            lr_scheduler_type=sched[t.schedule],
            warmup_steps=min(warmup, max_steps),
            max_grad_norm=t.max_grad_norm,
            bf16=precision == "bf16",
            fp16=precision == "fp16",
            logging_strategy="steps",
            logging_steps=t.logging_steps,
            logging_first_step=True,
            eval_strategy="steps",
            eval_steps=t.eval_steps,
            save_strategy="steps",
            save_steps=save_steps_of(t),
            save_total_limit=t.save_total_limit,
            load_best_model_at_end=t.load_best_at_end,
            metric_for_best_model="eval_macro_f1",
            greater_is_better=True,
            ignore_data_skip=True,
            restore_callback_states_from_checkpoint=True,
            seed=self.cfg.seed,
            data_seed=self.cfg.seed,
            dataloader_num_workers=self.cfg.data.num_workers,
            report_to="none",
            disable_tqdm=True,
            use_cpu=not cuda,
            remove_unused_columns=False,
            label_names=["labels"],
            torch_compile=t.torch_compile,
            # The nan/inf filter reads the loss on the host every step (a device sync).
            logging_nan_inf_filter=False,
            # Fused AdamW (one kernel for all parameters), named so that no default change
            # can silently swap in the per-parameter loop.
            optim="adamw_torch_fused",
            # Every family's trainable parameters all get gradients (tests check it); only a
            # generic AutoModel backbone may carry unused parts (a pooler, say).
            ddp_find_unused_parameters=self.model is None or self.model.arch == "auto",
        )
        if not cuda and self.dist.world_size > 1:
            kw["ddp_backend"] = "gloo"
        if cuda:
            kw["tf32"] = True if torch_supports_tf32() else None
        return tf.TrainingArguments(**kw)

    # -- data loaders ----------------------------------------------------------------------------

    def make_loader(self, dataset, collate, num_workers: int, persistent: bool = False):
        import torch

        return data_loader(dataset, collate, num_workers=num_workers,
                           pin_memory=torch.cuda.is_available(), seed=self.cfg.seed,
                           persistent=persistent, prefetch_factor=4)

    def train_loader(self) -> ObservedLoader:
        collate = Collate(self.model.collator)
        loader = self.make_loader(self.train_dataset, collate, self.cfg.data.num_workers)
        record = self._recorder() if self.cfg.train.record_reads else None
        self._train_loader = ObservedLoader(loader, self.train_dataset,
                                            world_size=self.dist.world_size, record=record)
        self._rate_mark = (time.monotonic(), 0)
        return self._train_loader

    def eval_loader(self):
        """One loader for every evaluation of the session; its workers stay up in between
        (an evaluation every few thousand steps would otherwise start them all again)."""
        if self._eval_loader is None:
            collate = Collate(self.model.collator, self.val_lut, keep_batch=False)
            self._eval_loader = self.make_loader(self.val_dataset, collate,
                                             min(self.cfg.data.num_workers, 2), persistent=True)
        return self._eval_loader

    def _recorder(self):
        d = self.run / "debug"
        d.mkdir(parents=True, exist_ok=True)
        self._record_fh = open(d / f"reads_rank{self.dist.rank}.txt", "a",  # noqa: SIM115
                               encoding="utf-8")
        fh = self._record_fh

        def record(batch: SeqBatch) -> None:
            if batch.index is not None:
                fh.write("".join(f"{i}\n" for i in batch.index.tolist()))
            elif batch.ids is not None:
                fh.write("".join(f"{i}\n" for i in batch.ids))
            fh.flush()

        return record

    # -- data position ---------------------------------------------------------------------------

    def save_data_state(self, ckpt_dir: Path) -> None:
        """Gather every process's dataset position into ``ckpt/readtax_data_state.json``."""
        from ..outputs import atomic_open

        state = self.train_dataset.state_dict()
        reads = self._train_loader.reads if self._train_loader is not None else 0
        states = gather_objects({"state": state, "reads": reads})
        if self.dist.is_main:
            blob = {
                "format": 1,
                "world_size": self.dist.world_size,
                "batch_size": self.cfg.train.batch_size,
                "states": [s["state"] for s in states],
                "reads_seen": self._reads_before + sum(int(s["reads"]) for s in states),
            }
            with atomic_open(ckpt_dir / DATA_STATE) as fh:
                json.dump(blob, fh, indent=1)

    def _load_data_state(self, ckpt: Path) -> None:
        path = ckpt / DATA_STATE
        if not path.is_file():
            raise UsageError(f"{ckpt}: checkpoint has no {DATA_STATE}; cannot resume the data "
                             "position")
        with open(path, encoding="utf-8") as fh:
            blob = json.load(fh)
        states = blob["states"]
        rank_free = all(st.get("format", "").startswith("readtax.store/") for st in states)
        if rank_free:
            # A store position is (seed, epoch, global batches): any number of processes can
            # continue it with the same global batch size (the loader checks that).
            self.train_dataset.load_state_dict(states[0])
        else:
            if blob["world_size"] != self.dist.world_size:
                raise UsageError(f"{ckpt} was written by {blob['world_size']} process(es); "
                                 f"resume with the same number (now {self.dist.world_size})")
            if blob.get("batch_size", self.cfg.train.batch_size) != self.cfg.train.batch_size:
                raise UsageError(f"{ckpt} was trained with batch_size {blob['batch_size']}; "
                                 "resume with the same batch size")
            self.train_dataset.load_state_dict(states[self.dist.rank])
        self._reads_before = int(blob.get("reads_seen", 0))

    # -- throughput ------------------------------------------------------------------------------

    def reads_rate(self) -> float:
        """Reads/s over all processes since the start of this session."""
        if self._train_loader is None:
            return 0.0
        t0 = self._session_start
        dt = max(time.monotonic() - t0, 1e-9)
        return self._train_loader.reads * self.dist.world_size / dt

    def reads_seen(self) -> int:
        """Training reads consumed by all processes, earlier sessions included."""
        r = self._train_loader.reads if self._train_loader is not None else 0
        return self._reads_before + r * self.dist.world_size

    def epoch(self) -> float | None:
        """Passes over the training data so far: reads seen / read count."""
        if self.train_reads <= 0:
            return None
        return round(self.reads_seen() / self.train_reads, 4)

    def throughput(self) -> dict[str, float]:
        """Fields added to each training log: reads seen and reads/s since the last log."""
        if self._train_loader is None:
            return {}
        now = time.monotonic()
        t0, r0 = self._rate_mark
        r = self._train_loader.reads
        self._rate_mark = (now, r)
        w = self.dist.world_size
        return {"reads": self._reads_before + r * w,
                "reads_per_s": round((r - r0) * w / max(now - t0, 1e-9), 2)}

    # -- running ---------------------------------------------------------------------------------

    def train(self) -> dict:
        """Train to max_steps (or early stop / stop_after); returns the Trainer's metrics."""
        if self.trainer is None:
            self.setup()
        self._session_start = time.monotonic()
        try:
            out = self.trainer.train(resume_from_checkpoint=self.resume_from)
        finally:
            if self._record_fh is not None:
                self._record_fh.close()
                self._record_fh = None
        state = self.trainer.state
        self.stopped_early = state.global_step < state.max_steps
        return dict(out.metrics)

    def save(self) -> Path:
        """Final model, final validation report, plots; returns the run directory."""
        from ..evaluate import stream_eval
        from ..metrics import plot_curves, read_jsonl, write_report
        from ..models import save_classifier

        paused = (self.cfg.train.stop_after is not None
                  and self.trainer.state.global_step < self.trainer.state.max_steps)
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        if not paused:
            res = None
            if self.dist.is_main:
                save_classifier(model, self.run / "model")
            if self.cfg.train.final_eval:
                metrics = stream_eval(model, self.eval_loader(), self.num_classes,
                                      prepare=self.trainer._prepare_inputs)
                metrics.all_reduce()
                if self.dist.is_main:
                    res = metrics.compute(self.label_map)
                    res["step"] = self.trainer.state.global_step
                    write_report(res, self.run / "eval", self.label_map, metrics)
            if self.dist.is_main:
                from ..models.card import write_model_card

                write_model_card(self.run / "model", model, self.card_summary(), res)
        if self.dist.is_main:
            plot_curves(read_jsonl(self.run / "metrics.jsonl"), self.run / "plots")
        barrier()
        return self.run

    def card_summary(self) -> dict:
        """The training data and schedule, as the model card shows them."""
        cfg = self.cfg
        seen = self.throughput().get("reads")
        return {"training data": ", ".join(map(str, cfg.data.train)),
                "validation data": ", ".join(map(str, cfg.data.val)),
                "classes": self.num_classes,
                "optimiser steps": self.trainer.state.global_step,
                "reads seen": seen if seen is not None else "not recorded",
                "batch size (per process x processes x accumulation)":
                    f"{cfg.train.batch_size} x {self.dist.world_size} x {cfg.train.grad_accum}",
                "learning rate": cfg.train.lr,
                "seed": cfg.seed}

    def _write_run_files(self) -> None:
        dump_config(self.cfg, self.run / "config.yaml",
                    header="readtax train: the configuration this run used")
        self.label_map.write_tsv(self.run / "label_map.tsv")


def eval_batch_size(cfg: RunConfig) -> int:
    """Evaluation keeps no activations for backward: 4x the training batch unless set."""
    return cfg.train.eval_batch_size or 4 * cfg.train.batch_size


def torch_supports_tf32() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8


def _tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return False
    return True


def run_training(cfg: RunConfig, *, resume: str | os.PathLike[str] | None = None,
                 overrides=(), force: bool = False) -> TrainRecipe:
    """Set up, train and save; ``resume`` continues the run directory given.

    The run directory is locked for the whole run (by rank 0): a second run into it is
    refused at once instead of interleaving checkpoints with the first.
    """
    import contextlib

    from ..outputs import output_lock

    run = Path(resume) if resume is not None else Path(cfg.output or ".")
    lock = output_lock(run) if dist_info().is_main else contextlib.nullcontext()
    with lock:
        if resume is not None:
            recipe = TrainRecipe.resume(resume, overrides)
        else:
            recipe = TrainRecipe(cfg, force=force)
        recipe.setup()
        recipe.train()
        recipe.save()
    return recipe
