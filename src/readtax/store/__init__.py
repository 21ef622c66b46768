"""The packed read store: ``pack``, ``verify``, ``unpack`` and random access (:class:`ReadStore`).

One module per job:

* :mod:`~readtax.store.format`: the on-disk layout, file names, the manifest and checksums;
* :mod:`~readtax.store.codecs`: 2-bit bases and front-coded ids;
* :mod:`~readtax.store.reader`: :class:`ReadStore`, random access and the store's statistics;
* :mod:`~readtax.store.packer`: ``pack``, over :mod:`~readtax.store.runs` (pass 1) and
  :mod:`~readtax.store.buckets` (pass 2);
* :mod:`~readtax.store.verifier` (with :mod:`~readtax.store.consistency`) and
  :mod:`~readtax.store.unpacker`.

The modules that hold the verbs are not named after them: ``readtax.store.pack`` is the
function, so that ``from readtax.store import pack`` and a patch of ``readtax.store.pack``
mean the same thing.
"""

from __future__ import annotations

from .codecs import (
    FileRanges,
    Records,
    decode_ids,
    encode_ids,
    encode_reads,
    repack,
    unpack_bases,
)
from .format import (
    CHECKSUM,
    F_BASES,
    FORMAT,
    FORMAT_VERSION,
    check_label_map,
    file_checksum,
    is_store,
    load_manifest,
)
from .packer import pack
from .reader import ReadStore, store_stats
from .unpacker import unpack
from .verifier import verify

__all__ = [
    "CHECKSUM", "F_BASES", "FORMAT", "FORMAT_VERSION", "FileRanges", "ReadStore",
    "Records", "check_label_map", "decode_ids", "encode_ids", "encode_reads", "file_checksum",
    "is_store", "load_manifest", "pack", "repack", "store_stats", "unpack", "unpack_bases",
    "verify",
]
