"""Training configuration: dataclasses with defaults and help, YAML files, ``key=value`` overrides.

A configuration has four parts, mirrored by the YAML layout::

    seed: 0
    output: runs/m1                 # the run directory
    data:  {train: [...], val: [...], val_per_class: 20, ...}
    model: {path: models/metagene-1, arch: metagene, lora: true, ...}
    train: {max_steps: 20000, batch_size: 64, lr: 1.0e-4, schedule: cosine, ...}

:func:`load_config` merges, in order, the defaults, a YAML file and overrides (``train.lr=3e-4``
or the CLI flags), converts values to the declared types and validates everything, raising one
:class:`ConfigError` that lists every problem found. :func:`dump_config` writes the YAML that a run
saves as ``RUN/config.yaml``; loading it back gives an equal configuration.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .models.families import ARCHS, CONFIG_DTYPES, FAMILIES, POOLINGS

SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DTYPES = CONFIG_DTYPES


class ConfigError(UsageError):
    """One or more configuration problems, all listed in the message."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        where = f"{source}: " if source else ""
        n = len(self.problems)
        head = f"{where}invalid configuration ({n} problem{'s' if n != 1 else ''})"
        super().__init__(head + ": " + "; ".join(self.problems))


def _f(default: Any, help: str, **kw: Any) -> Any:  # noqa: A002 - mirrors argparse's name
    """A dataclass field with help text (and ``choices``/``min`` for validation)."""
    meta = {"help": help, **kw}
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata=meta)
    return field(default=default, metadata=meta)


def _short(x: float) -> str:
    """``2e-2`` rather than ``0.02``: how learning rates are written."""
    mantissa, exp = f"{x:.0e}".split("e")
    return f"{mantissa}e{int(exp)}"


def _batch_size_defaults() -> str:
    """The families' default batch sizes in words: the exceptions, then the common one."""
    sizes = [f.batch_size for f in FAMILIES.values()]
    common = max(set(sizes), key=sizes.count)
    rest = [f"{f.name} {f.batch_size}" for f in FAMILIES.values() if f.batch_size != common]
    return ", ".join([*rest, f"others {common}"])


def _lr_defaults() -> str:
    """The families' default learning rates in words, families with one rate grouped."""
    groups: dict[str, list[str]] = {}
    for f in FAMILIES.values():
        rate = (_short(f.lr) if f.lr_lora in (None, f.lr)
                else f"{_short(f.lr_lora)} with LoRA / {_short(f.lr)} without")
        groups.setdefault(rate, []).append(f.name)
    return ", ".join(f"{' and '.join(names)} {rate}" for rate, names in groups.items())


@dataclass
class DataConfig:
    train: list[str] = _f([], "training data: one packed store directory, or FASTA/FASTQ files "
                              "(plain or gzip, streamed)")
    val: list[str] = _f([], "validation data (store or reads); a fixed stratified sample is "
                            "drawn from it once and used for every evaluation")
    val_per_class: int | None = _f(20, "validation reads per class in the fixed sample "
                                       "(null: all validation reads)", min=1)
    labels: str = _f("lbl", "label scheme of reads files: lbl, regex:<pattern>, tsv:<file>")
    mapping: str | None = _f(None, "mapping TSV (class_id, label_name, tax_id) for reads files; "
                                   "a store carries its own")
    skip_unknown: bool = _f(False, "skip reads whose class is not in the mapping instead of failing")
    shuffle_buffer: int = _f(65536, "reads held in the shuffle buffer when streaming reads files",
                             min=1)
    balance_temperature: float | None = _f(None, "store only: class sampling temperature "
                                                 "(null: plain shuffle, 0: uniform, 1: natural)",
                                           min=0.0)
    augment_rc: bool = _f(False, "reverse-complement half of the training reads at random")
    num_workers: int = _f(2, "DataLoader worker processes per training process", min=0)


