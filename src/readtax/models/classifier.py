"""One classifier shape for every family: backbone -> pooling -> dropout -> linear head.

:func:`build_classifier` puts a fresh head (and LoRA adapters if asked) on a backbone directory;
:func:`save_classifier` writes the whole classifier as one directory that
:func:`load_classifier` reads back offline::

    MODEL/readtax_model.json   arch, options, classes, where the backbone weights are
    MODEL/label_map.tsv        the class order (LabelMap.write_tsv)
    MODEL/config.json          the backbone's config, in its family's own format, plus the
                               Hugging Face label fields (id2label, label2id, num_labels)
    MODEL/README.md            a model card (:mod:`.card`)
    MODEL/model.safetensors    backbone weights under the family's own key names (omitted when a
                               large frozen/LoRA backbone stays with its base model directory)
    MODEL/tokenizer files      copied verbatim (tokenizer.json, vocab.txt, ...)
    MODEL/head.safetensors     the linear head
    MODEL/adapter/             LoRA weights in PEFT's format (only with LoRA):
                               adapter_config.json + adapter_model.safetensors, which
                               ``peft.PeftModel.from_pretrained(backbone, MODEL/adapter)`` loads
                               onto the backbone (for the transformers families, the model that
                               ``AutoModel.from_pretrained(MODEL)`` returns)

LoRA weights may also come as ``MODEL/adapter.safetensors`` under readtax's own key names;
:func:`load_classifier` reads both layouts.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers.utils import ModelOutput

from .. import __version__
from ..errors import ModelError, UsageError
from ..labels import LabelMap, load_mapping
from .card import CARD_FILE, add_label_fields, model_card
from .families import LORA_DEFAULTS, POOLINGS, WEIGHT_DTYPES, family
from .registry import (
    MODEL_FILE,
    Backbone,
    check_arch,
    detect_arch,
    load_backbone,
    required_files,
    resolve_model_dir,
)

FORMAT_VERSION = 1
# Backbones above this size are not copied into a saved classifier when they were not trained
# (frozen or LoRA): the classifier then points at the base model directory instead.
COPY_FROZEN_BACKBONE_LIMIT = 1 << 30


@dataclass
class ModelOptions:
    """How the classifier is built around the backbone."""

    pooling: str = "mean"  # mean over real tokens (default), cls (first token), max
    dropout: float = 0.1  # before the linear head
    freeze_backbone: bool = False  # train the head (and LoRA adapters) only
    lora: bool | None = None  # None: the family's default (METAGENE-1: on, others: off)
    lora_r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.0  # >0 costs a dropout copy of the input per adapted projection
    lora_targets: list[str] | None = None  # module name suffixes; None: the family's default
    gradient_checkpointing: bool = False
    dtype: str = "float32"  # backbone weights: float32, bfloat16, float16 (the head stays fp32)
    max_length: int | None = None  # tokens per read incl. specials; None: the family's limit

    def __post_init__(self) -> None:
        p = []
        if self.pooling not in POOLINGS:
            p.append(f"pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}")
        if self.dtype not in WEIGHT_DTYPES:
            p.append(f"dtype {self.dtype!r} is not one of {', '.join(WEIGHT_DTYPES)}")
        if not isinstance(self.dropout, int | float) or not 0 <= self.dropout < 1:
            p.append(f"dropout {self.dropout!r} must be in [0, 1)")
        if not isinstance(self.lora_dropout, int | float) or not 0 <= self.lora_dropout < 1:
            p.append(f"lora_dropout {self.lora_dropout!r} must be in [0, 1)")
        if isinstance(self.lora_r, bool) or not isinstance(self.lora_r, int) or self.lora_r < 1:
            p.append(f"lora_r {self.lora_r!r} must be a positive integer")
        if not isinstance(self.lora_alpha, int | float) or self.lora_alpha <= 0:
            p.append(f"lora_alpha {self.lora_alpha!r} must be positive")
        if self.lora not in (None, True, False):
            p.append(f"lora {self.lora!r} must be true, false or null (family default)")
        if self.lora_targets is not None:
            if isinstance(self.lora_targets, str):
                self.lora_targets = [t.strip() for t in self.lora_targets.split(",") if t.strip()]
            if not self.lora_targets or not all(isinstance(t, str) and t for t in self.lora_targets):
                p.append(f"lora_targets {self.lora_targets!r} must be a non-empty list of "
                         "module names")
            else:
                self.lora_targets = list(self.lora_targets)
        if self.max_length is not None and (isinstance(self.max_length, bool)
                                            or not isinstance(self.max_length, int)
                                            or self.max_length < 1):
            p.append(f"max_length {self.max_length!r} must be a positive integer or null")
        for name in ("freeze_backbone", "gradient_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                p.append(f"{name} {getattr(self, name)!r} must be true or false")
        if p:
            raise UsageError("model options: " + "; ".join(p))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UsageError(f"model options: unknown option(s) {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(known))})")
        return cls(**d)


@dataclass
class ClassifierOutput(ModelOutput):
    """``loss`` (when labels were given) first, so Hugging Face ``Trainer`` finds it."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Pool ``[B, S, H]`` over the positions where ``mask`` is 1."""
    if how == "cls":
        return hidden[:, 0]
    m = mask.to(hidden.dtype).unsqueeze(-1)
    if how == "mean":
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    if how == "max":
        out = hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).amax(1)
        return torch.where(m.sum(1) > 0, out, torch.zeros_like(out))  # empty read -> 0
    raise UsageError(f"pooling {how!r} is not one of {', '.join(POOLINGS)}")


