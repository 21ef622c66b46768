"""Classification metrics accumulated batch by batch, and the plots made from them.

:class:`StreamingMetrics` never keeps logits or per-read predictions: each ``update`` reduces a
batch to per-class counts (true, predicted, correct), top-k hits, calibration bins and
(true, predicted) pair counts. Everything reported is a function of those counts:

- accuracy, micro-F1 (equal to accuracy for single-label classification), top-k accuracy
  (only where k < the number of classes);
- per-class precision/recall/F1/support and macro-F1 over the classes that occur in the labels
  or the predictions (scikit-learn's default ``labels``; 0 where a ratio is 0/0);
- multiclass MCC (Gorodkin's R_K) from the per-class true/predicted totals;
- expected calibration error over equal-width confidence bins (max softmax probability);
- the most frequent confusions.

Memory is O(classes) plus the confusion counts: a dense ``classes x classes`` matrix while
classes <= ``DENSE_LIMIT``, above that a sorted sparse table of the (true, predicted) pairs seen
(at most classes + distinct errors entries).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .labels import LabelMap

DENSE_LIMIT = 2000
_SPARSE_FLUSH = 1 << 20  # pending pair codes merged into the table beyond this many


class StreamingMetrics:
    """Accumulate predictions of a ``num_classes``-way classifier; :meth:`compute` the metrics.

    ``update(logits, labels)`` takes ``[n, num_classes]`` scores (torch tensor on any device or
    numpy array) and ``[n]`` class indices; rows with a negative label are counted as
    ``unlabelled`` and otherwise ignored. ``update_predictions`` takes predicted classes directly
    (no top-k or calibration then).
    """

    def __init__(self, num_classes: int, top_k: int = 5, ece_bins: int = 15,
                 dense: bool | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if ece_bins < 1:
            raise ValueError(f"ece_bins must be >= 1, got {ece_bins}")
        self.num_classes = int(num_classes)
        self.top_k = int(max(1, top_k))
        self.ece_bins = int(ece_bins)
        self.dense = self.num_classes <= DENSE_LIMIT if dense is None else bool(dense)
        c = self.num_classes
        self.true_count = np.zeros(c, np.int64)
        self.pred_count = np.zeros(c, np.int64)
        self.correct = np.zeros(c, np.int64)
        self.topk_hits = 0
        self.scored = 0  # reads that came with scores (top-k and calibration apply to them)
        self.unlabelled = 0
        self.loss_sum = 0.0
        self.loss_count = 0
        self.bin_count = np.zeros(self.ece_bins, np.int64)
        self.bin_conf = np.zeros(self.ece_bins, np.float64)
        self.bin_correct = np.zeros(self.ece_bins, np.int64)
        self.confusion = np.zeros((c, c), np.int64) if self.dense else None
        self._pair_codes = np.zeros(0, np.int64)  # sparse: sorted unique true*C+pred
        self._pair_counts = np.zeros(0, np.int64)
        self._pending: list[np.ndarray] = []
        self._pending_n = 0

    # -- accumulation ----------------------------------------------------------------------------

    @property
    def total(self) -> int:
        """Labelled reads seen."""
        return int(self.true_count.sum())

    def update(self, logits: Any, labels: Any, loss: float | None = None) -> None:
        """Add a batch of scores ``[n, C]`` with their labels ``[n]`` (negative: unlabelled)."""
        pred, conf, hit = _reduce_scores(logits, labels, self.top_k, self.num_classes)
        labels = _to_numpy(labels).astype(np.int64, copy=False).reshape(-1)
        keep = labels >= 0
        self.unlabelled += int((~keep).sum())
        if loss is not None:
            self.loss_sum += float(loss) * int(keep.sum())
            self.loss_count += int(keep.sum())
        if not keep.all():
            pred, conf, hit, labels = pred[keep], conf[keep], hit[keep], labels[keep]
        self._add(labels, pred)
        self.topk_hits += int(hit.sum())
        self.scored += len(labels)
        ok = pred == labels
        b = np.minimum((conf * self.ece_bins).astype(np.int64), self.ece_bins - 1)
        b = np.maximum(b, 0)
        self.bin_count += np.bincount(b, minlength=self.ece_bins)
        self.bin_conf += np.bincount(b, weights=conf, minlength=self.ece_bins)
        self.bin_correct += np.bincount(b, weights=ok, minlength=self.ece_bins).astype(np.int64)

    def update_predictions(self, pred: Any, labels: Any) -> None:
        """Add predicted class indices (no scores: top-k and calibration do not count them)."""
        pred = _to_numpy(pred).astype(np.int64, copy=False).reshape(-1)
        labels = _to_numpy(labels).astype(np.int64, copy=False).reshape(-1)
        keep = labels >= 0
        self.unlabelled += int((~keep).sum())
        self._add(labels[keep], pred[keep])

    def _add(self, labels: np.ndarray, pred: np.ndarray) -> None:
        c = self.num_classes
        if len(labels) and (labels.max() >= c or pred.max() >= c or pred.min() < 0):
            raise ValueError(f"class index out of range for {c} classes")
        self.true_count += np.bincount(labels, minlength=c)
        self.pred_count += np.bincount(pred, minlength=c)
        self.correct += np.bincount(labels[pred == labels], minlength=c)
        codes = labels * c + pred
        if self.dense:
            self.confusion += np.bincount(codes, minlength=c * c).reshape(c, c)
        else:
            self._pending.append(codes)
            self._pending_n += len(codes)
            if self._pending_n >= _SPARSE_FLUSH:
                self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        codes = np.concatenate(self._pending)
        self._pending, self._pending_n = [], 0
        uniq, cnt = np.unique(codes, return_counts=True)
        self._merge_pairs(uniq, cnt)

    def _merge_pairs(self, codes: np.ndarray, counts: np.ndarray) -> None:
        allc = np.concatenate([self._pair_codes, codes])
        alln = np.concatenate([self._pair_counts, counts])
        uniq, inv = np.unique(allc, return_inverse=True)
        self._pair_codes = uniq
        self._pair_counts = np.bincount(inv, weights=alln, minlength=len(uniq)).astype(np.int64)

    def merge(self, other: StreamingMetrics) -> None:
        """Add another accumulator's counts (e.g. from another process)."""
        if other.num_classes != self.num_classes or other.ece_bins != self.ece_bins:
            raise ValueError("cannot merge metrics of different shapes")
        for name in ("true_count", "pred_count", "correct", "bin_count", "bin_conf", "bin_correct"):
            getattr(self, name)[...] += getattr(other, name)
        self.topk_hits += other.topk_hits
        self.scored += other.scored
        self.unlabelled += other.unlabelled
        self.loss_sum += other.loss_sum
        self.loss_count += other.loss_count
        codes, counts = other.pair_counts()
        if self.dense:
            c = self.num_classes
            self.confusion += np.bincount(codes, weights=counts, minlength=c * c
                                          ).astype(np.int64).reshape(c, c)
        else:
            self._flush()
            self._merge_pairs(codes, counts)

    def pair_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted codes ``true * C + pred`` with their counts (only nonzero ones)."""
        if self.dense:
            flat = self.confusion.reshape(-1)
            codes = np.flatnonzero(flat)
            return codes.astype(np.int64), flat[codes]
        self._flush()
        return self._pair_codes.copy(), self._pair_counts.copy()

    def confusion_matrix(self) -> np.ndarray:
        """The dense ``[C, C]`` matrix (rows: true, columns: predicted); builds it if sparse."""
        if self.dense:
            return self.confusion.copy()
        c = self.num_classes
        codes, counts = self.pair_counts()
        out = np.zeros((c, c), np.int64)
        out.reshape(-1)[codes] = counts
        return out

    # -- results ---------------------------------------------------------------------------------

    def compute(self, label_map: LabelMap | None = None, top_confusions: int = 20) -> dict:
        """All metrics as a JSON-serialisable dict (per-class rows and confusions included)."""
        n = self.total
        tp = self.correct.astype(np.float64)
        t = self.true_count.astype(np.float64)
        p = self.pred_count.astype(np.float64)
        precision = _div(tp, p)
        recall = _div(tp, t)
        f1 = _div(2 * tp, t + p)
        present = (t > 0) | (p > 0)
        macro_f1 = float(f1[present].mean()) if present.any() else 0.0
        macro_p = float(precision[present].mean()) if present.any() else 0.0
        macro_r = float(recall[present].mean()) if present.any() else 0.0
        weighted_f1 = float((f1 * t).sum() / n) if n else 0.0
        acc = float(tp.sum() / n) if n else 0.0
        s = float(n)
        cov_tp = tp.sum() * s - float(np.dot(p, t))
        cov_pp = s * s - float(np.dot(p, p))
        cov_tt = s * s - float(np.dot(t, t))
        mcc = cov_tp / math.sqrt(cov_pp * cov_tt) if cov_pp > 0 and cov_tt > 0 else 0.0
        ece = self._ece()
        out: dict[str, Any] = {
            "reads": n,
            "unlabelled": int(self.unlabelled),
            "num_classes": self.num_classes,
            "classes_present": int((t > 0).sum()),
            "accuracy": acc,
            "macro_f1": macro_f1,
            "micro_f1": acc,
            "weighted_f1": weighted_f1,
            "macro_precision": macro_p,
            "macro_recall": macro_r,
            "mcc": mcc,
            **self._topk(),
            "ece": ece,
        }
        if self.loss_count:
            out["loss"] = self.loss_sum / self.loss_count
        out["per_class"] = self._per_class(precision, recall, f1, label_map)
        out["confusions"] = self.top_confusions(top_confusions, label_map)
        out["calibration"] = self.calibration_bins()
        return out

    def _topk(self) -> dict[str, float | None]:
        """``topK_accuracy`` only where K < classes: with K >= classes every read is a hit."""
        if self.top_k >= self.num_classes:
            return {}
        return {f"top{self.top_k}_accuracy":
                (self.topk_hits / self.scored) if self.scored else None}

    def scalars(self) -> dict[str, float]:
        """Only the scalar metrics (for logs): accuracy, macro_f1, micro_f1, mcc, topK, ece."""
        res = self.compute(top_confusions=0)
        return {k: v for k, v in res.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None}

    def _ece(self) -> float | None:
        total = int(self.bin_count.sum())
        if total == 0:
            return None
        nz = self.bin_count > 0
        acc = self.bin_correct[nz] / self.bin_count[nz]
        conf = self.bin_conf[nz] / self.bin_count[nz]
        return float((np.abs(acc - conf) * self.bin_count[nz]).sum() / total)

    def calibration_bins(self) -> list[dict]:
        """Per confidence bin: range, reads, mean confidence, accuracy."""
        rows = []
        for b in range(self.ece_bins):
            cnt = int(self.bin_count[b])
            rows.append({
                "lo": b / self.ece_bins,
                "hi": (b + 1) / self.ece_bins,
                "reads": cnt,
                "confidence": float(self.bin_conf[b] / cnt) if cnt else None,
                "accuracy": float(self.bin_correct[b] / cnt) if cnt else None,
            })
        return rows

    def _per_class(self, precision, recall, f1, label_map) -> list[dict]:
        rows = []
        for i in range(self.num_classes):
            row = _class_fields(i, label_map)
            row.update({
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(self.true_count[i]),
                "predicted": int(self.pred_count[i]),
            })
            rows.append(row)
        return rows

    def top_confusions(self, n: int = 20, label_map: LabelMap | None = None) -> list[dict]:
        """The ``n`` most frequent (true, predicted) pairs with true != predicted."""
        if n <= 0:
            return []
        codes, counts = self.pair_counts()
        c = self.num_classes
        off = (codes // c) != (codes % c)
        codes, counts = codes[off], counts[off]
        # Largest count first; ties by (true, predicted) so the order is deterministic.
        order = np.lexsort((codes, -counts))[:n]
        rows = []
        for code, cnt in zip(codes[order].tolist(), counts[order].tolist()):
            true, pred = divmod(code, c)
            tf = _class_fields(true, label_map)
            pf = _class_fields(pred, label_map)
            rows.append({
                **{f"true_{k}": v for k, v in tf.items()},
                **{f"pred_{k}": v for k, v in pf.items()},
                "count": int(cnt),
                "fraction_of_true": float(cnt / self.true_count[true]) if self.true_count[true] else 0.0,
            })
        return rows

    # -- process groups --------------------------------------------------------------------------

    def all_reduce(self) -> None:
        """Sum the counts of every process of the default torch.distributed group (no-op alone)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        objs: list[Any] = [None] * dist.get_world_size()
        me = self._portable()
        dist.all_gather_object(objs, me)
        rank = dist.get_rank()
        base = StreamingMetrics(self.num_classes, self.top_k, self.ece_bins, self.dense)
        for r, obj in enumerate(objs):
            other = self if r == rank else StreamingMetrics._from_portable(obj)
            base.merge(other)
        self.__dict__.update(base.__dict__)

    def _portable(self) -> dict:
        codes, counts = self.pair_counts()
        return {
            "shape": (self.num_classes, self.top_k, self.ece_bins, self.dense),
            "arrays": {k: getattr(self, k) for k in (
                "true_count", "pred_count", "correct", "bin_count", "bin_conf", "bin_correct")},
            "scalars": (self.topk_hits, self.scored, self.unlabelled, self.loss_sum, self.loss_count),
            "pairs": (codes, counts),
        }

    @classmethod
    def _from_portable(cls, obj: dict) -> StreamingMetrics:
        c, k, bins, dense = obj["shape"]
        m = cls(c, k, bins, dense=False)
        for name, arr in obj["arrays"].items():
            setattr(m, name, np.asarray(arr).copy())
        m.topk_hits, m.scored, m.unlabelled, m.loss_sum, m.loss_count = obj["scalars"]
        m._pair_codes, m._pair_counts = (np.asarray(a) for a in obj["pairs"])
        return m


