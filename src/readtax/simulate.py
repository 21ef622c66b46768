"""Simulate Illumina-like reads from genomes, labelled in the ``lbl`` header scheme.

Each genome FASTA (any number of contigs) is one species. Its class comes from the mapping: the
row whose ``label_name`` equals the file's stem (``Simulibacter_alpha.fa`` ->
``Simulibacter_alpha``), or, with a genome map, the class given for the file there.

Reads are drawn uniformly over the usable positions of all contigs, from either strand with equal
probability, and never span two contigs (nor the train/validation boundary of ``split``). Each
read is taken from a template window ``SLACK`` bases longer than the read, so that deletions can
consume template bases while the read keeps its length; a contig (region) shorter than that
window -- or than the longest fragment, for paired reads -- is skipped and reported.

Errors (profile ``hiseq``): substitutions whose rate rises quadratically along the read from
0.1% at the first base to 1% at the last, rare insertions and deletions (ART's HiSeq rates:
9e-5 and 1.1e-4 per base) and occasional ``N`` (2e-4 per base). Profile ``none``: exact copies.

Headers: ``>lbl|<class_id>|<tax_id>|<contig>|<label_name>-<n>/<mate> pos=<contig>:<start>-<end>:<strand>``
with ``n`` counting reads per species from 0 (``-v<n>`` in the validation output), ``contig``
the 0-based contig number in the genome file, and ``start``/``end`` the 0-based half-open
template coordinates on that contig that the read covers (the read is the reverse complement of
that span when strand is ``-``). Single-end reads carry ``/1``. Whitespace in a label name
becomes ``_`` in the header, so the read id (the header's first word, which Kraken2, samtools and
readtax's outputs keep) is unique whatever the names (``Lactobacillus fermentum`` ->
``...|Lactobacillus_fermentum-0/1``); the class comes from the class id, not from the name.

Everything is drawn for whole chunks of reads at once with numpy, and output is written chunk by
chunk, so memory depends on the chunk size and the genomes, not on the number of reads. One seed
gives byte-identical output.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bases import ACGT, CODE, COMPLEMENT
from .batch import ReadBatch, gather_ragged, ragged_index
from .errors import InputError, UsageError
from .fastx import read_all
from .labels import LabelMap

log = logging.getLogger("readtax.simulate")

SLACK = 4  # extra template bases per read, consumed by deletions
CHUNK = 32_768  # reads (pairs) simulated and written at once
ACGT_BYTES = np.frombuffer(ACGT, dtype=np.uint8)
GENOME_SUFFIXES = (".fa", ".fasta", ".fna", ".fas", ".ffn", ".seq")



@dataclass(frozen=True)
class ErrorProfile:
    """Per-base error rates; substitution rate at read position i (0-based) of L is
    ``sub_first + (sub_last - sub_first) * (i / (L - 1)) ** shape``."""

    name: str
    sub_first: float = 0.0
    sub_last: float = 0.0
    shape: float = 2.0
    ins_rate: float = 0.0
    del_rate: float = 0.0
    n_rate: float = 0.0

    def substitution_rates(self, length: int) -> np.ndarray:
        x = np.arange(length) / max(length - 1, 1)
        return self.sub_first + (self.sub_last - self.sub_first) * x**self.shape

    def mean_substitution_rate(self, length: int) -> float:
        return float(self.substitution_rates(length).mean())


PROFILES = {
    "hiseq": ErrorProfile("hiseq", 0.001, 0.01, 2.0, 9e-5, 1.1e-4, 2e-4),
    "none": ErrorProfile("none"),
}


@dataclass
class Genome:
    """One species: its contigs as one flat upper-case ASCII buffer with offsets."""

    path: Path
    class_id: int
    tax_id: int
    name: str
    seq: np.ndarray
    offsets: np.ndarray  # contig k is seq[offsets[k]:offsets[k+1]]

    @property
    def n_contigs(self) -> int:
        return len(self.offsets) - 1


@dataclass
class SimOptions:
    """What to simulate; ``split`` is the training fraction of each contig (None: no split)."""

    reads_per_species: int
    length: int = 150
    paired: bool = False
    insert_mean: float = 300.0
    insert_sd: float = 30.0
    error_profile: str = "hiseq"
    n_rate: float | None = None  # None: the profile's rate
    split: float | None = None
    val_reads_per_species: int | None = None  # None: reads_per_species // 4 (at least 1)
    seed: int = 0
    sorted_by_species: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.reads_per_species < 0:
            problems.append(f"reads per species must be >= 0, got {self.reads_per_species}")
        if self.length < 1:
            problems.append(f"read length must be >= 1, got {self.length}")
        if self.error_profile not in PROFILES:
            problems.append(f"error profile {self.error_profile!r} is not one of {sorted(PROFILES)}")
        if self.paired and (self.insert_mean <= 0 or self.insert_sd < 0):
            problems.append(f"insert mean must be > 0 and sd >= 0, got {self.insert_mean}, {self.insert_sd}")
        if self.n_rate is not None and not 0 <= self.n_rate <= 1:
            problems.append(f"N rate must be in [0, 1], got {self.n_rate}")
        if self.split is not None and not 0 < self.split < 1:
            problems.append(f"split fraction must be between 0 and 1, got {self.split}")
        if self.val_reads_per_species is not None and self.val_reads_per_species < 0:
            problems.append(f"validation reads per species must be >= 0, got {self.val_reads_per_species}")
        if problems:
            raise UsageError("; ".join(problems))

    @property
    def profile(self) -> ErrorProfile:
        return PROFILES[self.error_profile]

    @property
    def val_reads(self) -> int:
        if self.val_reads_per_species is not None:
            return self.val_reads_per_species
        return max(1, self.reads_per_species // 4) if self.reads_per_species else 0

    @property
    def window(self) -> int:
        """Template bases one read needs."""
        return self.length + SLACK

    @property
    def max_fragment(self) -> int:
        """Longest fragment drawn (single-end: the read window)."""
        if not self.paired:
            return self.window
        return max(self.window, int(np.ceil(self.insert_mean + 4 * self.insert_sd)))


def parse_split(spec: str | None) -> float | None:
    """``region:0.8`` -> 0.8 (training fraction of every contig)."""
    if spec is None:
        return None
    m = re.fullmatch(r"region:([0-9]*\.?[0-9]+)", spec.strip())
    if not m or not 0 < float(m.group(1)) < 1:
        raise UsageError(f"--split {spec!r}: expected region:<fraction between 0 and 1>, e.g. region:0.8")
    return float(m.group(1))


# -- genomes -----------------------------------------------------------------------------------


def genome_stem(path: str | os.PathLike[str]) -> str:
    """File name without ``.gz`` and a FASTA suffix."""
    name = Path(path).name
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix in GENOME_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def load_genome_map(path: str | os.PathLike[str], label_map: LabelMap) -> dict[str, int]:
    """Two-column TSV ``genome<TAB>class`` (genome: file path, name or stem; class: class_id or
    label_name) -> {genome: class index}."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such genome map file")
    out: dict[str, int] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.rstrip("\n").split("\t")
        if len(cols) < 2:
            raise InputError("expected 2 tab-separated columns: genome, class", path, line=lineno)
        key, cls = cols[0].strip(), cols[1].strip()
        if lineno == 1 and key.lower() in ("genome", "file", "path"):
            continue
        idx = _class_index(cls, label_map)
        if idx < 0:
            raise InputError(f"class {cls!r} is neither a class_id nor a label_name of the mapping",
                             path, line=lineno)
        out[key] = idx
    return out