class ReadClassifier(nn.Module):
    """Backbone -> pooling -> dropout -> linear head over ``label_map``'s classes."""

    # Tell HF Trainer the loss is a per-batch mean (it then scales for gradient accumulation).
    accepts_loss_kwargs = False

    def __init__(self, backbone: Backbone, label_map: LabelMap, arch: str,
                 options: ModelOptions, source_dir: Path | None = None) -> None:
        super().__init__()
        if len(label_map) < 1:
            raise ModelError("the label map has no classes")
        self.backbone = backbone.module
        self.dropout = nn.Dropout(options.dropout)
        self.head = nn.Linear(backbone.hidden_size, len(label_map))
        self.label_map = label_map
        self.arch = arch
        self.options = options
        self.collator = backbone.collator
        self.hidden_size = backbone.hidden_size
        self.backbone_config = backbone.config
        self.tokenizer_files = backbone.tokenizer_files
        self.source_dir = source_dir  # where the backbone weights came from
        self.base_model: Path | None = None  # set when weights stay in a base model directory
        self.lora_merged = False  # merge_lora folded the adapters in: inference only

    @property
    def num_classes(self) -> int:
        return len(self.label_map)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **_) -> ClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.backbone(input_ids, attention_mask)
        pooled = pool(hidden.float(), attention_mask, self.options.pooling)
        logits = self.head(self.dropout(pooled).to(self.head.weight.dtype))
        loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            n = (labels != -100).sum()
            total = F.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="sum")
            loss = total / n.clamp(min=1)  # a batch of unlabelled reads gives 0, not NaN
        return ClassifierOutput(loss=loss, logits=logits)

    def check_label_map(self, other: LabelMap, source: str | os.PathLike[str] | None = None
                        ) -> None:
        """Raise ModelError unless ``other`` has the same classes in the same order."""
        if other == self.label_map:
            return
        a, b = self.label_map, other
        if len(a) != len(b):
            why = f"the model has {len(a)} classes, the data {len(b)}"
        else:
            i = next(i for i in range(len(a)) if (int(a.class_ids[i]), a.names[i],
                     int(a.tax_ids[i])) != (int(b.class_ids[i]), b.names[i], int(b.tax_ids[i])))
            why = (f"class {i} is {int(a.class_ids[i])} {a.names[i]!r} in the model but "
                   f"{int(b.class_ids[i])} {b.names[i]!r} in the data")
        raise ModelError(f"the model's label map disagrees with the data's: {why}", source)


