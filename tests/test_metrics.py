"""StreamingMetrics against scikit-learn on the same predictions; report files and plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from readtax.labels import LabelMap
from readtax.metrics import (
    StreamingMetrics,
    plot_curves,
    read_jsonl,
    write_report,
)


def _data(n=3000, c=12, seed=0, skew=True):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c))
    # Make predictions informative but imperfect, and leave one class never predicted.
    logits[np.arange(n), y] += rng.uniform(0, 4, n)
    if skew:
        logits[:, c - 1] -= 100
    return logits, y


def _feed(m, logits, y, chunk=257):
    for i in range(0, len(y), chunk):
        m.update(logits[i:i + chunk], y[i:i + chunk])


@pytest.mark.parametrize("dense", [True, False])
def test_equals_sklearn(dense):
    logits, y = _data()
    c = logits.shape[1]
    m = StreamingMetrics(c, dense=dense)
    _feed(m, logits, y)
    res = m.compute()
    pred = logits.argmax(1)
    assert res["reads"] == len(y)
    assert res["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert res["macro_f1"] == pytest.approx(
        skm.f1_score(y, pred, average="macro", zero_division=0), abs=1e-12)
    assert res["micro_f1"] == pytest.approx(
        skm.f1_score(y, pred, average="micro", zero_division=0), abs=1e-12)
    assert res["weighted_f1"] == pytest.approx(
        skm.f1_score(y, pred, average="weighted", zero_division=0), abs=1e-12)
    assert res["mcc"] == pytest.approx(skm.matthews_corrcoef(y, pred), abs=1e-12)
    assert res["top5_accuracy"] == pytest.approx(
        skm.top_k_accuracy_score(y, logits, k=5, labels=np.arange(c)), abs=1e-12)
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=np.arange(c),
                                                     zero_division=0)
    rows = res["per_class"]
    np.testing.assert_allclose([x["precision"] for x in rows], p, atol=1e-12)
    np.testing.assert_allclose([x["recall"] for x in rows], r, atol=1e-12)
    np.testing.assert_allclose([x["f1"] for x in rows], f, atol=1e-12)
    assert [x["support"] for x in rows] == s.tolist()
    np.testing.assert_array_equal(m.confusion_matrix(),
                                  skm.confusion_matrix(y, pred, labels=np.arange(c)))


def test_macro_f1_ignores_absent_classes_like_sklearn():
    # Class 3 neither occurs nor is predicted: sklearn's default leaves it out of the mean.
    y = np.array([0, 0, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 2, 2, 0])
    m = StreamingMetrics(4)
    m.update_predictions(pred, y)
    assert m.compute()["macro_f1"] == pytest.approx(
        skm.f1_score(y, pred, average="macro", zero_division=0))


def test_ece_and_calibration_bins():
    logits, y = _data(n=2000, c=6, seed=3, skew=False)
    m = StreamingMetrics(6, ece_bins=15)
    _feed(m, logits, y)
    e = np.exp(logits - logits.max(1, keepdims=True))
    prob = e / e.sum(1, keepdims=True)
    conf, pred = prob.max(1), prob.argmax(1)
    bins = np.minimum((conf * 15).astype(int), 14)
    ece = 0.0
    for b in range(15):
        sel = bins == b
        if sel.any():
            ece += abs((pred[sel] == y[sel]).mean() - conf[sel].mean()) * sel.sum() / len(y)
    res = m.compute()
    assert res["ece"] == pytest.approx(ece, abs=1e-12)
    assert sum(b["reads"] for b in res["calibration"]) == len(y)


def test_torch_input_and_unlabelled_rows():
    torch = pytest.importorskip("torch")
    logits, y = _data(n=500, c=7, seed=1)
    y_masked = y.copy()
    y_masked[::5] = -100
    a = StreamingMetrics(7)
    a.update(torch.from_numpy(logits).float(), torch.from_numpy(y_masked), loss=0.5)
    b = StreamingMetrics(7)
    keep = y_masked >= 0
    b.update(logits[keep].astype(np.float32), y[keep])
    ra, rb = a.compute(), b.compute()
    assert a.unlabelled == 100 and ra["reads"] == 400
    for k in ("accuracy", "macro_f1", "mcc", "top5_accuracy"):
        assert ra[k] == pytest.approx(rb[k], abs=1e-9)
    assert ra["ece"] == pytest.approx(rb["ece"], abs=1e-6)
    assert ra["loss"] == pytest.approx(0.5)


def test_merge_equals_single_pass_and_sparse_table():
    logits, y = _data(n=1500, c=9, seed=2)
    whole = StreamingMetrics(9)
    _feed(whole, logits, y)
    parts = [StreamingMetrics(9, dense=False), StreamingMetrics(9, dense=True)]
    _feed(parts[0], logits[:700], y[:700])
    _feed(parts[1], logits[700:], y[700:])
    merged = StreamingMetrics(9, dense=False)
    for p in parts:
        merged.merge(p)
    ra, rb = whole.compute(), merged.compute()
    for k in ("accuracy", "macro_f1", "mcc", "top5_accuracy", "ece"):
        assert ra[k] == pytest.approx(rb[k], abs=1e-12)
    assert ra["confusions"] == rb["confusions"]
    np.testing.assert_array_equal(whole.confusion_matrix(), merged.confusion_matrix())


def test_sparse_is_chosen_for_many_classes_and_memory_stays_small():
    m = StreamingMetrics(3507)
    assert not m.dense and m.confusion is None
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3507, 20000)
    pred = np.where(rng.random(20000) < 0.8, y, rng.integers(0, 3507, 20000))
    m.update_predictions(pred, y)
    codes, counts = m.pair_counts()
    assert counts.sum() == 20000 and len(codes) < 20000
    assert m.compute()["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))


def test_top_confusions_order():
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    p = np.array([1, 1, 0, 0, 1, 0, 1, 0, 2])
    m = StreamingMetrics(3)
    m.update_predictions(p, y)
    conf = m.top_confusions(10)
    assert [(r["true_class"], r["pred_class"], r["count"]) for r in conf] == [
        (0, 1, 2), (2, 0, 2), (1, 0, 1), (2, 1, 1)]


def test_write_report_and_plots(tmp_path):
    logits, y = _data(n=400, c=5, seed=4)
    m = StreamingMetrics(5)
    _feed(m, logits, y)
    lm = LabelMap.from_ids([10, 20, 30, 40, 50], names=list("abcde"))
    res = m.compute(lm)
    paths = write_report(res, tmp_path / "ev", lm, m)
    names = sorted(p.name for p in paths)
    assert names == ["confusion.png", "confusions.tsv", "metrics.json", "per_class.tsv",
                     "reliability.png"]
    js = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert js["accuracy"] == pytest.approx(res["accuracy"])
    lines = (tmp_path / "ev" / "per_class.tsv").read_text().splitlines()
    assert lines[0].split("\t")[:4] == ["class", "class_id", "name", "tax_id"]
    assert len(lines) == 6
    assert (tmp_path / "ev" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    # More than 50 classes: no heatmap.
    big = StreamingMetrics(60)
    big.update_predictions(np.arange(60), np.arange(60))
    paths = write_report(big.compute(), tmp_path / "big", None, big)
    assert "confusion.png" not in {p.name for p in paths}


def test_plot_curves(tmp_path):
    ev = tmp_path / "metrics.jsonl"
    ev.write_text("\n".join(json.dumps(e) for e in [
        {"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5},
        {"step": 2, "eval_accuracy": 0.5, "eval_macro_f1": 0.4, "eval_loss": 1.2}]) + "\n")
    paths = plot_curves(read_jsonl(ev), tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["accuracy.png", "loss.png", "macro_f1.png"]


@pytest.mark.parametrize("c,shown", [(3, False), (5, False), (6, True)])
def test_top_k_reported_only_below_the_class_count(c, shown):
    logits, y = _data(n=200, c=c, seed=3)
    m = StreamingMetrics(c, top_k=5)
    _feed(m, logits, y)
    res, scalars = m.compute(), m.scalars()
    assert ("top5_accuracy" in res) == shown and ("top5_accuracy" in scalars) == shown
    if shown:
        assert res["top5_accuracy"] == pytest.approx(
            skm.top_k_accuracy_score(y, logits, k=5, labels=np.arange(c)), abs=1e-12)
    assert [k for k in res if k.startswith("top")] == (["top5_accuracy"] if shown else [])
