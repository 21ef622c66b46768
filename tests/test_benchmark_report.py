"""benchmarks/report.py: RESULTS.md is assembled from the per-benchmark fragments."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _report():
    spec = importlib.util.spec_from_file_location("bench_report", BENCH / "report.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_report_orders_fragments_and_links_the_prose(tmp_path):
    report = _report()
    results = tmp_path / "results"
    results.mkdir()
    (results / "zzz.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n")
    (results / "stats-quick.md").write_text("## stats, quick\n\nquick figures\n")
    (results / "stats.md").write_text("## stats (2026-01-01 00:00 UTC; test machine)\n\n| x |\n")
    out = tmp_path / "RESULTS.md"
    assert report.main(["--results", str(results), "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# readtax benchmark results\n")
    assert "(../docs/benchmarks.md)" in text
    # Known benchmarks in their order with their variants right after; unknown ones last,
    # given a heading when they lack one.
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    assert heads == ["## stats (2026-01-01 00:00 UTC; test machine)", "## stats, quick", "## zzz"]
    assert "| 1 | 2 |" in text and "quick figures" in text
    assert not list(tmp_path.glob(".*tmp"))


def test_committed_results_are_the_assembled_fragments():
    report = _report()
    assert (BENCH / "RESULTS.md").read_text() == report.assemble(BENCH / "results")
    assert (BENCH.parent / "docs" / "benchmarks.md").is_file()


def test_every_benchmark_run_all_runs_has_a_place_in_the_report():
    """A benchmark added to run_all.sh but not to report.ORDER would land at the end."""
    import re

    names = re.findall(r"^run ([\w-]+) ", (BENCH / "run_all.sh").read_text(), flags=re.M)
    assert len(names) >= 10 and set(names) <= set(_report().ORDER)