# -- building ----------------------------------------------------------------------------------


def _article(word: str) -> str:
    """English indefinite article for a family name (``an auto model``, ``a metagene model``)."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def _resolved(arch: str, options: ModelOptions) -> ModelOptions:
    """Options with the family defaults filled in (what a saved classifier records)."""
    default_on, default_targets = LORA_DEFAULTS[arch]
    d = options.to_dict()
    if d["lora"] is None:
        d["lora"] = default_on
    if d["lora"] and d["lora_targets"] is None:
        if default_targets is None:
            raise UsageError(f"LoRA on {_article(arch)} {arch} model needs lora_targets (module "
                             "names); this family has no default")
        d["lora_targets"] = list(default_targets)
    return ModelOptions.from_dict(d)


def _check_files(arch: str, d: Path) -> None:
    for name in required_files(arch):
        if not (d / name).is_file():
            raise ModelError(f"missing tokenizer file {name} for {_article(arch)} {arch} model", d)


def _lora_config(options: ModelOptions, base_model: str | None = None):
    from peft import LoraConfig

    return LoraConfig(r=options.lora_r, lora_alpha=options.lora_alpha,
                      lora_dropout=options.lora_dropout, target_modules=list(options.lora_targets),
                      bias="none", base_model_name_or_path=base_model)


def _add_lora(module: nn.Module, options: ModelOptions, arch: str) -> None:
    from peft import inject_adapter_in_model

    names = [n for n, _ in module.named_modules() if n]
    missing = [t for t in options.lora_targets
               if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n, m in module.named_modules()
                         if n and not list(m.children())})
        raise ModelError(f"LoRA target module(s) {', '.join(missing)} not found in the {arch} "
                         f"backbone (its layer names: {', '.join(leaves[:30])})")
    config = _lora_config(options)
    try:
        inject_adapter_in_model(config, module)
    except (ValueError, TypeError) as exc:
        raise ModelError(f"cannot add LoRA to the {arch} backbone: {exc}") from None
    for name, p in module.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()  # adapters train in fp32 even on a bf16 backbone
    for m in module.modules():
        if hasattr(m, "cast_input_dtype_enabled"):
            # peft would copy every adapter input to fp32 (the adapters' dtype); under autocast
            # the adapter matmuls run in the compute dtype anyway, so the copy is pure cost.
            m.cast_input_dtype_enabled = False


def merge_lora(model: ReadClassifier) -> ReadClassifier:
    """Fold the LoRA adapters into the backbone weights and drop the adapter layers (for
    prediction: plain linear layers, same outputs up to rounding). Returns ``model``."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    parents = [(parent, name, child) for parent in model.backbone.modules()
               for name, child in parent.named_children() if isinstance(child, BaseTunerLayer)]
    for parent, name, child in parents:
        child.merge()
        setattr(parent, name, child.get_base_layer())
    model.lora_merged = bool(parents)
    return model


def _finish(model: ReadClassifier) -> None:
    """Apply freezing, LoRA trainability and gradient checkpointing to an assembled model."""
    opt = model.options
    if opt.lora or opt.freeze_backbone:
        for name, p in model.backbone.named_parameters():
            p.requires_grad = bool(opt.lora) and "lora_" in name
    if opt.gradient_checkpointing:
        enable_gradient_checkpointing(model)


def enable_gradient_checkpointing(model: ReadClassifier) -> None:
    """Recompute backbone activations in the backward pass (less memory, ~1.3x the work)."""
    model.options.gradient_checkpointing = True
    inner = getattr(model.backbone, "model", None)
    if inner is not None and hasattr(inner, "gradient_checkpointing_enable"):
        inner.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.backbone.gradient_checkpointing = True


