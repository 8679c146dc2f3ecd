"""Genome-browser tracks of a run: one bigBed of the hits, one bigWig per motif.

``write_tracks(OUT, DIR)`` writes

* ``DIR/hits.bb`` -- the hits of ``hits.bed`` (finemo's unique hits: one per chromosome, trimmed
  start, motif and strand) as BED6+4: ``chrom, chromStart, chromEnd, name`` (the motif's
  label, ``pos_patterns.pattern_3 (SOX2)`` for an annotated run; its name with
  ``label_by="pattern"`` or when never annotated: :mod:`nemo_dask.matching.labels`),
  ``score`` (0-1000, below), ``strand``, then the autoSql fields ``motif_name``,
  ``hit_coefficient`` (``hit_coefficient_global``, finemo's global-scale coefficient),
  ``hit_similarity`` and ``hit_importance``. The autoSql text is :data:`AUTOSQL`.
* ``DIR/<motif>.bw`` per motif (the name with characters other than ``A-Za-z0-9._-`` replaced
  by ``_``; with ``label_by="match"``, the default, the motif's label, e.g.
  ``pos_patterns.pattern_3_SOX2.bw``) -- hit-coefficient coverage: at each base, the **sum** of
  ``hit_coefficient_global`` over the motif's unique hits (both strands) whose trimmed interval
  ``[start, end)`` covers the base; bases covered by no hit have no value (not 0), so the file
  stays small. Sums, not maxima: two overlapping hits of one motif are two instances.

Scores (the BED ``score`` column, 0-1000, what browsers shade by):

* ``similarity`` (default): ``round(1000 * clip(hit_similarity, 0, 1))`` -- the cosine
  similarity of the hit's contributions with the motif's CWM, comparable across runs;
* ``coefficient``: ``round(1000 * clip(hit_coefficient_global / max, 0, 1))`` where ``max`` is
  the largest ``hit_coefficient_global`` of the run's written hits -- relative strength within
  this run;
* ``qvalue`` (the default for a run with q-values, README "Calibrated hits"):
  ``min(1000, round(-100 * log10(hit_qvalue)))``, JASPAR's track convention (q = 0.01 -> 200,
  q = 0.05 -> 130).

Chromosome sizes (bigBed and bigWig files need them) come from, in order: ``chrom_sizes`` (a
UCSC ``chrom.sizes`` file: name TAB size), ``fasta`` (its ``.fai`` index, made by pyfaidx when
missing), or the regions store the run read (converters record the FASTA's sizes in the store's
attributes as ``chrom_sizes``). Written with pybigtools (no UCSC binaries). pybigtools records
3 fields in the bigBed header whatever the autoSql says; the header's ``fieldCount`` and
``definedFieldCount`` are set afterwards to the autoSql's 10 and BED's 6 (:func:`set_bed_field_counts`),
which readers such as IGV use to parse name and strand.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from .errors import InputError
from .storage.outputs import install, make_output_dir, output_file, staged_output
from .storage.urls import remote_input

#: File name of the hits bigBed inside the tracks directory.
BIGBED_FILE = "hits.bb"
#: Score formulas (the ``--score`` choices).
SCORES = ("similarity", "coefficient", "qvalue")
#: What the bigBed's name field and the bigWig file names show (the ``--label-by`` choices).
LABEL_BY = ("match", "pattern")

#: autoSql of the bigBed (BED6 + 4).
AUTOSQL = """table nemo_dask_hits
"Fi-NeMo motif hits called by nemo_dask (trimmed coordinates)"
(
string chrom;          "Chromosome"
uint chromStart;       "Start of the trimmed hit (0-based)"
uint chromEnd;         "End of the trimmed hit (exclusive)"
string name;           "Motif name"
uint score;            "0-1000: from the q-value, hit similarity or the scaled global coefficient"
char[1] strand;        "Strand of the motif match"
string motif_name;     "Motif name"
float hit_coefficient; "hit_coefficient_global: finemo's coefficient times the region's scale"
float hit_similarity;  "Cosine similarity of the hit's contributions with the CWM"
float hit_importance;  "Summed contribution over the hit (global scale)"
)
"""

#: BED's standard fields in the bigBed (BED6: chrom .. strand); the rest are autoSql's own.
BED_FIELDS = 6
#: Fields of the bigBed, as :data:`AUTOSQL` declares them (one ``type name;`` line each).
FIELD_COUNT = len(re.findall(r"^\s*\S+(?:\[\d+\])?\s+\w+;", AUTOSQL, flags=re.MULTILINE))

#: bbiFile header (UCSC bbiFile.h, little-endian): the magic at byte 0, then version,
#: zoomLevels, three 64-bit offsets, and at byte 32 fieldCount and definedFieldCount (uint16).
_BIGBED_MAGIC = 0x8789F2EB
_FIELD_COUNTS_AT = 32

_COLUMNS = ("chr", "start", "end", "motif_name", "strand", "hit_coefficient_global",
            "hit_similarity", "hit_importance")


class TracksResult(NamedTuple):
    """What :func:`write_tracks` wrote."""

    dest: str
    n_hits: int
    bigbed: str
    bigwigs: dict[str, str]  # motif name -> file


def bigwig_name(motif: str) -> str:
    """File name of a motif's bigWig (characters outside ``A-Za-z0-9._-`` become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", motif) + ".bw"


