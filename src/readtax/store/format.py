"""The store's on-disk format: names, the manifest, file checks and checksums.

A store is a directory of plain numpy-memmappable files described by ``manifest.json``; on
150 bp reads it takes about 42-44 bytes per read, ids included.

Layout (format version 1)
-------------------------
Reads are grouped into *buckets*, contiguous ranges of read indices (the *physical order*, in
which bases, classes, lengths and N flags are stored). Each bucket has a second order, the
*class order*: its reads sorted by class index, ties in input order. ``bucket_classes[b, c]``
counts class ``c`` in bucket ``b``, so "the k-th read of class c" is a bucket and a class-order
rank found by arithmetic, and class-balanced sampling needs no O(n) index.

* Shuffled store (the default): reads go to buckets by a seeded hash, and within bucket ``b``
  of ``m`` reads, physical slot ``permute(r, m, key(seed, b))`` holds the read of class-order
  rank ``r``. The store as a whole is in a seeded random order, so even sequential reading is
  well mixed. Ids are stored in class order (the store's *id order*), where neighbouring ids
  (same species, input order) share long prefixes.
* ``--no-shuffle``: the physical order is the input order, each bucket is one run of input,
  ``order.u32`` gives the physical slot of each class-order rank, and ids are stored in input
  order (the id order is the physical order).

Files (``n`` reads, ``T`` bases, ``C`` classes, ``B`` buckets):

``bases.2bit``          2-bit codes A=0 C=1 T=2 G=3 (``(ascii >> 1) & 3``), 4 bases per byte, low
                        bits first; reads are concatenated without padding (base ``g`` of the store
                        is in byte ``g >> 2`` at bits ``2 * (g & 3)``). N positions hold an arbitrary
                        code and are restored from the N runs.
``offsets.u64``         n + 1 base offsets (variable-length stores only; a fixed-length store has
                        ``fixed_length`` in the manifest and offset ``i * L``). Lengths are the
                        differences.
``classes.u16|u32``     class index per read (uint32 when C >= 65,536).
``nflags.bits``         one bit per read (bit ``i & 7`` of byte ``i >> 3``): the read has an N.
``nruns_start.u64``     sorted global base positions of runs of N (never crossing a read end)
``nruns_length.u32``    and their lengths.
``ids.zlib``            zlib blocks of front-coded header lines (:func:`encode_ids`), at most
                        65,536 per block; blocks never cross a bucket.
``ids_index.u64``       (blocks + 1, 2): first id-order index and byte offset of each block.
``buckets.u64``         B + 1 first read of each bucket.
``bucket_classes.u32``  (B, C) reads of each class in each bucket.
``order.u32``           (``--no-shuffle`` only) physical slot within its bucket of each class rank.

``manifest.json`` holds the format version, counts, the label map, the seed, statistics and the
size and CRC-32 checksum of every file. It is written last, and the directory is built under a
temporary name and renamed, so an interrupted ``pack`` leaves nothing that looks complete.
"""

from __future__ import annotations

import json
import mmap
import os
from pathlib import Path

import numpy as np
from isal.isal_zlib import crc32

from ..errors import StoreError
from ..labels import LabelMap

FORMAT = "readtax-store"
FORMAT_VERSION = 1
ID_BLOCK = 65536  # ids per compressed block at most (a block never crosses a bucket)
# The one per-file checksum a manifest records: CRC-32 catches corruption and truncation, and
# ISA-L computes it at close to memory speed, so verify costs little more than reading the files.
CHECKSUM = "crc32"

F_BASES = "bases.2bit"
F_OFFSETS = "offsets.u64"
F_NFLAGS = "nflags.bits"
F_NSTART = "nruns_start.u64"
F_NLEN = "nruns_length.u32"
F_IDS = "ids.zlib"
F_IDINDEX = "ids_index.u64"
F_BUCKETS = "buckets.u64"
F_BCLASS = "bucket_classes.u32"
F_ORDER = "order.u32"