@dataclass
class ModelConfig:
    path: str | None = _f(None, "model directory (from 'readtax init-model' or a Hugging Face "
                                "checkpoint directory)")
    arch: str | None = _f(None, "model family (default: detected from the directory)",
                          choices=ARCHS)
    pooling: str = _f("mean", "how token states become one read vector", choices=POOLINGS)
    dropout: float = _f(0.1, "dropout before the classification head", min=0.0, max=1.0)
    freeze_backbone: bool = _f(False, "train only the head (checkpoints then hold only the head)")
    lora: bool | None = _f(None, "LoRA adapters on the backbone (null: the family's default)")
    lora_r: int = _f(8, "LoRA rank", min=1)
    lora_alpha: float = _f(16.0, "LoRA alpha", min=0.0)
    lora_dropout: float = _f(0.0, "LoRA dropout (the METAGENE-1 paper used 0.1; each adapted "
                                  "projection then makes a dropped copy of its input)",
                             min=0.0, max=1.0)
    lora_targets: list[str] | None = _f(None, "module names that get LoRA adapters "
                                              "(null: the family's default)")
    gradient_checkpointing: bool | None = _f(None, "recompute activations in backward (less "
                                                   "memory, ~1.3x the work); null: on only when "
                                                   "the estimated activations would not fit in "
                                                   "free GPU memory (off on CPU)")
    dtype: str = _f("auto", "weight dtype (auto: float32, or bfloat16 for LoRA/frozen "
                            "backbones on a bf16 GPU)", choices=DTYPES)
    max_length: int | None = _f(None, "truncate reads to this many tokens (null: model limit)",
                                min=1)


@dataclass
class TrainConfig:
    max_steps: int | None = _f(None, "optimiser steps; overrides epochs (null: whole epochs over "
                                     "the training data's read count)", min=1)
    epochs: float = _f(1.0, "passes over the training data when max_steps is null (a store's "
                            "exact read count; reads files are estimated from their size)",
                       min=0.0)
    auto_max_steps: int | None = _f(None, "cap on the number of steps derived from epochs "
                                          "(null: no cap)", min=1)
    stop_after: int | None = _f(None, "stop (and save a checkpoint) after this many steps while "
                                      "keeping the schedule of max_steps; resume later", min=1)
    batch_size: int | None = _f(None, "reads per batch per process (null: the family's default: "
                                      f"{_batch_size_defaults()})", min=1)
    eval_batch_size: int | None = _f(None, "reads per evaluation batch (null: 4 x batch_size)", min=1)
    grad_accum: int = _f(1, "batches accumulated per optimiser step", min=1)
    lr: float | None = _f(None, "peak learning rate (null: the family's default: "
                                f"{_lr_defaults()})", min=0.0)
    weight_decay: float = _f(0.01, "AdamW weight decay", min=0.0)
    schedule: str = _f("cosine", "learning-rate schedule after warmup", choices=SCHEDULES)
    warmup_steps: int | None = _f(None, "linear warmup steps (null: warmup_ratio of max_steps)",
                                  min=0)
    warmup_ratio: float = _f(0.03, "warmup as a fraction of max_steps", min=0.0, max=1.0)
    max_grad_norm: float = _f(1.0, "gradient clipping norm (0: off)", min=0.0)
    precision: str = _f("auto", "auto (bf16 on a bf16 GPU, fp16 on other GPUs, fp32 on CPU), "
                                "bf16, fp16 or fp32", choices=PRECISIONS)
    eval_steps: int = _f(500, "evaluate on the validation sample every this many steps", min=1)
    save_steps: int | None = _f(None, "save a checkpoint every this many steps (null: every "
                                      "evaluation, eval_steps; a multiple of eval_steps when "
                                      "load_best_at_end)", min=1)
    save_total_limit: int = _f(3, "checkpoints kept (the best one is kept in addition)", min=1)
    logging_steps: int = _f(50, "log loss, learning rate and reads/s every this many steps",
                            min=1)
    early_stopping_patience: int | None = _f(10, "stop after this many evaluations without a "
                                                 "better macro-F1 (null: never)", min=1)
    early_stopping_threshold: float = _f(0.0, "minimum macro-F1 gain that counts as better",
                                         min=0.0)
    load_best_at_end: bool = _f(True, "the final model is the checkpoint with the best "
                                      "validation macro-F1")
    final_eval: bool = _f(True, "evaluate the final model on the validation sample into RUN/eval")
    torch_compile: bool = _f(False, "compile the model with torch.compile (faster steps on a "
                                    "GPU after a compilation pause; reads of varying length "
                                    "recompile for new shapes)")
    progress: bool | None = _f(None, "progress: true forces the live bar, false turns it off; "
                                     "null: a bar on a terminal, else a plain line every "
                                     "READTAX_PROGRESS_INTERVAL seconds (60 unless set)")
    record_reads: bool = _f(False, "debug: write the read indices/ids each process trained on "
                                   "to RUN/debug/")


def save_steps_of(t: TrainConfig) -> int:
    """The checkpoint interval in effect: ``save_steps``, or ``eval_steps`` when it is null."""
    return t.save_steps if t.save_steps is not None else t.eval_steps