def scores(hits: pl.DataFrame, score: str) -> np.ndarray:
    """The BED score (int, 0-1000) of each hit, by the formula named ``score`` (module doc)."""
    if score == "similarity":
        x = hits["hit_similarity"].to_numpy().astype(np.float64)
    elif score == "qvalue":
        q = hits["hit_qvalue"].to_numpy().astype(np.float64)
        return np.minimum(1000, np.rint(-100 * np.log10(np.maximum(q, 1e-300)))).astype(np.int64)
    elif score == "coefficient":
        c = hits["hit_coefficient_global"].to_numpy().astype(np.float64)
        top = float(c.max()) if c.size else 0.0
        x = c / top if top > 0 else np.zeros_like(c)
    else:
        raise InputError(f"unknown score {score!r}: choose one of {', '.join(SCORES)}")
    return np.rint(1000 * np.clip(np.nan_to_num(x), 0.0, 1.0)).astype(np.int64)


def read_chrom_sizes(path: str | os.PathLike[str]) -> dict[str, int]:
    """A ``chrom.sizes`` (or FASTA ``.fai``) file: first column name, second column length."""
    sizes: dict[str, int] = {}
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip() or line.startswith("#"):
                    continue
                fields = line.rstrip("\n").split("\t")
                try:
                    sizes[fields[0]] = int(fields[1])
                except (IndexError, ValueError):
                    raise InputError(f"{path}, line {n}: expected 'chromosome<TAB>size', found "
                                     f"{line.strip()!r}; pass a UCSC chrom.sizes or .fai file"
                                     ) from None
    except OSError as err:
        raise InputError(f"chromosome sizes file {path}: {err.strerror or err}") from None
    return sizes


def fasta_sizes(fasta: str | os.PathLike[str]) -> dict[str, int]:
    """Chromosome lengths of a FASTA, from its ``.fai`` (built by pyfaidx when missing)."""
    fai = Path(os.fspath(fasta) + ".fai")
    if not fai.is_file():
        import pyfaidx

        try:
            pyfaidx.Faidx(os.fspath(fasta)).close()
        except (OSError, pyfaidx.FastaIndexingError) as err:
            raise InputError(f"FASTA {fasta}: cannot index it ({err}); pass --chrom-sizes"
                             ) from None
    return read_chrom_sizes(fai)


def store_chrom_sizes(out: str | os.PathLike[str]) -> dict[str, int] | None:
    """The chromosome sizes recorded in the regions store a run read (None when absent)."""
    from .dataset import read_parameters
    from .regions.store import open_store

    try:
        url = read_parameters(out).get("nemo_dask", {}).get("regions_url")
        if not url:
            return None
        sizes = open_store(url).attrs.get("chrom_sizes")
    except (OSError, ValueError, InputError, KeyError):
        return None
    return {str(k): int(v) for k, v in sizes.items()} if sizes else None


