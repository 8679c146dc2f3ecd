"""Motifs from a tfmodisco-lite H5: matrices, trim masks, lambdas and the motif table.

Follows finemo 0.41 exactly: patterns of ``pos_patterns`` then ``neg_patterns``, each group
sorted by the number after the last ``_`` (or ``#``) of the pattern name; every pattern gives a
forward motif (id 2k) and its reverse complement (id 2k+1); matrices are L2-normalised and then
rounded to float16, as finemo stores them before fitting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the blosc filter that ENCODE's H5 files use)
import numpy as np
import polars as pl

from .errors import InputError
from .params import MotifParams
from .schema import MOTIFS_SCHEMA, polars_schema

PATTERN_GROUPS = ("pos_patterns", "neg_patterns")


@dataclass(frozen=True)
class Motifs:
    """Everything the solver needs to know about the motifs, and the table written beside hits.

    Attributes
    ----------
    cwms : ndarray, shape=(M, 4, W), float16
        Untrimmed, normalised motif matrices (forward and reverse interleaved).
    trim_masks : ndarray, shape=(M, W), int8
        1 inside each motif's trimmed window, 0 outside.
    lambdas : ndarray, shape=(M,), float64
        L1 penalty of each motif.
    table : polars.DataFrame
        motif_id, motif_name, motif_name_orig, strand, motif_start, motif_end, motif_scale, lambda.
    """

    cwms: np.ndarray
    trim_masks: np.ndarray
    lambdas: np.ndarray
    table: pl.DataFrame

    def __post_init__(self) -> None:
        # A motif trimmed to width 0 is all zero once finemo multiplies it by its mask: it can
        # never be called, and when every motif is, finemo returns no hits at all. Neither
        # is what a user asks for, so such a set is refused here, wherever it was made.
        empty = np.flatnonzero(~np.asarray(self.trim_masks).astype(bool).any(axis=1))
        if empty.size:
            names = self.table.get_column("motif_name").to_list() \
                if "motif_name" in self.table.columns else [str(i) for i in range(len(self.cwms))]
            strands = self.table.get_column("strand").to_list() \
                if "strand" in self.table.columns else [""] * len(names)
            listed = ", ".join(f"{names[i]}{strands[i]}" for i in empty[:8])
            more = f" and {empty.size - 8} more" if empty.size > 8 else ""
            which = "every motif is" if empty.size == len(self.trim_masks) else \
                f"{empty.size} of {len(self.trim_masks)} motifs are"
            raise InputError(f"{which} trimmed to width 0 ({listed}{more}): nothing of them can "
                             "be fitted; widen their trim windows (-t/--cwm-trim-threshold, "
                             "-T/--cwm-trim-thresholds, -R/--cwm-trim-coords) or leave them "
                             "out (-I/--motifs-include)")

    @property
    def n_motifs(self) -> int:
        """M, the number of motifs (both strands counted)."""
        return int(self.cwms.shape[0])

    @property
    def width(self) -> int:
        """W, the untrimmed motif width."""
        return int(self.cwms.shape[2])


def pattern_sort_key(pattern_name: str) -> tuple[int, int] | tuple[int, str]:
    """finemo's pattern order: by the integer after the last ``_`` or ``#``, unnumbered last."""
    for sep in ("_", "#"):
        try:
            return (0, int(pattern_name.split(sep)[-1]))
        except ValueError:
            continue
    return (1, pattern_name)


def trim_window(cwm: np.ndarray, threshold: float) -> tuple[int, int]:
    """[start, end) of the positions between the first and last whose total |CWM| reaches
    ``threshold`` times the maximum. ``cwm`` has shape (4, W)."""
    score = np.abs(cwm).sum(axis=0)
    keep = np.flatnonzero(score >= score.max() * threshold)
    return int(keep[0]), int(keep[-1]) + 1


def load_motifs(h5_path: str | os.PathLike[str], params: MotifParams | None = None) -> Motifs:
    """Read and prepare the motifs of a tfmodisco-lite H5 file.

    Parameters
    ----------
    h5_path
        The ``modisco motifs`` output.
    params
        Mode, trimming, include list, renaming and lambdas; finemo's defaults when omitted.
    """
    params = params or MotifParams()
    path = Path(h5_path)
    names_map = dict(params.motif_names or {})
    if len(set(names_map.values())) != len(names_map):
        dup = sorted({v for v in names_map.values() if list(names_map.values()).count(v) > 1})
        raise InputError(f"motif name map gives several patterns the same new name(s) {dup}: "
                         "new names must be unique")
    lambdas_map = params.motif_lambdas or {}
    thresholds = params.trim_thresholds or {}
    coords = params.trim_coords or {}
    include = set(params.motifs_include) if params.motifs_include is not None else None

    rows: list[dict] = []
    matrices: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    seen: list[str] = []
    with _open_h5(path) as h5:
        groups = [g for g in PATTERN_GROUPS if g in h5]
        if not groups or not any(len(h5[g]) for g in groups):
            raise InputError(f"{path}: no patterns found (expected groups "
                             f"{' and/or '.join(PATTERN_GROUPS)} with pattern_* subgroups); "
                             "is this a tfmodisco-lite `modisco motifs` output?")
        for group in groups:
            for pattern_name in sorted(h5[group], key=pattern_sort_key):
                orig = f"{group}.{pattern_name}"
                seen.append(orig)
                if include is not None and orig not in include:
                    continue
                pattern = h5[group][pattern_name]
                name = names_map.get(orig, orig)
                cwm_fwd, cwm_scale = _normalised(path, pattern, orig, "contrib_scores")
                if name in coords:
                    start, end = _check_coords(name, coords[name], cwm_fwd.shape[1])
                else:
                    start, end = trim_window(cwm_fwd, thresholds.get(name, params.trim_threshold))
                if params.motif_type == "cwm":
                    motif_fwd, scale = cwm_fwd, cwm_scale
                else:
                    motif_fwd, scale = _normalised(path, pattern, orig, "hypothetical_contribs")
                width = motif_fwd.shape[1]
                strands = [("+", motif_fwd, start, end)]
                if params.include_rc:
                    strands.append(("-", motif_fwd[::-1, ::-1], width - end, width - start))
                for strand, matrix, s, e in strands:
                    mask = np.zeros(width, dtype=np.int8)
                    mask[s:e] = 1
                    matrices.append(matrix)
                    masks.append(mask)
                    rows.append({
                        "motif_id": len(rows), "motif_name": name, "motif_name_orig": orig,
                        "strand": strand, "motif_start": s, "motif_end": e,
                        "motif_scale": scale, "lambda": lambdas_map.get(orig, params.lambda_default),
                    })
    if include is not None:
        unknown = sorted(include - set(seen))
        if unknown:
            raise InputError(f"motif include list names patterns absent from {path}: {unknown}; "
                             f"available: {seen}")
    widths = {m.shape[1] for m in matrices}
    if len(widths) > 1:
        raise InputError(f"{path}: patterns have different widths {sorted(widths)}; finemo and "
                         "nemo_dask need one untrimmed width for all motifs")
    table = pl.DataFrame(rows, schema=polars_schema(MOTIFS_SCHEMA))
    return Motifs(
        cwms=np.stack(matrices).astype(np.float16),
        trim_masks=np.stack(masks),
        lambdas=table.get_column("lambda").to_numpy().astype(np.float64),
        table=table,
    )