@dataclass
class RunConfig:
    output: str | None = _f(None, "run directory (model, checkpoints, logs, plots)")
    seed: int = _f(0, "seed for initialisation, shuffling, augmentation and validation sample")
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "data"})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "model"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "training"})


SECTIONS = ("data", "model", "train")


# -- conversion --------------------------------------------------------------------------------


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"null", "none", "~", ""}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any) -> Any:
    """Convert ``value`` (YAML or a string from the command line) to type ``tp`` or raise."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        is_null = value is None or (isinstance(value, str) and value.strip().lower() in _NONE)
        if is_null and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0])
    if value is None:
        raise ValueError("must not be null")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            s = value.strip().replace("_", "")
            try:
                return int(s)
            except ValueError:
                try:
                    f = float(s)
                except ValueError:
                    pass
                else:
                    if f.is_integer():
                        return int(f)
        raise ValueError(f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ValueError(f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"expected a string, got {value!r}")
    if origin is list:
        if isinstance(value, str):
            value = _parse_list(value)
        if isinstance(value, (str, int, float)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list, got {value!r}")
        return [_coerce(v, args[0]) for v in value]
    raise TypeError(f"unsupported config type {tp!r}")  # pragma: no cover - programming error


def _parse_list(text: str) -> list[str]:
    """``a,b`` or ``[a, b]`` (YAML's flow syntax, quotes optional) -> ``["a", "b"]``."""
    s = text.strip()
    if s.startswith("[") or s.endswith("]"):
        if not (s.startswith("[") and s.endswith("]")):
            raise ValueError(f"expected a list such as [a, b], got {text!r}")
        s = s[1:-1]
    items = [v.strip() for v in s.split(",")]
    return [v[1:-1] if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"" else v
            for v in items if v]


def _section_cls(name: str) -> type:
    return _hints(RunConfig)[name]


def _known_keys() -> list[str]:
    keys = [f.name for f in fields(RunConfig) if f.name not in SECTIONS]
    for s in SECTIONS:
        keys += [f"{s}.{f.name}" for f in fields(_section_cls(s))]
    return keys


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, _known_keys(), n=1)
    if not close:
        tail = key.rsplit(".", 1)[-1]
        close = [k for k in _known_keys() if k.rsplit(".", 1)[-1] == tail][:1]
    return f" (did you mean {close[0]}?)" if close else ""


def _apply(cfg: RunConfig, key: str, value: Any, problems: list[str],
           given: dict[str, Any] | None = None) -> None:
    """Set ``key`` to ``value``; ``given`` records the value as written, for error messages."""
    parts = key.split(".")
    if len(parts) == 1 and parts[0] in SECTIONS:
        if not isinstance(value, dict):
            problems.append(f"{key}: expected a mapping of options, got {value!r}")
            return
        for k, v in value.items():
            _apply(cfg, f"{key}.{k}", v, problems, given)
        return
    if len(parts) == 1:
        target, name = cfg, parts[0]
    elif len(parts) == 2 and parts[0] in SECTIONS:
        target, name = getattr(cfg, parts[0]), parts[1]
    else:
        problems.append(f"unknown option {key!r}{_suggest(key)}")
        return
    hints = _hints(type(target))
    if name not in hints or name in SECTIONS and target is cfg:
        problems.append(f"unknown option {key!r}{_suggest(key)}")
        return
    try:
        setattr(target, name, _coerce(value, hints[name]))
    except ValueError as exc:
        problems.append(f"{key}: {exc}")
    if given is not None:
        given[key] = value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """``["train.lr=3e-4", "data.train=a.fa,b.fa"]`` -> ``[(key, raw value)]``."""
    out = []
    problems = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"override {item!r} is not key=value")
            continue
        out.append((key.strip(), value))
    if problems:
        raise ConfigError(problems)
    return out