def _class_index(key: str, label_map: LabelMap) -> int:
    idx = int(label_map.index(np.array([key]))[0])
    if idx < 0 and re.fullmatch(r"-?\d+", key):
        idx = int(label_map.index(np.array([int(key)], dtype=np.int64))[0])
    return idx


def load_genomes(paths: list[str | os.PathLike[str]], label_map: LabelMap,
                 genome_map: dict[str, int] | None = None) -> list[Genome]:
    """Read each genome file and find its class (see the module docstring)."""
    genomes: list[Genome] = []
    seen: dict[int, Path] = {}
    for p in paths:
        path = Path(p)
        stem = genome_stem(path)
        if genome_map is not None:
            idx = next((genome_map[k] for k in (str(p), path.name, stem) if k in genome_map), -1)
            if idx < 0:
                raise InputError("genome is not listed in the genome map", path)
        else:
            idx = _class_index(stem, label_map)
            if idx < 0:
                raise InputError(
                    f"no mapping row has label_name {stem!r} (the file name without its suffix); "
                    "rename the file or give --genome-map", path)
        if idx in seen:
            raise UsageError(f"{path} and {seen[idx]} both map to class "
                             f"{label_map.names[idx]!r}; concatenate them into one FASTA")
        seen[idx] = path
        batch = read_all(path)
        if len(batch) == 0 or batch.seq_offsets[-1] == 0:
            raise InputError("genome has no sequence", path)
        tax = int(label_map.tax_ids[idx])
        genomes.append(Genome(path, int(label_map.class_ids[idx]), max(tax, 0),
                              label_map.names[idx], batch.seq, batch.seq_offsets))
    return genomes