def write_tracks(out: str | os.PathLike[str], dest_dir: str | os.PathLike[str], *,
                 score: str | None = None, chrom_sizes: str | os.PathLike[str] | None = None,
                 fasta: str | os.PathLike[str] | None = None,
                 label_by: str = "match", max_qvalue: float | None = None) -> TracksResult:
    """Write ``hits.bb`` and one bigWig per motif for the run in ``out`` into ``dest_dir``.

    Parameters
    ----------
    out : path or URL
        A call-hits output directory (local path, ``file://`` or any fsspec URL).
    dest_dir : path or URL
        Where the tracks go (created; files of the same names are replaced, each atomically;
        on an object store each file is one PUT).
    score : {"similarity", "coefficient", "qvalue"}, optional
        The BED score formula (module docstring); default ``qvalue`` for a run with q-values,
        else ``similarity``.
    chrom_sizes, fasta : path, optional
        Where chromosome sizes come from (module docstring); default: the regions store.
    label_by : {"match", "pattern"}
        The bigBed ``name`` and the bigWig file names: the motif's label (its best TOMTOM
        match, see ``nemo-dask annotate``; the name when none) or finemo's motif name. The
        ``motif_name`` field is finemo's either way.
    max_qvalue : float, optional
        Only hits whose ``hit_qvalue`` is at most this (a run with q-values).

    Raises
    ------
    InputError
        ``out`` is not a run, its hits have no genomic coordinates, no chromosome sizes are
        known, or a hit lies outside its chromosome's size.
    """
    if score is not None and score not in SCORES:
        raise InputError(f"unknown score {score!r}: choose one of {', '.join(SCORES)}")
    if label_by not in LABEL_BY:
        raise InputError(f"unknown --label-by {label_by!r}: choose one of {', '.join(LABEL_BY)}")
    with remote_input(out, "call-hits output directory") as local_out:
        from .dataset import HITS_DIR, PARAMS_FILE, has_qvalues
        from .finemo.read import filter_qvalue, finemo_hits
        from .schema import QVALUE

        if not (Path(local_out) / HITS_DIR).is_dir() or not (Path(local_out) / PARAMS_FILE).is_file():
            raise InputError(f"{out} is not a call-hits output directory (no {HITS_DIR}/ or "
                             f"{PARAMS_FILE}); pass the -o directory of `nemo-dask call-hits`")
        calibrated = has_qvalues(local_out)
        score = score or ("qvalue" if calibrated else "similarity")
        if score == "qvalue" and not calibrated:
            raise InputError(f"{out}: --score qvalue needs a run with q-values (call-hits "
                             "without --null none, finished)")
        lf = filter_qvalue(finemo_hits(local_out, unique=True), max_qvalue, out)
        hits = lf.select(*_COLUMNS, *([QVALUE] if calibrated else [])).collect()
        labels = _labels(local_out, label_by)
        if hits.height and (hits["chr"] == "NA").any():
            raise InputError(f"{out}: the run has no genomic coordinates (chr NA): browser tracks "
                             "need them; rerun call-hits with -p peaks.narrowPeak")
        if chrom_sizes is not None:
            sizes = read_chrom_sizes(chrom_sizes)
        elif fasta is not None:
            sizes = fasta_sizes(fasta)
        else:
            sizes = store_chrom_sizes(local_out)
            if sizes is None:
                raise InputError(f"{out}: no chromosome sizes known (the regions store does not "
                                 "record them); pass --chrom-sizes genome.chrom.sizes or "
                                 "--fasta genome.fa")
    _check_within(hits, sizes, out)
    # Chromosomes in name order, starts ascending: what bigBed/bigWig indexes expect.
    hits = hits.sort("chr", "start", "end", "motif_name", "strand")
    used = {c: sizes[c] for c in hits["chr"].unique().to_list()}
    motifs = sorted(hits["motif_name"].unique().to_list())
    names = _bigwig_names(motifs, labels)
    with staged_output(dest_dir, "tracks directory") as (stage, final):
        _write_bigbed(hits, score, used or sizes, Path(stage) / BIGBED_FILE, labels)
        for m in motifs:
            _write_bigwig(hits.filter(pl.col("motif_name") == m), used,
                          Path(stage) / names[m])
        _install_all(stage, final, [BIGBED_FILE, *names.values()])
    sep = "" if os.fspath(dest_dir).endswith("/") else "/"
    d = os.fspath(dest_dir)
    return TracksResult(dest=d, n_hits=hits.height, bigbed=f"{d}{sep}{BIGBED_FILE}",
                        bigwigs={m: f"{d}{sep}{n}" for m, n in names.items()})


def _labels(out: Any, label_by: str) -> dict[str, str]:
    """motif_name -> what the tracks show for it."""
    from .dataset import read_motifs
    from .matching.labels import labels_by_name

    motifs = read_motifs(out)
    if label_by == "pattern":
        return {m: m for m in motifs["motif_name"].to_list()}
    return labels_by_name(motifs)


def _bigwig_names(motifs: list[str], labels: dict[str, str]) -> dict[str, str]:
    """motif_name -> bigWig file name: the motif's name as before, or its label as a portable
    file name (distinct labels that read alike get ``-2``, ``-3``, ...)."""
    from .matching.labels import file_stem

    names: dict[str, str] = {}
    for m in motifs:
        label = labels.get(m, m)
        base = bigwig_name(m)[:-3] if label == m else file_stem(label)
        name, k = f"{base}.bw", 1
        while name in names.values():
            k += 1
            name = f"{base}-{k}.bw"
        names[m] = name
    return names


def _install_all(stage: str, final: str | None, names: list[str]) -> None:
    # A local destination: each file renamed (or copied atomically) into place; a URL's files
    # are uploaded by staged_output when the block ends.
    if final is None:
        return
    real = make_output_dir(final, "tracks directory")
    for n in names:
        output_file(real / n, "track file")
    for n in names:
        install(Path(stage) / n, real / n, "track file")


