"""The Hugging Face face of a saved classifier: label fields in ``config.json`` and a model card.

Hub tools and ``transformers`` read the classes of a classification model from ``config.json``
(``id2label``, ``label2id``, ``num_labels``) and describe a model from ``README.md`` (YAML front
matter, then prose). A saved readtax classifier carries both; the card states what a user needs
to run the model without readtax: family, backbone, pooling, head layout and labels, plus the
training data and final validation metrics when the training run supplies them.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

CARD_FILE = "README.md"
# Metrics shown in the card, in this order, when the final validation report has them.
CARD_METRICS = ("accuracy", "macro_f1", "micro_f1", "mcc", "ece")
SHOWN_LABELS = 20  # the card lists this many classes; label_map.tsv holds them all


def label_fields(names: list[str]) -> dict:
    """``id2label`` (string keys, as transformers writes them), ``label2id``, ``num_labels``."""
    return {"id2label": {str(i): n for i, n in enumerate(names)},
            "label2id": {n: i for i, n in enumerate(names)},
            "num_labels": len(names)}


def add_label_fields(config_path: str | os.PathLike[str], names: list[str]) -> None:
    """Add the label fields to a ``config.json`` in place (its other keys are kept as written)."""
    path = Path(config_path)
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg.update(label_fields(names))
    path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")


def _backbone_line(model) -> str:
    cfg = model.backbone_config
    module = getattr(model.backbone, "model", model.backbone)
    parts = [type(module).__name__]
    for key, what in (("num_hidden_layers", "layers"), ("num_layers", "layers"),
                      ("hidden_size", "hidden"), ("vocab_size", "vocab")):
        if key in cfg and what not in " ".join(parts):
            parts.append(f"{what} {cfg[key]}")
    return ", ".join(parts)


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def model_card(model, training: dict | None = None, metrics: dict | None = None) -> str:
    """The card's text for ``model`` (a ReadClassifier).

    ``training``: a summary of the training run (keys shown as given, e.g. ``train``, ``reads``,
    ``steps``); ``metrics``: the final validation report (``accuracy``, ``macro_f1``, ...).
    """
    opt = model.options
    names = list(model.label_map.names)
    c, h = model.num_classes, model.hidden_size
    lines = [
        "---",
        "library_name: readtax",
        "pipeline_tag: text-classification",
        "tags:",
        "- dna",
        "- metagenomics",
        "- read-classification",
        f"- {model.arch}",
        "---",
        "",
        f"# readtax read classifier ({model.arch}, {c} classes)",
        "",
        "Assigns a DNA sequencing read to one of the species of `label_map.tsv`.",
        "",
        "## Model",
        "",
        f"- family: `{model.arch}`",
        f"- backbone: {_backbone_line(model)}",
        f"- pooling: `{opt.pooling}` over the attention mask"
        + (" (padding excluded)" if opt.pooling == "mean" else ""),
        f"- head: dropout {opt.dropout}, then `Linear({h}, {c})` in `head.safetensors` "
        f"(`weight` [{c}, {h}], `bias` [{c}]); logits index the classes of `label_map.tsv`",
        f"- labels: {c} (`config.json` `id2label`; `label_map.tsv`: class_id, label_name, tax_id)",
    ]
    if opt.lora:
        lines.append(f"- LoRA: r={opt.lora_r}, alpha={opt.lora_alpha}, dropout "
                     f"{opt.lora_dropout} on {', '.join(opt.lora_targets or [])}; PEFT adapter "
                     "in `adapter/` (load with `peft.PeftModel.from_pretrained`)")
    elif opt.freeze_backbone:
        lines.append("- backbone frozen: only the head was trained")
    shown = ", ".join(names[:SHOWN_LABELS]) + (" ..." if c > SHOWN_LABELS else "")
    lines += ["", "Classes: " + shown, ""]
    lines += ["## Training data", ""]
    if training:
        lines += [f"- {k}: {_fmt(v)}" for k, v in training.items()]
    else:
        lines.append("- not recorded (the model was saved outside `readtax train`)")
    lines += ["", "## Final validation metrics", ""]
    metrics = {k: v for k, v in (metrics or {}).items() if v is not None}
    shown_metrics = [k for k in CARD_METRICS if k in metrics]
    topk = sorted(k for k in metrics if k.startswith("top") and k.endswith("_accuracy"))
    if shown_metrics or topk:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(metrics[k])} |" for k in [*shown_metrics, *topk]]
    else:
        lines.append("- none recorded")
    lines += ["", "## Use", "",
              "`readtax predict RUN reads.fa -o calls.tsv`; or from Python,",
              "`readtax.predict.classify_sequences(model_dir, [\"ACGT...\"])`. The readtax README "
              "shows how to load the backbone and head with plain `transformers`.", ""]
    return "\n".join(lines)


def write_model_card(model_dir: str | os.PathLike[str], model, training: dict | None = None,
                     metrics: dict | None = None) -> Path:
    """Write (or replace, atomically) ``model_dir/README.md``."""
    from ..outputs import atomic_open

    path = Path(model_dir) / CARD_FILE
    with atomic_open(path) as fh:
        fh.write(model_card(model, training, metrics))
    return path
