"""Kraken2-compatible outputs (per-read lines and the report) and a reader for Kraken2 output.

Per-read output (``kraken2 --output``), one line per read or pair, tab-separated::

    C|U  read_id  tax_id  length  k-mer list

``length`` is ``150`` for a single read and ``150|150`` for a pair. Kraken2's fifth column lists
``taxid:count`` runs of its k-mer hits (``|:|`` between mates). readtax has no k-mer hits, so for
the model's calls the fifth column is a *placeholder*: one run per mate covering all the mate's
k-mers (k = 35, Kraken2's default), ``562:116`` for a classified 150 bp read, ``0:116`` for an
unclassified one, ``0:0`` for a read shorter than k, in Kraken2 2.1's syntax. It says nothing
about where in the read the evidence lies. With ``--with-kraken``, a read whose Kraken2 call is
kept keeps Kraken2's own fifth column unchanged. KrakenTools, Krona (``ktImportTaxonomy -q 2
-t 3``) and Pavian read columns 1-4 only.

The report follows Kraken2 2.1's ``reports.cc`` exactly: six tab-separated columns (percent of
all reads including unclassified as ``%6.2f``, clade reads, reads assigned directly, rank code,
tax id, name indented two spaces per depth), the ``U ... unclassified`` line first (only when
some reads are unclassified), then a depth-first walk from the root (tax id 1) over taxa with a
non-zero clade count, children sorted by clade count descending. Kraken2 sorts with
``std::sort``, which leaves ties in tax-id order for the short child lists of real reports;
readtax breaks ties by tax id always, so the output is deterministic. Rank codes: D K P C O F G S
for superkingdom (or domain) to species, R for the root; a node of any other rank takes its
nearest coded ancestor's letter plus its depth below it (``R1``, ``S1``, ``G2``...).

Without a taxonomy, readtax knows only its species, so the report is the root with one ``S``
line per species; with ``nodes.dmp``/``names.dmp`` (an NCBI taxdump directory) it holds the full
lineage, which Bracken needs to re-estimate at genus level. The label map's tax ids keep the
label map's names either way (the names of calls.tsv and the abundance table); ``names.dmp``
supplies only the names of their ancestors.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError, UsageError

KRAKEN_K = 35  # Kraken2's default k-mer length (used only for the placeholder k-mer counts)

# reports.cc: rank name -> code; every other rank increments the depth below the last code.
RANK_CODES = {
    "superkingdom": "D",
    "domain": "D",  # NCBI renamed superkingdom to domain in 2025
    "kingdom": "K",
    "phylum": "P",
    "class": "C",
    "order": "O",
    "family": "F",
    "genus": "G",
    "species": "S",
}


# -- per-read output --------------------------------------------------------------------------


def _kmers(length: np.ndarray) -> np.ndarray:
    return np.maximum(np.asarray(length, np.int64) - KRAKEN_K + 1, 0)


def format_kraken_lines(ids: list[str], tax_ids: np.ndarray, lengths: np.ndarray,
                        mate_lengths: np.ndarray | None = None,
                        kmer_columns: list[str] | None = None) -> str:
    """Kraken2 per-read lines for a batch (tax id 0 = unclassified), each ending in a newline.

    ``lengths`` holds the read length, or for rows with ``mate_lengths[i] >= 0`` the first
    mate's length, ``mate_lengths[i]`` the second mate's (-1 = not a pair). A non-empty
    ``kmer_columns[i]`` is written as row i's fifth column instead of the placeholder.
    """
    text = _format_placeholder_lines(ids, tax_ids, lengths, mate_lengths)
    if kmer_columns is None or not any(kmer_columns):
        return text
    lines = text.splitlines(keepends=True)
    for i, col in enumerate(kmer_columns):
        if col:
            lines[i] = lines[i].rsplit("\t", 1)[0] + "\t" + col + "\n"
    return "".join(lines)


def _format_placeholder_lines(ids: list[str], tax_ids: np.ndarray, lengths: np.ndarray,
                              mate_lengths: np.ndarray | None) -> str:
    n = len(ids)
    if n == 0:
        return ""
    tax_ids = np.asarray(tax_ids, np.int64)
    lengths = np.asarray(lengths, np.int64)
    mate = np.full(n, -1, np.int64) if mate_lengths is None else np.asarray(mate_lengths, np.int64)
    cu = np.where(tax_ids > 0, "C", "U").tolist()
    tax = tax_ids.tolist()
    cols1 = [cu, ids, tax, lengths.tolist(), tax, _kmers(lengths).tolist()]
    single = "%s\t%s\t%d\t%d\t%d:%d\n"
    pair = "%s\t%s\t%d\t%d|%d\t%d:%d |:| %d:%d\n"
    paired = mate >= 0
    # One %-format over the whole batch: about twice as fast as formatting line by line.
    if not paired.any():
        return (single * n) % tuple(itertools.chain.from_iterable(zip(*cols1)))
    cols2 = [cu, ids, tax, lengths.tolist(), mate.tolist(), tax, _kmers(lengths).tolist(), tax,
             _kmers(mate).tolist()]
    if paired.all():
        return (pair * n) % tuple(itertools.chain.from_iterable(zip(*cols2)))
    rows1, rows2 = zip(*cols1), zip(*cols2)
    return "".join(pair % r2 if p else single % r1
                   for r1, r2, p in zip(rows1, rows2, paired.tolist()))


@dataclass
class KrakenCalls:
    """A block of Kraken2 per-read lines: ids (first word, without /1 /2), tax ids (0 = U),
    and each line's fifth column (the k-mer runs) exactly as written ("" when absent)."""

    ids: list[str]
    tax_ids: np.ndarray
    first_line: int  # 1-based line number of the first entry
    kmer_columns: list[str] = field(default_factory=list)