def is_store(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a directory with a manifest (a store, complete or not checked)."""
    return Path(path).is_dir() and (Path(path) / "manifest.json").is_file()


def class_file_name(manifest: dict) -> str:
    return "classes.u32" if manifest["class_dtype"] == "uint32" else "classes.u16"


def load_manifest(path: str | os.PathLike[str]) -> dict:
    """Read and sanity-check ``manifest.json``; StoreError names what is wrong."""
    path = Path(path)
    if not path.exists():
        raise StoreError("no such store", path)
    if not path.is_dir():
        raise StoreError("not a store directory (a packed store is a directory made by "
                         "'readtax pack')", path)
    mf = path / "manifest.json"
    if not mf.is_file():
        raise StoreError("manifest.json is missing: not a complete readtax store (was the "
                         "pack interrupted? run 'readtax pack' again)", path)
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"manifest.json is not valid JSON ({exc})", path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StoreError(f"manifest.json is not a {FORMAT} manifest", path)
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise StoreError("manifest.json has no integer format_version", path)
    if version > FORMAT_VERSION:
        raise StoreError(
            f"store format version {version} is newer than this readtax supports "
            f"({FORMAT_VERSION}); upgrade readtax", path)
    required = ("read_count", "total_bases", "label_map", "class_counts", "class_dtype",
                "files", "buckets", "shuffled", "seed", "max_length")
    missing = [k for k in required if k not in manifest]
    if missing:
        raise StoreError(f"manifest.json lacks {', '.join(missing)}", path)
    return manifest


def check_sizes(path: Path, manifest: dict) -> None:
    """StoreError unless every file the manifest lists exists with its recorded size."""
    for name, info in manifest["files"].items():
        f = path / name
        if not f.is_file():
            raise StoreError(f"file {name} is missing", path)
        size = f.stat().st_size
        if size != info["size"]:
            what = "truncated" if size < info["size"] else "larger than recorded"
            raise StoreError(f"file {name} is {what}: {size} bytes, expected {info['size']}", path)


def check_checksum_names(path: Path, manifest: dict) -> None:
    """StoreError unless every file's checksum in the manifest, if any, is CRC-32.

    Cheap (the manifest only): opening and verifying a store call it, so a manifest recording
    another algorithm gets this one message instead of a checksum mismatch.
    """
    for name, info in sorted(manifest["files"].items()):
        other = sorted(k for k in info if k not in ("size", CHECKSUM))
        if other and CHECKSUM not in info:
            raise StoreError(f"file {name} has a {other[0]} checksum in manifest.json; this "
                             f"readtax reads {CHECKSUM} checksums only (repack the store)", path)


# (path, device, inode, size, mtime) of class files whose checksum this process has checked.
_CHECKED_CLASS_FILES: set[tuple] = set()


def check_class_file(path: Path, manifest: dict, name: str) -> None:
    """Checksum the class file once per process at open (cheap next to the bases, and the
    labels are what a corrupt store would silently get wrong); the rest stays in verify."""
    f = path / name
    info = manifest["files"][name]
    st = f.stat()
    key = (str(f.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _CHECKED_CLASS_FILES:
        return
    if CHECKSUM not in info:
        return  # a manifest without checksums: nothing to compare with
    if file_checksum(f) != info[CHECKSUM]:
        raise StoreError(f"{name} does not match its checksum in manifest.json: the store was "
                         "changed after packing (run 'readtax verify'; repack it)", path)
    _CHECKED_CLASS_FILES.add(key)


def check_label_map(store_map: LabelMap, mapping: LabelMap, where) -> None:
    """StoreError unless ``mapping`` gives the same class order as the store's label map."""
    if mapping == store_map:
        return
    if len(mapping) != len(store_map):
        detail = f"the mapping has {len(mapping)} classes, the store {len(store_map)}"
    else:
        diff = np.flatnonzero((mapping.class_ids != store_map.class_ids)
                              | (mapping.tax_ids != store_map.tax_ids)
                              | np.array([a != b for a, b in zip(mapping.names, store_map.names)]))
        i = int(diff[0])
        detail = (f"class index {i} is {int(mapping.class_ids[i])} {mapping.names[i]!r} in the "
                  f"mapping but {int(store_map.class_ids[i])} {store_map.names[i]!r} in the store")
    raise StoreError(f"the mapping disagrees with the store's label map ({detail}); "
                     "use the store's label map or repack with this mapping", where)


# -- random access -------------------------------------------------------------------------


def expected_files(manifest: dict) -> set[str]:
    """The files a store with this manifest must have (and its manifest must list)."""
    names = {F_BASES, class_file_name(manifest), F_NFLAGS, F_NSTART, F_NLEN, F_IDS, F_IDINDEX,
             F_BUCKETS, F_BCLASS}
    if not manifest.get("fixed_length"):
        names.add(F_OFFSETS)
    if not manifest["shuffled"]:
        names.add(F_ORDER)
    return names


def file_checksum(path: Path) -> str:
    """The file's CRC-32 as the manifest records it (8 hex digits)."""
    crc = 0
    window = 16 << 20  # mapped a window at a time: mapped pages count as resident memory
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        for at in range(0, size, window):  # straight from the page cache, no read copy
            with mmap.mmap(fh.fileno(), min(window, size - at), offset=at,
                           access=mmap.ACCESS_READ) as mm:
                crc = crc32(mm, crc)
    return f"{crc:08x}"


def manifest_text(manifest: dict) -> str:
    """The manifest as JSON, one top-level key per line. Each value is encoded compactly by
    the C encoder: json's indenting encoder is pure Python, and the label map and class
    counts of a full-size store have thousands of entries each."""
    lines = [f"{json.dumps(k)}: {json.dumps(manifest[k], sort_keys=True)}"
             for k in sorted(manifest)]
    return "{\n " + ",\n ".join(lines) + "\n}\n"