# -- regions and positions ---------------------------------------------------------------------


@dataclass
class Regions:
    """Usable stretches of one genome: absolute [start, end) in the flat buffer, contig number."""

    start: np.ndarray
    end: np.ndarray
    contig: np.ndarray
    skipped: int = 0

    def weights(self, window: int) -> np.ndarray:
        return np.maximum(self.end - self.start - window + 1, 0).astype(np.float64)


def regions(genome: Genome, part: str, split: float | None, window: int) -> Regions:
    """``part`` 'all', 'train' (first ``split`` of each contig) or 'val' (the rest), keeping the
    stretches of at least ``window`` bases."""
    lo = genome.offsets[:-1]
    hi = genome.offsets[1:]
    if part != "all":
        cut = lo + np.floor((hi - lo) * split).astype(np.int64)
        lo, hi = (lo, cut) if part == "train" else (cut, hi)
    ok = (hi - lo) >= window
    return Regions(lo[ok], hi[ok], np.flatnonzero(ok), int((~ok).sum()))


@dataclass
class SimBatch:
    """Simulated reads of one chunk. Paired chunks hold mate 1 and mate 2 of a pair adjacently."""

    species: np.ndarray  # genome number per read
    number: np.ndarray  # read (pair) number within its species
    mate: np.ndarray  # 1 or 2
    contig: np.ndarray
    start: np.ndarray  # contig coordinates of the template span
    end: np.ndarray
    reverse: np.ndarray  # bool
    seq: np.ndarray  # uint8 [n, L]

    def __len__(self) -> int:
        return len(self.species)

    def take(self, rows: np.ndarray) -> SimBatch:
        return SimBatch(**{k: getattr(self, k)[rows] for k in SimBatch.__dataclass_fields__})


class _Windows:
    """Fixed-width template windows of one genome on both strands, gathered row-wise."""

    def __init__(self, genome: Genome, width: int) -> None:
        from numpy.lib.stride_tricks import sliding_window_view

        self.size = len(genome.seq)
        self.width = width
        self.fwd = sliding_window_view(genome.seq, width)
        self.rev = sliding_window_view(COMPLEMENT[genome.seq[::-1]], width)

    def take(self, five: np.ndarray, reverse: np.ndarray) -> np.ndarray:
        """[n, width] templates read 5'->3' from absolute position ``five``; reverse reads are
        the reverse complement of the ``width`` bases ending just before ``five``."""
        out = np.empty((len(five), self.width), dtype=np.uint8)
        out[~reverse] = self.fwd[five[~reverse]]
        out[reverse] = self.rev[self.size - five[reverse]]
        return out


