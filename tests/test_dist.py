"""readtax.dist: rank from the torchrun environment; collectives are no-ops in one process."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from readtax.dist import DistInfo, barrier, dist_info, gather_objects, init_process_group  # noqa: E402


def test_dist_info_reads_the_torchrun_environment(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = dist_info()
    assert info == DistInfo(2, 4, 1) and not info.is_main
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name)
    assert dist_info() == DistInfo() and DistInfo().is_main


def test_single_process_collectives_are_no_ops():
    import torch

    barrier()
    barrier(torch.device("cpu"))
    assert gather_objects({"a": 1}) == [{"a": 1}]
    assert init_process_group(1, torch.device("cpu")) is False
