"""``readtax verify``: a store's files against their recorded sizes and checksums, then its
internal consistency (:class:`~readtax.store.consistency.Consistency`)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import StoreError
from ..progress import Progress
from .consistency import Consistency
from .format import (
    CHECKSUM,
    check_checksum_names,
    check_sizes,
    expected_files,
    file_checksum,
    load_manifest,
)
from .reader import ReadStore


def verify(path: str | os.PathLike[str], *, progress: bool | None = None) -> dict:
    """Check sizes, checksums and internal consistency; StoreError on the first problem."""
    path = Path(path)
    manifest = load_manifest(path)
    missing = sorted(expected_files(manifest) - set(manifest["files"]))
    if missing:
        raise StoreError(f"manifest.json does not list {', '.join(missing)}", path)
    check_sizes(path, manifest)
    check_checksum_names(path, manifest)
    total = sum(info["size"] for info in manifest["files"].values())
    bar = Progress(total, f"verify {path.name}: checksums", enabled=progress)
    done = 0
    for name, info in sorted(manifest["files"].items()):
        if file_checksum(path / name) != info.get(CHECKSUM):
            raise StoreError(f"checksum mismatch in {name}: the file is corrupt", path)
        done += info["size"]
        bar.update(done)
    bar.close()
    store = ReadStore(path)
    Consistency(store).run()
    return {"reads": store.n, "classes": len(store.label_map), "bases": store.total_bases,
            "bytes": total, "bytes_per_read": total / max(store.n, 1)}