def _parse_taxid(text: str) -> int:
    """Column 3: ``562`` or, with ``--use-names``, ``Escherichia coli (taxid 562)``."""
    text = text.strip()
    if text.endswith(")"):
        pos = text.rfind("(taxid ")
        if pos >= 0:
            text = text[pos + 7 : -1]
    return int(text)


def strip_mate(read_id: str) -> str:
    """The pair id: a read id without a trailing ``/1`` or ``/2``."""
    return read_id[:-2] if read_id.endswith(("/1", "/2")) else read_id


class KrakenReader:
    """Reads Kraken2 per-read output in blocks, in file order, with line numbers for errors."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise UsageError(f"{self.path}: no such Kraken2 output file")
        if self.path.is_dir():
            raise UsageError(f"{self.path}: is a directory, expected Kraken2 per-read output")
        from .fastx import is_gzip

        try:
            if is_gzip(self.path):
                import gzip

                self._fh = gzip.open(self.path, "rt", encoding="utf-8", newline="\n")  # noqa: SIM115
            else:
                self._fh = open(self.path, encoding="utf-8", newline="\n")  # noqa: SIM115
        except OSError as exc:
            raise InputError(f"cannot read Kraken2 output ({exc.strerror})", self.path) from None
        self.line = 0  # lines consumed so far

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> KrakenReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _readline(self) -> str:
        try:
            return self._fh.readline()
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read Kraken2 output ({exc})", self.path,
                             line=self.line + 1) from None

    def skip(self, n: int) -> int:
        """Skip ``n`` lines (without parsing them); returns how many were there."""
        done = 0
        while done < n and self._readline():
            done += 1
        self.line += done
        return done

    def read(self, n: int) -> KrakenCalls:
        """Parse the next ``n`` lines (fewer at end of file)."""
        ids: list[str] = []
        taxa: list[int] = []
        kmers: list[str] = []
        first = self.line + 1
        for _ in range(n):
            text = self._readline()
            if not text:
                break
            self.line += 1
            cols = text.rstrip("\r\n").split("\t")
            if len(cols) < 4 or cols[0] not in ("C", "U"):
                raise InputError(
                    "expected a Kraken2 per-read line 'C|U<TAB>read id<TAB>tax id<TAB>length...'",
                    self.path, line=self.line,
                )
            try:
                tax = _parse_taxid(cols[2])
            except ValueError:
                raise InputError(f"tax id {cols[2]!r} is not an integer", self.path,
                                 line=self.line) from None
            ids.append(strip_mate(cols[1]))
            taxa.append(tax if cols[0] == "C" else 0)
            kmers.append("\t".join(cols[4:]))
        return KrakenCalls(ids, np.array(taxa, dtype=np.int64), first, kmers)

    def __iter__(self) -> Iterator[KrakenCalls]:
        while True:
            block = self.read(65536)
            if not block.ids:
                return
            yield block


# -- taxonomy ---------------------------------------------------------------------------------


@dataclass
class Taxonomy:
    """The part of an NCBI taxonomy needed for a report: parent, rank and name per tax id."""

    parent: dict[int, int]
    rank: dict[int, str]
    name: dict[int, str] = field(default_factory=dict)

    def lineage(self, taxid: int) -> list[int]:
        """Tax ids from ``taxid`` up to the root (1), inclusive."""
        out = [taxid]
        seen = {taxid}
        while taxid != 1:
            taxid = self.parent[taxid]
            if taxid in seen:  # a cycle that does not pass through 1
                break
            out.append(taxid)
            seen.add(taxid)
        return out


def _dmp_fields(line: str) -> list[str]:
    return [f.strip() for f in line.rstrip("\r\n").rstrip("|").rstrip("\t").split("\t|\t")]


def load_taxonomy(directory: str | os.PathLike[str], tax_ids) -> Taxonomy:
    """Lineages of ``tax_ids`` from ``directory/nodes.dmp`` and ``names.dmp``.

    Only the nodes on those lineages are kept, so a full NCBI dump needs little memory.
    Tax ids missing from ``nodes.dmp`` raise an :class:`InputError` that lists them.
    """
    directory = Path(directory)
    nodes_p, names_p = directory / "nodes.dmp", directory / "names.dmp"
    for p in (nodes_p, names_p):
        if not p.exists():
            raise UsageError(f"{p}: no such file (--taxonomy expects an NCBI taxdump directory "
                             "with nodes.dmp and names.dmp)")
    parent: dict[int, int] = {}
    rank: dict[int, str] = {}
    with open(nodes_p, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            f = _dmp_fields(line)
            try:
                tid, par = int(f[0]), int(f[1])
                parent[tid] = par
                rank[tid] = f[2]
            except (ValueError, IndexError):
                raise InputError("expected 'tax_id | parent | rank | ...'", nodes_p,
                                 line=lineno) from None
    wanted = sorted({int(t) for t in tax_ids})
    missing = [t for t in wanted if t not in parent]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise InputError(f"{len(missing)} tax id(s) of the label map are not in the taxonomy: "
                         f"{shown}", nodes_p)
    tax = Taxonomy(parent, rank)
    keep: set[int] = {1}
    for t in wanted:
        try:
            keep.update(tax.lineage(t))
        except KeyError as exc:
            raise InputError(f"tax id {t}: ancestor {exc.args[0]} is not in the taxonomy",
                             nodes_p) from None
    names: dict[int, str] = {}
    with open(names_p, encoding="utf-8") as fh:
        for line in fh:
            f = _dmp_fields(line)
            if len(f) >= 4 and f[3] == "scientific name":
                try:
                    tid = int(f[0])
                except ValueError:
                    continue
                if tid in keep:
                    names[tid] = f[1]
    return Taxonomy({t: parent[t] for t in keep}, {t: rank.get(t, "no rank") for t in keep},
                    names)


# -- report -----------------------------------------------------------------------------------


@dataclass
class ReportRow:
    percent: str
    clade: int
    direct: int
    rank: str
    tax_id: int
    name: str
    depth: int

    def line(self) -> str:
        return (f"{self.percent}\t{self.clade}\t{self.direct}\t{self.rank}\t{self.tax_id}\t"
                f"{'  ' * self.depth}{self.name}\n")


def _pct(count: int, total: int) -> str:
    return "%6.2f" % (100.0 * count / total if total else 0.0)  # noqa: UP031 - C printf format


def report_rows(direct: dict[int, int], unclassified: int, names: dict[int, str],
                taxonomy: Taxonomy | None = None) -> list[ReportRow]:
    """Rows of a Kraken2 report for reads assigned directly to tax ids (``direct``).

    Without ``taxonomy`` every tax id is a species (``S``) under the root; with it, counts
    roll up each lineage and ranks come from ``nodes.dmp``. A tax id in ``names`` is always
    written with that name (the label map's, as in calls.tsv and the abundance table), so a
    run uses one set of names; ``names.dmp`` names only the ancestors the label map lacks.
    """
    direct = {int(t): int(c) for t, c in direct.items() if c}
    total = unclassified + sum(direct.values())
    rows: list[ReportRow] = []
    if unclassified:
        rows.append(ReportRow(_pct(unclassified, total), unclassified, unclassified, "U", 0,
                              "unclassified", 0))
    if taxonomy is None:
        parent = {t: 1 for t in direct if t != 1}
        rank = {t: "species" for t in direct}
        rank[1] = "no rank"
        label = {1: "root", **{t: names.get(t, str(t)) for t in direct if t != 1}}
    else:
        parent = dict(taxonomy.parent)
        rank = taxonomy.rank
        label = {t: names.get(t) or taxonomy.name.get(t, str(t)) for t in taxonomy.parent}
    clade: dict[int, int] = {}
    for t, c in direct.items():
        node = t
        steps = 0
        while True:
            clade[node] = clade.get(node, 0) + c
            if node == 1 or steps > 1000:
                break
            node = parent.get(node, 1)
            steps += 1
    if not clade:
        return rows
    children: dict[int, list[int]] = {}
    for t in clade:
        if t != 1:
            children.setdefault(parent.get(t, 1), []).append(t)

    # Iterative DFS (NCBI lineages are shallow, but a deep custom taxonomy should not recurse).
    stack: list[tuple[int, str, int, int]] = [(1, "R", -1, 0)]
    while stack:
        t, code, code_depth, depth = stack.pop()
        r = rank.get(t, "no rank")
        if r in RANK_CODES:
            code, code_depth = RANK_CODES[r], 0
        else:
            code_depth += 1
        rank_str = code + (str(code_depth) if code_depth else "")
        rows.append(ReportRow(_pct(clade[t], total), clade[t], direct.get(t, 0), rank_str, t,
                              label.get(t, str(t)), depth))
        kids = sorted(children.get(t, ()), key=lambda k: (-clade[k], k))
        stack.extend((k, code, code_depth, depth + 1) for k in reversed(kids))
    return rows


def format_report(direct: dict[int, int], unclassified: int, names: dict[int, str],
                  taxonomy: Taxonomy | None = None) -> str:
    return "".join(r.line() for r in report_rows(direct, unclassified, names, taxonomy))


def write_report(path: str | os.PathLike[str], direct: dict[int, int], unclassified: int,
                 names: dict[int, str], taxonomy: Taxonomy | None = None) -> None:
    from .outputs import atomic_open

    with atomic_open(path) as fh:
        fh.write(format_report(direct, unclassified, names, taxonomy))


def read_report(path: str | os.PathLike[str]) -> list[ReportRow]:
    """Parse a Kraken2-style report (6 columns; Kraken2's 8-column minimizer variant too)."""
    path = Path(path)
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            cols = line.rstrip("\r\n").split("\t")
            if len(cols) not in (6, 8):
                raise InputError(f"expected 6 tab-separated report columns, found {len(cols)}",
                                 path, line=lineno)
            if len(cols) == 8:
                cols = cols[:3] + cols[5:]
            raw = cols[5]
            name = raw.lstrip(" ")
            try:
                rows.append(ReportRow(cols[0], int(cols[1]), int(cols[2]), cols[3], int(cols[4]),
                                      name, (len(raw) - len(name)) // 2))
            except ValueError:
                raise InputError("clade, direct and tax id columns must be integers", path,
                                 line=lineno) from None
    return rows