def _open_h5(path: Path) -> h5py.File:
    if not path.is_file():
        raise InputError(f"motif file {path} does not exist; pass the tfmodisco-lite H5 "
                         "(`modisco motifs -o ...`) with -m")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"motif file {path} is not a readable HDF5 file ({err}); is it "
                         "truncated or of another format?") from None


def _normalised(path: Path, pattern: h5py.Group, name: str, field: str) -> tuple[np.ndarray, float]:
    """The pattern's ``field`` matrix as (4, W), divided by its L2 norm, and that norm."""
    if field not in pattern:
        raise InputError(f"{path}: pattern {name} lacks the dataset {field!r} (needed by this "
                         "mode); re-run tfmodisco-lite or choose another mode/include list")
    try:
        raw = np.asarray(pattern[field][:], dtype=np.float64)
    except OSError as err:
        raise InputError(f"{path}: cannot read {name}/{field} ({err}); the file may be "
                         "truncated, or hdf5plugin is missing for its compression") from None
    if raw.ndim != 2 or raw.shape[1] != 4:
        raise InputError(f"{path}: {name}/{field} has shape {raw.shape}, expected (width, 4)")
    norm = float(np.sqrt((raw**2).sum()))
    if not np.isfinite(norm) or norm == 0:
        raise InputError(f"{path}: {name}/{field} is all zero or not finite; exclude this "
                         "pattern with an include list")
    return raw.T / norm, norm


def _check_coords(name: str, coords: tuple[int, ...], width: int) -> tuple[int, int]:
    if len(coords) != 2 or not (0 <= coords[0] < coords[1] <= width):
        raise InputError(f"trim coordinates {tuple(coords)} of motif {name!r} must be two "
                         f"integers start < end within [0, {width}]")
    return int(coords[0]), int(coords[1])


# --- finemo's plain-text option files ------------------------------------------------------


def read_names_list(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """One name per line (first tab-separated column): finemo's ``-I`` include list."""
    return tuple(line.split("\t")[0] for line in _lines(path))


def read_mapping(path: str | os.PathLike[str], kind: type = str) -> dict:
    """Two tab-separated columns, key and value (``-N`` names, ``-L`` lambdas, ``-T`` thresholds)."""
    out = {}
    for n, line in enumerate(_lines(path), start=1):
        parts = line.split("\t")
        if len(parts) != 2:
            raise InputError(f"{path} line {n}: expected 2 tab-separated columns, found "
                             f"{len(parts)} in {line!r}")
        out[parts[0]] = _convert(path, n, parts[1], kind)
    return out


def read_trim_coords(path: str | os.PathLike[str]) -> dict[str, tuple[int, int]]:
    """Motif name, start and end, tab-separated: finemo's ``-R`` trim coordinates."""
    out = {}
    for n, line in enumerate(_lines(path), start=1):
        parts = line.split("\t")
        if len(parts) != 3:
            raise InputError(f"{path} line {n}: expected name, start, end (tab-separated), "
                             f"found {line!r}")
        out[parts[0]] = (_convert(path, n, parts[1], int), _convert(path, n, parts[2], int))
    return out


def _lines(path: str | os.PathLike[str]) -> list[str]:
    try:
        with open(path) as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from None


def _convert(path: str | os.PathLike[str], n: int, text: str, kind: type):
    try:
        return kind(text)
    except ValueError:
        raise InputError(f"{path} line {n}: {text!r} is not a valid {kind.__name__}") from None


def motifs_digest(motifs: Motifs) -> str:
    """SHA-256 of everything the solver and the annotation use of ``motifs``: the matrices,
    trim masks and lambdas (with their dtypes and shapes) and the motif table.

    A run's identity holds it (a resume with other motifs is refused), and each task checks the
    motifs it reads from ``OUT`` against it.
    """
    import hashlib

    h = hashlib.sha256()
    for array in (motifs.cwms, motifs.trim_masks, motifs.lambdas):
        h.update(str((array.dtype.str, array.shape)).encode())
        h.update(np.ascontiguousarray(array).tobytes())
    h.update(motifs.table.write_csv().encode())
    return h.hexdigest()