def activation_bytes(model: ReadClassifier, batch_size: int, tokens: int,
                     elem_bytes: int = 2) -> int:
    """Rough bytes of the activations a training step keeps for backward without
    recomputation: per layer and token ~10 hidden-size and 3 intermediate-size vectors (inputs
    of the projections, norms, residuals and the gated MLP; attention itself runs in a fused
    kernel that keeps no S x S matrix)."""
    cfg = model.backbone_config or {}
    h = int(cfg.get("hidden_size", model.hidden_size))
    inter = int(cfg.get("intermediate_size", 4 * h))
    layers = int(cfg.get("num_hidden_layers", cfg.get("num_layers", 1)))
    return layers * batch_size * tokens * (10 * h + 3 * inter) * elem_bytes


def _read_meta(d: Path) -> dict:
    path = d / MODEL_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"missing {MODEL_FILE}", d) from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"not valid JSON: {exc}", path) from None
    if meta.get("format") != "readtax-model" or meta.get("version", 0) > FORMAT_VERSION:
        raise ModelError(f"unknown model format {meta.get('format')!r} version "
                         f"{meta.get('version')!r}", path)
    return meta


def _weights_dir(d: Path, meta: dict) -> Path:
    if meta.get("backbone_weights", True):
        return d
    base = Path(meta["base_model"])
    if not base.is_dir():
        raise ModelError(f"this classifier's backbone weights are in its base model {base}, "
                         "which no longer exists", d / MODEL_FILE)
    return base


def _assemble(model_dir: Path, label_map: LabelMap, arch: str, options: ModelOptions,
              seed: int, weights_dir: Path | None) -> ReadClassifier:
    _check_files(arch, model_dir)
    backbone = load_backbone(arch, model_dir, dtype=options.dtype,
                             max_length=options.max_length, weights_dir=weights_dir)
    with torch.random.fork_rng(devices=[]):  # a seeded head without touching the global RNG
        torch.manual_seed(seed)
        model = ReadClassifier(backbone, label_map, arch, options,
                               source_dir=weights_dir or model_dir)
        if options.lora:
            _add_lora(model.backbone, options, arch)
    _finish(model)
    return model


def build_classifier(model_dir: str | os.PathLike[str], label_map: LabelMap, *,
                     arch: str | None = None, options: ModelOptions | None = None,
                     seed: int = 0) -> ReadClassifier:
    """A new classifier: the backbone in ``model_dir`` plus a seeded head over ``label_map``.

    ``model_dir`` is a backbone directory (a real checkpoint or ``init-model`` output) or a saved
    readtax classifier without LoRA (its backbone is reused, its head is not).
    """
    d = Path(model_dir)
    weights_dir = None
    if (d / MODEL_FILE).is_file():
        meta = _read_meta(d)
        if meta.get("options", {}).get("lora"):
            raise ModelError("this saved classifier holds a LoRA adapter; continue from it with "
                             "load_classifier, or start from its base model", d)
        weights_dir = _weights_dir(d, meta)
        arch = arch or meta["arch"]
    arch = check_arch(arch) if arch else detect_arch(d)
    options = _resolved(arch, options or ModelOptions())
    return _assemble(d, label_map, arch, options, seed, weights_dir)


# -- saving and loading ------------------------------------------------------------------------


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the parameters being trained (head, LoRA adapters...): small checkpoints."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`trainable_state_dict`; every trainable parameter must be present."""
    want = {n for n, p in model.named_parameters() if p.requires_grad}
    missing, extra = sorted(want - set(state)), sorted(set(state) - want)
    if missing or extra:
        raise ModelError(f"checkpoint does not fit the model (missing {missing[:5]}, "
                         f"unexpected {extra[:5]})")
    model.load_state_dict(state, strict=False)