# -- helpers -----------------------------------------------------------------------------------


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros_like(a, dtype=np.float64)
    np.divide(a, b, out=out, where=b > 0)
    return out


def _reduce_scores(logits: Any, labels: Any, k: int, num_classes: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(argmax, max softmax probability, label among the top k) per row.

    Torch inputs are reduced on their own device so that only three length-n vectors move.
    """
    if hasattr(logits, "detach"):
        import torch

        with torch.no_grad():
            x = logits.detach().float()
            if x.ndim != 2 or x.shape[1] != num_classes:
                raise ValueError(f"logits of shape {tuple(x.shape)}, expected [n, {num_classes}]")
            lab = torch.as_tensor(labels, device=x.device).reshape(-1).long()
            conf, pred = torch.softmax(x, dim=1).max(dim=1)
            kk = min(k, num_classes)
            top = x.topk(kk, dim=1).indices
            hit = (top == lab[:, None]).any(dim=1)
            return pred.cpu().numpy(), conf.cpu().double().numpy(), hit.cpu().numpy()
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != num_classes:
        raise ValueError(f"logits of shape {x.shape}, expected [n, {num_classes}]")
    lab = np.asarray(labels).reshape(-1).astype(np.int64)
    pred = x.argmax(axis=1)
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    conf = 1.0 / e.sum(axis=1)  # softmax of the max entry: exp(0) / sum
    kk = min(k, num_classes)
    top = np.argpartition(-x, kk - 1, axis=1)[:, :kk] if kk < num_classes else \
        np.broadcast_to(np.arange(num_classes), x.shape)
    hit = (top == lab[:, None]).any(axis=1)
    return pred, conf, hit


def _class_fields(i: int, label_map: LabelMap | None) -> dict:
    if label_map is None:
        return {"class": int(i)}
    return {"class": int(i), "class_id": int(label_map.class_ids[i]), "name": label_map.names[i],
            "tax_id": int(label_map.tax_ids[i])}


# -- report files ------------------------------------------------------------------------------


def write_report(result: dict, out_dir: str | os.PathLike[str], label_map: LabelMap | None = None,
                 metrics: StreamingMetrics | None = None, *, heatmap_max_classes: int = 50
                 ) -> list[Path]:
    """Write metrics.json, per_class.tsv, confusions.tsv and plots; return the paths written.

    ``metrics`` (the accumulator) is needed for the confusion heatmap, drawn when the number of
    classes is at most ``heatmap_max_classes``.
    """
    from .outputs import atomic_open

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [_write_tsv(out / "per_class.tsv", result["per_class"]),
               _write_tsv(out / "confusions.tsv", result["confusions"],
                          empty_header=_confusion_header(label_map))]
    if metrics is not None and metrics.num_classes <= heatmap_max_classes:
        names = label_map.names if label_map is not None else None
        written.append(plot_confusion(metrics.confusion_matrix(), out / "confusion.png", names))
    written.append(plot_reliability(result["calibration"], out / "reliability.png",
                                    ece=result.get("ece")))
    # metrics.json last: its presence means the whole report is there (an interrupted run
    # leaves none, and the next run does not take the directory for a finished evaluation).
    summary = {k: v for k, v in result.items() if k not in ("per_class",)}
    with atomic_open(out / "metrics.json") as fh:
        json.dump(summary, fh, indent=2, sort_keys=False)
        fh.write("\n")
    return [out / "metrics.json", *written]


def _confusion_header(label_map) -> list[str]:
    f = list(_class_fields(0, label_map)) if label_map is not None else ["class"]
    return [f"true_{k}" for k in f] + [f"pred_{k}" for k in f] + ["count", "fraction_of_true"]


def _write_tsv(path: Path, rows: Sequence[dict], empty_header: list[str] | None = None) -> Path:
    from .outputs import atomic_open

    header = list(rows[0]) if rows else (empty_header or [])
    with atomic_open(path) as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow([_fmt(r[k]) for k in header])
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(matrix: np.ndarray, path: str | os.PathLike[str],
                   names: Sequence[str] | None = None) -> Path:
    """Row-normalised confusion heatmap (rows: true class)."""
    from .outputs import atomic_path

    plt = _pyplot()
    m = np.asarray(matrix, dtype=np.float64)
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    c = len(m)
    size = min(4 + 0.25 * c, 20)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    labels = list(names) if names is not None else [str(i) for i in range(c)]
    ax.set_xticks(range(c), labels, rotation=90, fontsize=max(4, 10 - c // 8))
    ax.set_yticks(range(c), labels, fontsize=max(4, 10 - c // 8))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion (row-normalised)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def plot_reliability(bins: Sequence[dict], path: str | os.PathLike[str],
                     ece: float | None = None) -> Path:
    """Reliability diagram: accuracy against mean confidence per bin, with bin sizes."""
    from .outputs import atomic_path

    plt = _pyplot()
    fig, (ax, axn) = plt.subplots(2, 1, figsize=(5, 6), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    centers = [(b["lo"] + b["hi"]) / 2 for b in bins]
    width = bins[0]["hi"] - bins[0]["lo"] if bins else 0.1
    acc = [b["accuracy"] or 0.0 for b in bins]
    ax.bar(centers, acc, width=width * 0.95, color="tab:blue", label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    conf = [(c, b["confidence"]) for c, b in zip(centers, bins) if b["confidence"] is not None]
    if conf:
        ax.plot([c for c, _ in conf], [v for _, v in conf], "o", color="tab:orange",
                ms=3, label="mean confidence")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    title = "reliability"
    if ece is not None:
        title += f" (ECE {ece:.3f})"
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    axn.bar(centers, [b["reads"] for b in bins], width=width * 0.95, color="grey")
    axn.set_xlabel("confidence")
    axn.set_ylabel("reads")
    axn.set_xlim(0, 1)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def read_jsonl(path: str | os.PathLike[str]) -> list[dict]:
    """The events of a metrics.jsonl file (an absent file gives none)."""
    p = Path(path)
    if not p.exists():
        return []
    with open(p, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def plot_curves(events: Sequence[dict], out_dir: str | os.PathLike[str]) -> list[Path]:
    """loss.png, accuracy.png and macro_f1.png against the optimiser step."""
    from .outputs import atomic_path

    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    series = {
        "loss": [("loss", "training loss"), ("eval_loss", "validation loss")],
        "accuracy": [("eval_accuracy", "validation accuracy"),
                     ("eval_top5_accuracy", "validation top-5 accuracy")],
        "macro_f1": [("eval_macro_f1", "validation macro-F1")],
    }
    written = []
    for name, keys in series.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        drawn = False
        for key, label in keys:
            pts = [(e["step"], e[key]) for e in events
                   if key in e and e[key] is not None and "step" in e]
            if pts:
                ax.plot([s for s, _ in pts], [v for _, v in pts], marker="o" if len(pts) < 30
                        else None, ms=3, label=label)
                drawn = True
        ax.set_xlabel("step")
        ax.set_ylabel(name.replace("_", "-"))
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"{name}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        written.append(path)
    return written