def _check_within(hits: pl.DataFrame, sizes: dict[str, int], out: Any) -> None:
    missing = sorted(set(hits["chr"].unique().to_list()) - set(sizes))
    if missing:
        raise InputError(f"{out}: chromosome(s) {missing[:5]} of the hits are absent from the "
                         "chromosome sizes; pass the genome's --chrom-sizes or --fasta")
    ends = hits.group_by("chr").agg(pl.col("end").max(), pl.col("start").min())
    for chrom, end, start in ends.iter_rows():
        if start < 0 or end > sizes[chrom]:
            raise InputError(f"{out}: hits on {chrom} reach {start}-{end}, outside its size "
                             f"{sizes[chrom]}; pass the genome the run was made on")


def _write_bigbed(hits: pl.DataFrame, score: str, sizes: dict[str, int], path: Path,
                  labels: dict[str, str] | None = None) -> None:
    import pybigtools

    s = scores(hits, score)
    labels = labels or {}

    def entries() -> Iterator[tuple[str, int, int, str]]:
        cols = [hits[c].to_list() for c in _COLUMNS]
        for i, (chrom, start, end, motif, strand, coef, sim, imp) in enumerate(zip(*cols,
                                                                                   strict=True)):
            rest = "\t".join((labels.get(motif, motif), str(int(s[i])), strand, motif,
                              _num(coef), _num(sim), _num(imp)))
            yield chrom, int(start), int(end), rest

    bb = pybigtools.open(str(path), "w")
    bb.write(sizes, entries(), autosql=AUTOSQL)
    set_bed_field_counts(path, FIELD_COUNT, BED_FIELDS)


def set_bed_field_counts(path: str | os.PathLike[str], field_count: int, defined: int) -> None:
    """Write ``fieldCount`` and ``definedFieldCount`` into the header of the bigBed ``path``.

    Readers that decode records by these counts (IGV, Biopython's ``Bio.Align.bigbed``) would
    otherwise take a BED6+4 file for BED3 and drop names and strands. The header layout is
    UCSC's ``bbiFile.h`` (bytes 32-36: two little-endian uint16).

    Raises
    ------
    ValueError
        ``path`` does not start with the bigBed magic number (not a little-endian bigBed).
    """
    import struct

    with open(path, "r+b") as f:
        (magic,) = struct.unpack("<I", f.read(4))
        if magic != _BIGBED_MAGIC:
            raise ValueError(f"{path}: not a little-endian bigBed (magic {magic:#x})")
        f.seek(_FIELD_COUNTS_AT)
        f.write(struct.pack("<HH", field_count, defined))


def _num(x: float) -> str:
    # repr of the float32 value read back as a float: what a reader parses gives the same float32.
    return repr(float(np.float32(x)))


def coverage(starts: np.ndarray, ends: np.ndarray, values: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum of ``values`` over intervals ``[starts, ends)``, as runs of constant value.

    Returns
    -------
    (run_starts, run_ends, run_values) : ndarrays
        Maximal runs covered by at least one interval, with the summed value (float64) on each;
        uncovered gaps are left out.
    """
    if starts.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    pos = np.concatenate([starts, ends]).astype(np.int64)
    delta = np.concatenate([values, -values]).astype(np.float64)
    depth = np.concatenate([np.ones(starts.size, np.int64), -np.ones(ends.size, np.int64)])
    order = np.argsort(pos, kind="stable")
    pos, delta, depth = pos[order], delta[order], depth[order]
    bounds, idx = np.unique(pos, return_index=True)
    level = np.cumsum(np.add.reduceat(delta, idx))
    cover = np.cumsum(np.add.reduceat(depth, idx))
    keep = cover[:-1] > 0
    return bounds[:-1][keep], bounds[1:][keep], level[:-1][keep]


def _write_bigwig(hits: pl.DataFrame, sizes: dict[str, int], path: Path) -> None:
    import pybigtools

    def entries() -> Iterator[tuple[str, int, int, float]]:
        for (chrom,), part in hits.group_by("chr", maintain_order=True):
            a, b, v = coverage(part["start"].to_numpy(), part["end"].to_numpy(),
                               part["hit_coefficient_global"].to_numpy())
            for s, e, x in zip(a.tolist(), b.tolist(), v.tolist(), strict=True):
                yield str(chrom), s, e, x

    bw = pybigtools.open(str(path), "w")
    bw.write(sizes, entries())


__all__ = ("AUTOSQL", "BIGBED_FILE", "LABEL_BY", "SCORES", "TracksResult", "bigwig_name",
           "coverage", "fasta_sizes", "read_chrom_sizes", "scores", "set_bed_field_counts",
           "store_chrom_sizes", "write_tracks")