def _clean_backbone_state(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """Backbone weights under their original names (LoRA wrappers removed)."""
    out = {}
    for k, v in backbone.state_dict().items():
        if "lora_" in k:
            continue
        out[k.replace(".base_layer.", ".")] = v
    return out


def save_safetensors(state: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    seen: set[int] = set()
    tensors = {}
    for k, v in state.items():
        v = v.detach().contiguous()
        ptr = v.untyped_storage().data_ptr()
        if ptr in seen:  # safetensors refuses shared storage: give duplicates their own copy
            v = v.clone()
        seen.add(ptr)
        tensors[k] = v.cpu()
    save_file(tensors, str(path), metadata={"format": "pt"})


def _write_json(obj: dict, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _save_backbone(model: ReadClassifier, out: Path, weights: bool) -> None:
    arch = model.arch
    state = _clean_backbone_state(model.backbone) if weights else None
    if family(arch).transformers_classes is not None:
        inner = model.backbone.model
        inner.config.save_pretrained(str(out))
        if state is not None:
            save_safetensors({k.removeprefix("model."): v for k, v in state.items()},
                             out / "model.safetensors")
    elif arch == "dnabert2":
        from .dnabert2 import official_state_dict

        _write_json(model.backbone_config, out / "config.json")
        if state is not None:
            save_safetensors(official_state_dict(state), out / "model.safetensors")
    else:  # kmer-cnn
        _write_json(model.backbone_config, out / "config.json")
        if state is not None:
            save_safetensors(state, out / "model.safetensors")
    for name, data in model.tokenizer_files.items():
        (out / name).write_bytes(data)


def _backbone_bytes(model: ReadClassifier) -> int:
    return sum(p.numel() * p.element_size() for p in model.backbone.parameters())


def save_classifier(model: ReadClassifier, out_dir: str | os.PathLike[str], *,
                    backbone_weights: bool | None = None) -> None:
    """Write ``model`` as one directory (atomically: a temporary directory renamed at the end).

    ``backbone_weights``: copy the backbone weights (default: yes, unless the backbone was not
    trained and is over 1 GiB; the classifier then refers to its base model directory).
    """
    if model.lora_merged:
        raise ModelError("this classifier's LoRA adapters were merged for inference; save the "
                         "unmerged model")
    out = Path(out_dir)
    if out.exists() and not (out / MODEL_FILE).is_file() and (
            not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not a saved readtax model: not replacing it")
    trained_backbone = not (model.options.lora or model.options.freeze_backbone)
    if backbone_weights is None:
        backbone_weights = trained_backbone or _backbone_bytes(model) <= COPY_FROZEN_BACKBONE_LIMIT
    if not backbone_weights and trained_backbone:
        raise UsageError("the backbone was trained: its weights must be saved")
    base = None
    if not backbone_weights:
        base = model.base_model or model.source_dir
        if base is None:
            raise UsageError("no base model directory to refer to: save the backbone weights")
        base = Path(base).resolve()
    from ..outputs import atomic_dir

    # atomic_dir: a full disk (safetensors' own errors included) becomes one NoSpaceError
    # naming ``out``, and the files get 0666 & ~umask where safetensors creates them 0600.
    with atomic_dir(out) as tmp:
        _save_backbone(model, tmp, backbone_weights)
        add_label_fields(tmp / "config.json", list(model.label_map.names))
        (tmp / CARD_FILE).write_text(model_card(model), encoding="utf-8")
        save_safetensors({"weight": model.head.weight, "bias": model.head.bias},
                         tmp / "head.safetensors")
        if model.options.lora:
            _save_peft_adapter(model, tmp / ADAPTER_DIR, base)
        model.label_map.write_tsv(tmp / "label_map.tsv")
        meta = {
            "format": "readtax-model",
            "version": FORMAT_VERSION,
            "readtax_version": __version__,
            "arch": model.arch,
            "num_classes": model.num_classes,
            "hidden_size": model.hidden_size,
            "options": model.options.to_dict(),
            "backbone_weights": bool(backbone_weights),
            "base_model": None if base is None else str(base),
        }
        _write_json(meta, tmp / MODEL_FILE)


ADAPTER_DIR = "adapter"
PEFT_ADAPTER = "adapter_model.safetensors"
PEFT_ADAPTER_NAME = "default"  # the adapter name inject_adapter_in_model gives; PEFT files omit it


def _peft_prefix(model: ReadClassifier) -> str:
    """The backbone's state-dict prefix of the module PEFT wraps (an HF model sits in ``.model``)."""
    from .hf import HFBackbone

    return "model." if isinstance(model.backbone, HFBackbone) else ""


def _to_peft_key(key: str, prefix: str) -> str:
    """``model.layers.0.q_proj.lora_A.default.weight`` -> ``base_model.model.layers.0.q_proj.lora_A.weight``."""
    return "base_model.model." + key.removeprefix(prefix).replace(f".{PEFT_ADAPTER_NAME}.", ".")


def _from_peft_key(key: str, prefix: str) -> str:
    parts = key.removeprefix("base_model.model.").split(".")
    for i, part in enumerate(parts):
        if part.startswith("lora_"):
            parts.insert(i + 1, PEFT_ADAPTER_NAME)
            break
    return prefix + ".".join(parts)


def _save_peft_adapter(model: ReadClassifier, out: Path, base: Path | None) -> None:
    prefix = _peft_prefix(model)
    state = {_to_peft_key(k, prefix): v for k, v in model.backbone.state_dict().items()
             if "lora_" in k}
    config = _lora_config(model.options, None if base is None else str(base))
    config.save_pretrained(str(out))
    save_safetensors(state, out / PEFT_ADAPTER)


def _load_adapter(model: ReadClassifier, d: Path) -> None:
    """LoRA weights from ``adapter/`` (PEFT format) or ``adapter.safetensors`` (own key names)."""
    if (d / ADAPTER_DIR / PEFT_ADAPTER).is_file():
        name = f"{ADAPTER_DIR}/{PEFT_ADAPTER}"
        prefix = _peft_prefix(model)
        adapter = {_from_peft_key(k, prefix): v
                   for k, v in _load_safetensors(d / ADAPTER_DIR / PEFT_ADAPTER).items()}
    else:
        name = "adapter.safetensors"
        adapter = _load_safetensors(d / name)
    want = {k for k in model.backbone.state_dict() if "lora_" in k}
    if set(adapter) != want:
        raise ModelError(f"{name} does not fit the LoRA configuration", d)
    model.backbone.load_state_dict(adapter, strict=False)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelError(f"missing {path.name}", path.parent)
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors' errors have no common base class
        raise ModelError(f"{path.name} is damaged (truncated or overwritten: "
                         f"{type(exc).__name__}: {str(exc)[:120]})", path.parent) from None


def load_classifier(path: str | os.PathLike[str], *, device: str | torch.device = "cpu",
                    dtype: str | None = None, merge_adapters: bool = False) -> ReadClassifier:
    """Load a classifier written by :func:`save_classifier` (a run dir or its ``model/``).

    Offline: everything comes from the directory (or its recorded base model directory).
    Returned in eval mode; ``merge_adapters`` folds LoRA into the backbone (inference only:
    the result cannot be saved as a LoRA classifier again).
    """
    d = resolve_model_dir(path)
    meta = _read_meta(d)
    arch = check_arch(meta.get("arch", ""))
    options = ModelOptions.from_dict(meta.get("options", {}))
    if dtype is not None:
        options = ModelOptions.from_dict({**options.to_dict(), "dtype": dtype})
    if not (d / "label_map.tsv").is_file():
        raise ModelError("missing label_map.tsv", d)
    label_map = load_mapping(d / "label_map.tsv")
    weights_dir = _weights_dir(d, meta)
    model = _assemble(d, label_map, arch, options, 0, None if weights_dir == d else weights_dir)
    if weights_dir != d:
        model.base_model = weights_dir
    head = _load_safetensors(d / "head.safetensors")
    if tuple(head["weight"].shape) != tuple(model.head.weight.shape):
        raise ModelError(f"head has shape {tuple(head['weight'].shape)}, expected "
                         f"{tuple(model.head.weight.shape)} ({model.num_classes} classes)", d)
    model.head.load_state_dict(head)
    if options.lora:
        _load_adapter(model, d)
        if merge_adapters:
            merge_lora(model)
    return model.to(device).eval()
