"""The motif table with TOMTOM matches and labels: ``call-hits --annotate`` and
``nemo-dask annotate`` (an existing run; only ``OUT/motifs.parquet`` is rewritten).

Both paths run :func:`annotated_table` on the same inputs (the run's motif table, its matrices
and the tfmodisco-lite H5), so annotating after the fact gives the table ``--annotate`` gives.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .. import config
from ..dataset import read_cwms, read_motifs, read_parameters, scan_hits, write_motifs
from ..errors import InputError
from ..motifs import _open_h5
from ..schema import MOTIFS_SCHEMA
from ..storage.urls import is_url, location
from .database import MotifDatabase, open_database
from .labels import LABEL, label_of
from .query import PPM_METHODS, check_background, pattern_ppms
from .tomtom import tomtom_matches


@dataclass(frozen=True)
class MatchOptions:
    """How motifs are matched and labelled; ``None`` fields take dask config
    ``nemo_dask.annotate.*`` (:meth:`resolved`).

    Attributes
    ----------
    top_k : int
        Matches kept per motif, best first (default 3).
    qvalue : float
        A motif is labelled with its best match when that match's q-value is at most this
        (default 0.05).
    ppm : {"hcwm", "sequence"}
        The pattern PPM compared (:mod:`nemo_dask.matching.query`; default ``hcwm``).
    trim_threshold : float
        The query window (default 0.2 of the largest position's total |CWM|).
    background : tuple of 4 floats
        A, C, G, T frequencies (default uniform).
    """

    top_k: int | None = None
    qvalue: float | None = None
    ppm: str | None = None
    trim_threshold: float | None = None
    background: tuple[float, ...] | None = field(default=None)

    def resolved(self) -> MatchOptions:
        """Every field set (config defaults for None) and checked."""
        get = config.get
        opts = MatchOptions(
            top_k=int(self.top_k if self.top_k is not None else get("annotate.top-k")),
            qvalue=float(self.qvalue if self.qvalue is not None else get("annotate.qvalue")),
            ppm=str(self.ppm if self.ppm is not None else get("annotate.ppm")),
            trim_threshold=float(self.trim_threshold if self.trim_threshold is not None
                                 else get("annotate.trim-threshold")),
            background=tuple(float(x) for x in check_background(
                self.background if self.background is not None
                else get("annotate.background"))),
        )
        if opts.top_k < 1:  # type: ignore[operator]
            raise InputError(f"top-k must be at least 1, got {opts.top_k}")
        if not 0 <= opts.qvalue <= 1:  # type: ignore[operator]
            raise InputError(f"q-value threshold {opts.qvalue} must lie in [0, 1]")
        if opts.ppm not in PPM_METHODS:
            raise InputError(f"PPM conversion {opts.ppm!r} is not one of {', '.join(PPM_METHODS)}")
        if not 0 <= opts.trim_threshold <= 1:  # type: ignore[operator]
            raise InputError(f"match trim threshold {opts.trim_threshold} must lie in [0, 1]")
        return opts


@dataclass
class AnnotateResult:
    """What :func:`annotate` returns: the run, its annotated motif table and hits with labels."""

    out: Any  # a Path, or a UPath for an fsspec URL
    motifs: pl.DataFrame
    database: str
    hits: pl.LazyFrame


def annotated_table(table: pl.DataFrame, cwms: np.ndarray, h5_path: str | os.PathLike[str],
                    database: MotifDatabase,
                    options: MatchOptions | None = None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The motif table with ``motif_label`` and the best k matches of every motif.

    Parameters
    ----------
    table : polars.DataFrame
        A run's motif table (schema.MOTIFS_SCHEMA; earlier match columns are replaced).
    cwms : ndarray, shape=(M, 4, W)
        The run's motif matrices (``motif_cwms.npy``): the H5 must give these.
    h5_path : path
        The tfmodisco-lite H5 the motifs come from.
    database : MotifDatabase
        The targets.
    options : MatchOptions, optional
        Defaults from dask config.

    Returns
    -------
    (polars.DataFrame, dict)
        The table (schema.ANNOTATED_MOTIFS_SCHEMA) and how it was made (stored as the Parquet
        file's metadata by :func:`nemo_dask.dataset.write_motifs`).

    Raises
    ------
    InputError
        The H5 is not the one the run's motifs come from, or lacks what the match needs.
    """
    opts = (options or MatchOptions()).resolved()
    core = table.select(MOTIFS_SCHEMA.names)
    check_h5_gives_motifs(h5_path, core, cwms)
    patterns = list(dict.fromkeys(core["motif_name_orig"].to_list()))
    queries = pattern_ppms(h5_path, patterns, opts.ppm, opts.trim_threshold,  # type: ignore[arg-type]
                           np.asarray(opts.background))
    found = dict(zip(patterns, tomtom_matches([queries[p].ppm for p in patterns], database,
                                              opts.top_k), strict=True))  # type: ignore[arg-type]
    flip = {"+": "-", "-": "+"}
    columns: dict[str, list[Any]] = {c: [] for c in (LABEL, "match_id", "match_name",
                                                     "match_pvalue", "match_qvalue",
                                                     "match_orientation")}
    for name, orig, strand in core.select("motif_name", "motif_name_orig", "strand").iter_rows():
        matches = found[orig]
        columns["match_id"].append([m.id for m in matches])
        columns["match_name"].append([m.name for m in matches])
        columns["match_pvalue"].append([m.pvalue for m in matches])
        columns["match_qvalue"].append([m.qvalue for m in matches])
        # The query is the pattern's forward matrix; a '-' row is its reverse complement.
        columns["match_orientation"].append(
            [m.orientation if strand == "+" else flip[m.orientation] for m in matches])
        columns[LABEL].append(label_of(name, orig, columns["match_name"][-1],
                                       columns["match_qvalue"][-1], opts.qvalue))  # type: ignore[arg-type]
    annotated = core.with_columns(
        pl.Series(LABEL, columns[LABEL], dtype=pl.String),
        *(pl.Series(c, columns[c], dtype=pl.List(pl.String))
          for c in ("match_id", "match_name")),
        *(pl.Series(c, columns[c], dtype=pl.List(pl.Float64))
          for c in ("match_pvalue", "match_qvalue")),
        pl.Series("match_orientation", columns["match_orientation"], dtype=pl.List(pl.String)),
    )
    provenance = {
        "database": database.source, "database_description": database.description,
        "database_motifs": len(database), **asdict(opts),
        "windows": {p: [queries[p].start, queries[p].end] for p in patterns},
        "method": "TOMTOM (memelite, complete score, Euclidean column distance); q-value: "
                  "Benjamini-Hochberg over the query's p-values against every database motif",
        "memelite": _version("memelite"),
    }
    return annotated, provenance


def check_h5_gives_motifs(h5_path: str | os.PathLike[str], table: pl.DataFrame,
                          cwms: np.ndarray) -> None:
    """Refuse an H5 whose patterns are not the run's motifs (another H5 of the same names).

    Each forward motif's stored matrix must equal the pattern's ``contrib_scores`` or
    ``hypothetical_contribs`` (by mode) normalised as :func:`nemo_dask.motifs.load_motifs`
    does, bit for bit.
    """
    with _open_h5(Path(h5_path)) as h5:
        for motif_id, orig in table.filter(pl.col("strand") == "+").select(
                "motif_id", "motif_name_orig").iter_rows():
            group, _, pattern = orig.partition(".")
            node = h5[group][pattern] if group in h5 and pattern in h5[group] else None
            stored = cwms[motif_id]
            same = node is not None and any(
                key in node and _same(_normalised16(node[key][:]), stored)
                for key in ("contrib_scores", "hypothetical_contribs"))
            if not same:
                raise InputError(f"{h5_path}: pattern {orig} is not the motif this run was "
                                 "called with (missing, or another matrix); pass the run's "
                                 "tfmodisco-lite H5 with -m/--modisco-h5")


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _normalised16(raw: Any) -> np.ndarray:
    m = np.asarray(raw, dtype=np.float64)
    norm = float(np.sqrt((m**2).sum()))
    return (m.T / norm if norm else m.T).astype(np.float16)


def annotate(out: str | os.PathLike[str], database: str | os.PathLike[str] = "jaspar", *,
             modisco_h5: str | os.PathLike[str] | None = None,
             options: MatchOptions | None = None) -> AnnotateResult:
    """Add TOMTOM matches and labels to the motif table of an existing run.

    Rewrites ``OUT/motifs.parquet`` only (atomically), keeping finemo's columns and the run's
    identity: a resume, export or report of the run works as before, now with labels.

    Parameters
    ----------
    out : path or URL
        A call-hits output directory.
    database : str or path
        ``jaspar[:RELEASE[:COLLECTION[:TAX_GROUP]]]`` or a MEME motif file
        (:func:`nemo_dask.matching.database.open_database`).
    modisco_h5 : path, optional
        The run's tfmodisco-lite H5; default: the one its parameters.json records.
    options : MatchOptions, optional
        k, q-value threshold, PPM conversion, window and background (dask config defaults).

    Raises
    ------
    InputError
        ``out`` is not a run; the database cannot be read or holds no motifs; the H5 is
        missing or not the run's (one line each, naming the file and the fix).
    """
    db = open_database(database)  # a bad database stops before anything else is read
    root = location(out)
    try:
        table = read_motifs(root)
        cwms = read_cwms(root)
    except (OSError, FileNotFoundError):
        raise InputError(f"{out} is not a call-hits output directory (no readable motifs.parquet "
                         "and motif_cwms.npy); pass the -o directory of `nemo-dask call-hits`"
                         ) from None
    h5 = modisco_h5
    if h5 is None:
        try:
            h5 = read_parameters(root).get("modisco_h5_path")
        except (OSError, ValueError):
            h5 = None
        if not h5 or is_url(str(h5)) or not Path(h5).is_file():
            raise InputError(f"{out}: the tfmodisco-lite H5 its parameters.json records "
                             f"({h5 or 'none'}) is not a local file; pass it with "
                             "-m/--modisco-h5")
    annotated, provenance = annotated_table(table, cwms, h5, db, options)
    write_motifs(root, annotated, provenance)
    return AnnotateResult(out=root, motifs=annotated, database=db.description,
                          hits=scan_hits(root, labels=True))


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


__all__ = ("AnnotateResult", "MatchOptions", "annotate", "annotated_table")