def _apply_errors(rng: np.random.Generator, tmpl: np.ndarray, length: int, profile: ErrorProfile,
                  n_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Reads of ``length`` from templates with indels, substitutions and N; returns (reads,
    template bases consumed per read). Errors are rare, so events are drawn sparsely: counts
    from binomials, then positions, never a random number per base."""
    n = len(tmpl)
    reads = tmpl[:, :length].copy()
    consumed = np.full(n, length, dtype=np.int64)
    p_indel = profile.ins_rate + profile.del_rate
    if p_indel > 0 and n:
        k = rng.binomial(length, p_indel, n)
        rows = np.flatnonzero(k)
        if len(rows):
            m = len(rows)
            ev_row = np.repeat(np.arange(m), k[rows])
            ev_pos = rng.integers(0, length, len(ev_row))
            is_ins = rng.random(len(ev_row)) < profile.ins_rate / p_indel
            ins = np.zeros((m, length), dtype=bool)
            dele = np.zeros((m, length), dtype=bool)
            ins[ev_row[is_ins], ev_pos[is_ins]] = True
            dele[ev_row[~is_ins], ev_pos[~is_ins]] = True
            dele &= ~ins
            # At most SLACK deletions per read: the template has only that many spare bases.
            dele &= np.cumsum(dele, axis=1) <= SLACK
            # Output base j copies template base j - (insertions so far) + (deletions so far).
            ptr = np.arange(length)[None, :] - np.cumsum(ins, axis=1) + np.cumsum(dele, axis=1)
            sub = tmpl[rows[:, None], np.clip(ptr, 0, tmpl.shape[1] - 1)]
            sub[ins] = ACGT_BYTES[rng.integers(0, 4, int(ins.sum()))]
            reads[rows] = sub
            consumed[rows] += dele.sum(axis=1) - ins.sum(axis=1)
    rates = profile.substitution_rates(length)
    if rates.any() and n:
        hits = rng.binomial(n, rates)
        r = np.concatenate([rng.choice(n, int(h), replace=False) for h in hits])  # per column
        c = np.repeat(np.arange(length), hits)
        old = reads[r, c]
        ok = old != ord("N")
        r, c, code = r[ok], c[ok], CODE[old[ok]]
        reads[r, c] = ACGT_BYTES[(code + rng.integers(1, 4, len(code))) % 4]
    if n_rate > 0 and n:
        k = int(rng.binomial(n * length, n_rate))
        reads.reshape(-1)[rng.choice(n * length, k, replace=False)] = ord("N")
    return reads, consumed


def _draw_positions(rng: np.random.Generator, reg: Regions, frag: np.ndarray, window_max: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(region number, absolute fragment start) for fragments of lengths ``frag``."""
    w = reg.weights(window_max)
    r = rng.choice(len(w), size=len(frag), p=w / w.sum())
    room = reg.end[r] - reg.start[r] - frag + 1
    start = reg.start[r] + np.floor(rng.random(len(frag)) * room).astype(np.int64)
    return r, start


@dataclass
class _Draw:
    """Where one species' reads of a chunk come from (before errors)."""

    contig: np.ndarray
    five: np.ndarray  # absolute 5' template position
    reverse: np.ndarray
    mate: np.ndarray
    number: np.ndarray
    offset: np.ndarray  # contig start in the flat genome buffer
    tmpl: np.ndarray


def _draw_species(rng: np.random.Generator, genome: Genome, reg: Regions, win: _Windows,
                  numbers: np.ndarray, opts: SimOptions) -> _Draw:
    """Positions, strands and templates of reads (pairs) ``numbers`` of one species."""
    n = len(numbers)
    if opts.paired:
        frag = np.rint(rng.normal(opts.insert_mean, opts.insert_sd, n)).astype(np.int64)
        frag = np.clip(frag, opts.window, opts.max_fragment)
    else:
        frag = np.full(n, opts.window, dtype=np.int64)
    r, fstart = _draw_positions(rng, reg, frag, opts.max_fragment)
    flip = rng.random(n) < 0.5
    fend = fstart + frag
    if opts.paired:
        # Mate 1 reads the fragment's forward strand from its start unless the fragment is
        # flipped; mate 2 reads the opposite strand from the other end.
        rev = np.stack([flip, ~flip], axis=1).ravel()
        five = np.where(rev, np.repeat(fend, 2), np.repeat(fstart, 2))
        r = np.repeat(r, 2)
        mate = np.tile(np.array([1, 2], dtype=np.int64), n)
        numbers = np.repeat(numbers, 2)
    else:
        rev = flip
        five = np.where(rev, fend, fstart)
        mate = np.ones(n, dtype=np.int64)
    contig = reg.contig[r]
    return _Draw(contig, five, rev, mate, numbers, genome.offsets[contig], win.take(five, rev))


def _species_schedule(rng: np.random.Generator, counts: np.ndarray, chunk: int, sort: bool
                      ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Chunks of (species per read, number within species); exactly ``counts[s]`` of species s.

    Mixed order draws each chunk's species counts from a multivariate hypergeometric on what is
    left, then permutes the chunk: exact totals in O(species) memory.
    """
    remaining = counts.astype(np.int64).copy()
    done = np.zeros_like(remaining)
    total = int(remaining.sum())
    while total > 0:
        size = min(chunk, total)
        if sort:
            s = int(np.flatnonzero(remaining)[0])
            size = min(size, int(remaining[s]))
            take = np.zeros_like(remaining)
            take[s] = size
        else:
            take = rng.multivariate_hypergeometric(remaining, size)
        species = np.repeat(np.arange(len(remaining)), take)
        if not sort:
            species = species[rng.permutation(size)]
        # Number within species: running total plus rank among this chunk's reads of the species.
        order = np.argsort(species, kind="stable")
        first = np.concatenate([[0], np.cumsum(take)[:-1]])
        rank = np.empty(size, dtype=np.int64)
        rank[order] = np.arange(size) - np.repeat(first, take)
        yield species, done[species] + rank
        done += take
        remaining -= take
        total -= size


def simulate_reads(genomes: list[Genome], opts: SimOptions, *, part: str = "all",
                   count: int | None = None, seed_stream: int = 0, chunk: int = CHUNK
                   ) -> Iterator[SimBatch]:
    """Chunks of simulated reads for ``part`` ('all', 'train', 'val'): ``count`` reads (pairs)
    per species (default ``opts.reads_per_species``)."""
    count = opts.reads_per_species if count is None else count
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([opts.seed, seed_stream])))
    regs = [regions(g, part, opts.split, opts.max_fragment) for g in genomes]
    for g, reg in zip(genomes, regs):
        if len(reg.start) == 0:
            longest = int(np.diff(g.offsets).max())
            where = "" if part == "all" else f" in the {part} part of its contigs ({opts.split})"
            raise InputError(f"no contig has {opts.max_fragment} usable bases{where} "
                             f"(longest contig {longest} bp); shorten the reads or fragments", g.path)
        if reg.skipped:
            log.warning("%s: skipped %d of %d contig%s shorter than %d bp (%s part)", g.path,
                        reg.skipped, g.n_contigs, "s" if g.n_contigs > 1 else "",
                        opts.max_fragment, part)
    wins = [_Windows(g, opts.window) for g in genomes]
    profile = opts.profile
    n_rate = profile.n_rate if opts.n_rate is None else opts.n_rate
    per = 2 if opts.paired else 1
    counts = np.full(len(genomes), count, dtype=np.int64)
    for species, numbers in _species_schedule(rng, counts, chunk, opts.sorted_by_species):
        slots, draws, spc = [], [], []
        for s in np.unique(species):  # per species (classes), not per read
            sel = np.flatnonzero(species == s)
            d = _draw_species(rng, genomes[s], regs[s], wins[s], numbers[sel], opts)
            slots.append(np.repeat(sel * per, per) + np.tile(np.arange(per), len(sel)))
            draws.append(d)
            spc.append(np.full(len(d.five), s, dtype=np.int64))
        # Put each species' reads back at their slots in the chunk.
        order = np.empty(len(species) * per, dtype=np.int64)
        order[np.concatenate(slots)] = np.arange(len(order))

        def cat(name: str, draws=draws, order=order) -> np.ndarray:
            return np.concatenate([getattr(d, name) for d in draws])[order]

        reverse, five, offset = cat("reverse"), cat("five"), cat("offset")
        reads, consumed = _apply_errors(rng, cat("tmpl"), opts.length, profile, n_rate)
        start = np.where(reverse, five - consumed, five) - offset
        yield SimBatch(np.concatenate(spc)[order], cat("number"), cat("mate"), cat("contig"),
                       start, start + consumed, reverse, reads)


# -- output formatting (vectorised) ------------------------------------------------------------


def ascii_ints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decimal ASCII of non-negative integers: (flat bytes, length per value)."""
    v = np.asarray(values, dtype=np.int64)
    digits = np.ones(len(v), dtype=np.int64)
    p = 10
    while len(v) and (v >= p).any():
        digits += v >= p
        p *= 10
    width = int(digits.max(initial=1))
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    mat = ((v[:, None] // powers[None, :]) % 10 + ord("0")).astype(np.uint8)
    keep = np.arange(width)[None, :] >= (width - digits)[:, None]
    return mat[keep], digits


def _ragged_table(strings: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    data = np.frombuffer(b"".join(strings), dtype=np.uint8)
    offsets = np.zeros(len(strings) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in strings], out=offsets[1:])
    return data, offsets


def join_columns(columns: list, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-row pieces: (flat bytes, length per row). A column is ``bytes`` (the same
    for every row), a ``(flat, lengths)`` ragged pair, or a ``uint8 [n, w]`` matrix."""
    lens = []
    for col in columns:
        if isinstance(col, bytes):
            lens.append(np.full(n, len(col), dtype=np.int64))
        elif isinstance(col, tuple):
            lens.append(np.asarray(col[1], dtype=np.int64))
        else:
            lens.append(np.full(n, col.shape[1], dtype=np.int64))
    lens_m = np.stack(lens, axis=1)
    row_len = lens_m.sum(axis=1)
    row_start = np.concatenate([[0], np.cumsum(row_len)[:-1]])
    col_start = row_start[:, None] + np.cumsum(lens_m, axis=1) - lens_m
    out = np.empty(int(row_len.sum()), dtype=np.uint8)
    for j, col in enumerate(columns):
        if isinstance(col, bytes):
            const = np.frombuffer(col, dtype=np.uint8)
            out[col_start[:, j][:, None] + np.arange(len(const))[None, :]] = const
        elif isinstance(col, tuple):
            idx, _ = ragged_index(col_start[:, j], lens_m[:, j])
            out[idx] = col[0]
        else:
            out[col_start[:, j][:, None] + np.arange(col.shape[1])[None, :]] = col
    return out, row_len


def prepend_rows(head: np.ndarray, head_len: np.ndarray, block: np.ndarray) -> np.ndarray:
    """Rows ``head_i + block_i`` as one buffer, for a ragged ``head`` and a fixed-width ``block``.

    Heads are right-aligned in a matrix so that the wide block is copied as whole columns; one
    boolean compress then drops the padding (no per-byte index arrays for the block).
    """
    n, width = block.shape
    hmax = int(head_len.max(initial=0))
    mat = np.empty((n, hmax + width), dtype=np.uint8)
    mat[:, hmax:] = block
    row_start = np.arange(n, dtype=np.int64) * (hmax + width) + hmax - head_len
    idx, _ = ragged_index(row_start, head_len)
    mat.reshape(-1)[idx] = head
    keep = np.arange(hmax + width)[None, :] >= (hmax - head_len)[:, None]
    return mat[keep]


def id_safe(name: str) -> str:
    """``name`` with each run of whitespace replaced by ``_`` (read ids end at whitespace)."""
    return re.sub(r"\s+", "_", name.strip())


class Formatter:
    """Turns :class:`SimBatch` chunks into FASTA or FASTQ bytes for a set of genomes."""

    def __init__(self, genomes: list[Genome], *, fastq: bool = False, val: bool = False,
                 profile: ErrorProfile | None = None, length: int = 150) -> None:
        self.fastq = fastq
        self.prefix = _ragged_table([f"lbl|{g.class_id}|{g.tax_id}|".encode() for g in genomes])
        tag = "-v" if val else "-"
        self.name = _ragged_table([f"|{id_safe(g.name)}{tag}".encode() for g in genomes])
        # FASTQ qualities state the profile's substitution rate per position (Phred + 33).
        rates = (profile or PROFILES["none"]).substitution_rates(length)
        phred = np.clip(np.round(-10 * np.log10(np.maximum(rates, 1e-4))), 2, 40)
        self.qual = (phred + 33).astype(np.uint8)

    def format(self, b: SimBatch) -> bytes:
        n = len(b)
        if n == 0:
            return b""
        contig = ascii_ints(b.contig)
        strand = np.where(b.reverse, ord("-"), ord("+")).astype(np.uint8)[:, None]
        mate = (b.mate + ord("0")).astype(np.uint8)[:, None]
        head, head_len = join_columns([
            b"@" if self.fastq else b">",
            _gather(self.prefix, b.species), contig, _gather(self.name, b.species),
            ascii_ints(b.number), b"/", mate, b" pos=", contig, b":", ascii_ints(b.start), b"-",
            ascii_ints(b.end), b":", strand, b"\n",
        ], n)
        L = b.seq.shape[1]
        if self.fastq:
            block = np.empty((n, 2 * L + 4), dtype=np.uint8)
            block[:, :L] = b.seq
            block[:, L : L + 3] = np.frombuffer(b"\n+\n", dtype=np.uint8)
            qual = block[:, L + 3 : 2 * L + 3]
            qual[:] = self.qual[None, :L]
            qual[b.seq == ord("N")] = ord("#")
        else:
            block = np.empty((n, L + 1), dtype=np.uint8)
            block[:, :L] = b.seq
        block[:, -1] = ord("\n")
        return prepend_rows(head, head_len, block).tobytes()


def _gather(table: tuple[np.ndarray, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    data, lengths = gather_ragged(table[0], table[1], rows)
    return data, np.diff(lengths)


# -- files -------------------------------------------------------------------------------------


def is_fastq_name(path: str | os.PathLike[str]) -> bool:
    name = str(path)
    if name.endswith(".gz"):
        name = name[:-3]
    return name.endswith((".fq", ".fastq"))


@dataclass
class SimSummary:
    """What was written: reads per file and species."""

    files: dict[str, int] = field(default_factory=dict)
    species: list[str] = field(default_factory=list)


def write_reads(genomes: list[Genome], opts: SimOptions, output: str | os.PathLike[str], *,
                output2: str | os.PathLike[str] | None = None, part: str = "all",
                count: int | None = None, seed_stream: int = 0, stack: contextlib.ExitStack
                ) -> int:
    """Write one read set (mates interleaved, or to ``output2``); returns records written."""
    from .outputs import atomic_open

    fmt = Formatter(genomes, fastq=is_fastq_name(output), val=part == "val",
                    profile=opts.profile, length=opts.length)
    fh1 = stack.enter_context(atomic_open(output, "wb"))
    fh2 = None
    if output2 is not None:
        fmt2 = Formatter(genomes, fastq=is_fastq_name(output2), val=part == "val",
                         profile=opts.profile, length=opts.length)
        fh2 = stack.enter_context(atomic_open(output2, "wb"))
    written = 0
    for b in simulate_reads(genomes, opts, part=part, count=count, seed_stream=seed_stream):
        if fh2 is None:
            fh1.write(fmt.format(b))
        else:
            fh1.write(fmt.format(b.take(np.flatnonzero(b.mate == 1))))
            fh2.write(fmt2.format(b.take(np.flatnonzero(b.mate == 2))))
        written += len(b)
    return written


def simulate(genome_paths: list[str | os.PathLike[str]], label_map: LabelMap,
             output: str | os.PathLike[str], opts: SimOptions, *,
             output2: str | os.PathLike[str] | None = None,
             val_output: str | os.PathLike[str] | None = None,
             val_output2: str | os.PathLike[str] | None = None,
             genome_map: dict[str, int] | None = None) -> SimSummary:
    """Simulate reads from genomes into ``output`` (and ``val_output`` with a split).

    All files appear together at the end (each is written to a temporary name and renamed only
    when every file is complete).
    """
    if not genome_paths:
        raise UsageError("no genome files given")
    if output2 is not None and not opts.paired:
        raise UsageError("a second output file needs --paired")
    if opts.split is not None and val_output is None and opts.val_reads > 0:
        raise UsageError("--split needs --val-output (or --val-reads-per-species 0)")
    if val_output is not None and opts.split is None:
        raise UsageError("--val-output needs --split region:<fraction>")
    if (val_output2 is not None) != (output2 is not None and val_output is not None):
        raise UsageError("give --val-output2 exactly when both --output2 and --val-output are given")
    genomes = load_genomes(genome_paths, label_map, genome_map)
    summary = SimSummary(species=[g.name for g in genomes])
    with contextlib.ExitStack() as stack:
        part = "train" if opts.split is not None else "all"
        summary.files[str(output)] = write_reads(genomes, opts, output, output2=output2,
                                                 part=part, seed_stream=0, stack=stack)
        if val_output is not None:
            summary.files[str(val_output)] = write_reads(
                genomes, opts, val_output, output2=val_output2, part="val",
                count=opts.val_reads, seed_stream=1, stack=stack)
    for path, n in summary.files.items():
        log.info("wrote %d reads from %d genomes to %s", n, len(genomes), path)
    return summary


def read_truth(batch: ReadBatch) -> dict[str, np.ndarray]:
    """Parse simulate's headers back into arrays (tests and benchmarks): class_id, contig,
    number, mate, start, end, reverse."""
    text = batch.headers.tobytes().decode()
    off = batch.header_offsets
    heads = [text[off[i] : off[i + 1]] for i in range(len(batch))]
    pat = re.compile(r"lbl\|(\d+)\|(\d+)\|(\d+)\|.*-v?(\d+)/(\d) pos=(\d+):(\d+)-(\d+):([+-])")
    rows = [pat.match(h).groups() for h in heads]
    cols = list(zip(*rows)) if rows else [()] * 9
    as_int = [np.array(c, dtype=np.int64) for c in cols[:8]]
    return {"class_id": as_int[0], "tax_id": as_int[1], "contig": as_int[2], "number": as_int[3],
            "mate": as_int[4], "start": as_int[6], "end": as_int[7],
            "reverse": np.array([c == "-" for c in cols[8]], dtype=bool)}
