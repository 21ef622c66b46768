"""readtax evaluate: streamed metrics equal scikit-learn's on the same predictions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from sklearn import metrics as skm  # noqa: E402

from helpers_train import make_genomes, make_task, write_mapping, write_reads  # noqa: E402
from readtax.cli import main  # noqa: E402
from readtax.labels import load_mapping  # noqa: E402

N_CLASSES = 8


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A run directory with a seeded kmer-cnn classifier whose predictions vary, and data."""
    from readtax.models import build_classifier, init_model, save_classifier
    from readtax.store import pack

    d = tmp_path_factory.mktemp("ev")
    task = make_task(d / "task", n_classes=N_CLASSES, train_per_class=5, val_per_class=30)
    lm = load_mapping(task["mapping"])
    model = build_classifier(init_model("kmer-cnn", "tiny", d / "cnn"), lm, seed=1)
    with torch.no_grad():  # a sharp random head: diverse, confident predictions
        model.head.weight.mul_(200.0)
    run = d / "run"
    save_classifier(model, run / "model")
    store = d / "val_store"
    pack([str(task["val"])], store, mapping=lm, seed=0, workers=1, progress=False)
    # Reads of a class (99) the model does not know, as a file and as a store.
    other = write_reads(d / "other.fa", make_genomes(2, 500, 5), 3, 60, 0, [10, 99])
    other_lm = load_mapping(write_mapping(d / "other.tsv", [10, 99]))
    pack([str(other)], d / "other_store", mapping=other_lm, seed=0, workers=1, progress=False)
    return {"run": run, "task": task, "store": store, "lm": lm, "other": other,
            "other_store": d / "other_store"}


def _reference(setup):
    """Logits of every validation read, computed in one go (no readtax evaluate code)."""
    from readtax.batch import SeqBatch
    from readtax.fastx import read_all
    from readtax.labels import Labeler, make_scheme
    from readtax.models import load_classifier

    model = load_classifier(setup["run"] / "model")
    model.eval()
    rb = read_all(setup["task"]["val"])
    y = Labeler(make_scheme("lbl"), setup["lm"]).classes(rb)
    with torch.no_grad():
        logits = model(**model.collator(SeqBatch.from_reads(rb, y)))["logits"].numpy()
    return logits, y


def _tsv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_metrics_equal_sklearn(setup, tmp_path):
    out = tmp_path / "ev"
    assert main(["evaluate", str(setup["run"]), "--data", str(setup["task"]["val"]), "-o",
                 str(out), "--batch-size", "37", "--num-workers", "0"]) == 0
    res = json.loads((out / "metrics.json").read_text())
    logits, y = _reference(setup)
    pred = logits.argmax(1)
    assert len(set(pred.tolist())) > 2  # the check is not trivial
    labels = np.arange(N_CLASSES)
    assert res["reads"] == len(y) == N_CLASSES * 30
    assert res["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert res["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro",
                                                         zero_division=0))
    assert res["micro_f1"] == pytest.approx(skm.f1_score(y, pred, average="micro"))
    assert res["mcc"] == pytest.approx(skm.matthews_corrcoef(y, pred))
    assert res["top5_accuracy"] == pytest.approx(
        skm.top_k_accuracy_score(y, logits, k=5, labels=labels))
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    rows = _tsv(out / "per_class.tsv")
    assert [int(x["support"]) for x in rows] == s.tolist()
    np.testing.assert_allclose([float(x["precision"]) for x in rows], p, atol=1e-5)
    np.testing.assert_allclose([float(x["recall"]) for x in rows], r, atol=1e-5)
    np.testing.assert_allclose([float(x["f1"]) for x in rows], f, atol=1e-5)
    assert [x["name"] for x in rows] == setup["lm"].names
    cm = skm.confusion_matrix(y, pred, labels=labels)
    conf = _tsv(out / "confusions.tsv")
    for row in conf:
        assert cm[int(row["true_class"]), int(row["pred_class"])] == int(row["count"])
    off = cm.copy()
    np.fill_diagonal(off, 0)
    assert int(conf[0]["count"]) == off.max()
    assert {"confusion.png", "reliability.png"} <= {p.name for p in out.iterdir()}


def test_store_gives_the_same_metrics(setup, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["evaluate", str(setup["run"]), "--data", str(setup["task"]["val"]), "-o",
                 str(a), "--num-workers", "0"]) == 0
    assert main(["evaluate", str(setup["run"] / "model"), "--data", str(setup["store"]), "-o",
                 str(b), "--num-workers", "2", "--batch-size", "50"]) == 0
    ra, rb = (json.loads((x / "metrics.json").read_text()) for x in (a, b))
    for k in ("reads", "accuracy", "macro_f1", "mcc", "top5_accuracy"):
        assert ra[k] == pytest.approx(rb[k]), k
    assert ra["ece"] == pytest.approx(rb["ece"], abs=1e-6)


def test_max_reads(setup, tmp_path):
    out = tmp_path / "ev"
    assert main(["evaluate", str(setup["run"]), "--data", str(setup["task"]["val"]), "-o",
                 str(out), "--max-reads", "50", "--batch-size", "32", "--num-workers", "0"]) == 0
    assert json.loads((out / "metrics.json").read_text())["reads"] == 50


def test_unknown_class_is_a_clear_error(setup, tmp_path, capsys):
    other = setup["other"]
    rc = main(["evaluate", str(setup["run"]), "--data", str(other), "-o", str(tmp_path / "e"),
               "--num-workers", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert str(other) in err[0] and "99" in err[0] and "not in the mapping" in err[0]
    assert main(["evaluate", str(setup["run"]), "--data", str(other), "-o",
                 str(tmp_path / "e"), "--num-workers", "0", "--skip-unknown"]) == 0
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["reads"] == 3


def test_store_with_foreign_classes_is_a_clear_error(setup, tmp_path, capsys):
    rc = main(["evaluate", str(setup["run"]), "--data", str(setup["other_store"]), "-o",
               str(tmp_path / "e"), "--num-workers", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "sp99 (class_id 99)" in err[0]


def test_existing_report_needs_force(setup, tmp_path, capsys):
    out = tmp_path / "ev"
    args = ["evaluate", str(setup["run"]), "--data", str(setup["task"]["val"]), "-o", str(out),
            "--num-workers", "0", "--max-reads", "10"]
    assert main(args) == 0
    assert main(args) == 2 and "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0


def test_evaluate_does_not_import_train():
    """train imports evaluate (stream_eval); the reverse would close a circle: both take their
    process helpers from readtax.dist."""
    import subprocess
    import sys

    code = ("import sys, readtax.evaluate, readtax.predict; "
            "print('readtax.train' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