def read_yaml(path: str | os.PathLike[str]) -> dict:
    """A YAML mapping from ``path`` (errors name the file and line)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no such configuration file")
    try:
        with open(p, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{p}:{line} not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{p}: expected a mapping of options at the top level")
    return data


def load_config(path: str | os.PathLike[str] | None = None, overrides=(),
                *, base: RunConfig | None = None, require_paths: bool = True) -> RunConfig:
    """Defaults (or ``base``) <- YAML file <- overrides; validated, all problems at once.

    ``overrides`` is a sequence of ``(dotted key, value)`` pairs or ``"key=value"`` strings.
    ``require_paths=False`` accepts a configuration without data, model and output (a
    template such as the shipped configs).
    """
    import copy

    cfg = copy.deepcopy(base) if base is not None else RunConfig()
    problems: list[str] = []
    given: dict[str, Any] = {}
    source = None
    if path is not None:
        source = str(path)
        for key, value in read_yaml(path).items():
            _apply(cfg, str(key), value, problems, given)
    pairs = [parse_overrides([o])[0] if isinstance(o, str) else o for o in overrides]
    for key, value in pairs:
        _apply(cfg, key, value, problems, given)
    problems += validate(cfg, require_paths=require_paths, given=given)
    if problems:
        raise ConfigError(problems, source)
    return cfg


def validate(cfg: RunConfig, *, require_paths: bool = True,
             given: dict[str, Any] | None = None) -> list[str]:
    """Every problem with ``cfg`` (empty when valid); values in ``given`` (key -> the value as
    written in the YAML file or on the command line) are quoted as written."""
    given = given or {}
    problems: list[str] = []
    for prefix, obj in [("", cfg)] + [(f"{s}.", getattr(cfg, s)) for s in SECTIONS]:
        for f in fields(obj):
            if prefix == "" and f.name in SECTIONS:
                continue
            v = getattr(obj, f.name)
            meta = f.metadata
            key = prefix + f.name
            if v is None:
                continue
            shown = repr(given.get(key, v))
            if "choices" in meta and v not in meta["choices"]:
                problems.append(f"{key}: {shown} is not one of {', '.join(meta['choices'])}")
            if "min" in meta and isinstance(v, (int, float)) and v < meta["min"]:
                problems.append(f"{key}: {shown} is below the minimum {meta['min']}")
            if "max" in meta and isinstance(v, (int, float)) and v > meta["max"]:
                problems.append(f"{key}: {shown} is above the maximum {meta['max']}")
    t, d, m = cfg.train, cfg.data, cfg.model
    if t.max_steps is None and t.epochs <= 0:
        problems.append("train.epochs: must be above 0 when train.max_steps is null")
    if t.load_best_at_end and t.eval_steps >= 1 and save_steps_of(t) % t.eval_steps:
        problems.append(f"train.save_steps ({given.get('train.save_steps', t.save_steps)!r}) "
                        f"must be a multiple of train.eval_steps "
                        f"({given.get('train.eval_steps', t.eval_steps)!r}) when "
                        "train.load_best_at_end is true")
    if t.early_stopping_patience is not None and not t.load_best_at_end:
        problems.append("train.early_stopping_patience needs train.load_best_at_end: true "
                        "(or set the patience to null)")
    if t.stop_after is not None and t.max_steps is not None and t.stop_after > t.max_steps:
        problems.append(f"train.stop_after ({t.stop_after}) exceeds train.max_steps "
                        f"({t.max_steps})")
    if m.freeze_backbone and m.lora:
        problems.append("model.freeze_backbone and model.lora: choose one (LoRA already "
                        "freezes the backbone weights)")
    if d.labels != "lbl" and not (d.labels.startswith("regex:") or d.labels.startswith("tsv:")):
        problems.append(f"data.labels: {d.labels!r} is not lbl, regex:<pattern> or tsv:<file>")
    if require_paths:
        if not d.train:
            problems.append("data.train: no training data (give --train)")
        if not d.val:
            problems.append("data.val: no validation data (give --val)")
        if not m.path:
            problems.append("model.path: no model directory (give --model)")
        if not cfg.output:
            problems.append("output: no run directory (give -o)")
    return problems


# -- writing and describing --------------------------------------------------------------------


def to_dict(cfg: RunConfig) -> dict:
    return asdict(cfg)


def dump_config(cfg: RunConfig, path: str | os.PathLike[str] | None = None,
                header: str | None = None) -> str:
    """YAML text of ``cfg`` (written atomically to ``path`` if given)."""
    import yaml

    text = yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    if path is not None:
        from .outputs import atomic_open

        with atomic_open(path) as fh:
            fh.write(text)
    return text


def describe() -> str:
    """Every option with its default and help, for ``readtax train --config-help``."""
    lines = []
    for key in _known_keys():
        section, _, name = key.rpartition(".")
        cls = _section_cls(section) if section else RunConfig
        f = next(x for x in fields(cls) if x.name == name)
        default = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        if is_dataclass(default):
            continue
        extra = f" [{', '.join(f.metadata['choices'])}]" if "choices" in f.metadata else ""
        lines.append(f"{key} (default {default!r}){extra}\n    {f.metadata.get('help', '')}")
    return "\n".join(lines) + "\n"
