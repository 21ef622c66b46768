"""The end-to-end demo: every step runs and every output exists and parses."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from readtax.demo import DemoSettings, run_demo
from readtax.kraken import read_report


def test_demo_end_to_end(tmp_path, capsys):
    settings = DemoSettings(reads_per_species=1200, heldout_per_species=100,
                            train_per_species=1000, val_per_species=100, max_steps=60,
                            batch_size=64)
    out = run_demo(tmp_path / "demo", settings)
    printed = capsys.readouterr().out
    assert "== demo finished (5 real species; chance is 0.20)" in printed
    stats = json.loads((tmp_path / "demo" / "stats.json").read_text())
    assert stats["reads"] == 1200 * 5 and stats["classes"] == 5
    metrics = json.loads(Path(out["evaluation"]).read_text())
    assert metrics["reads"] == 100 * 5
    # The baseline learns the seen regions well above chance (5 classes).
    assert metrics["accuracy"] > 0.5
    strain = json.loads(Path(out["evaluation_strain"]).read_text())
    assert strain["reads"] == 100 * 5 and strain["accuracy"] == out["strain_accuracy"]
    with open(out["predictions"]) as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert len(rows) == 100 * 5
    report = read_report(out["report"])
    # Kraken2 writes the unclassified line only when some reads are unclassified.
    lines = {r.rank: r for r in report if r.rank in ("U", "R")}
    assert report[0].rank in ("U", "R") and lines["R"].tax_id == 1
    unclassified = lines["U"].clade if "U" in lines else 0
    assert lines["R"].clade + unclassified == 100 * 5
    # Direct counts over all lines add up to every held-out read.
    assert sum(r.direct for r in report) == 100 * 5
