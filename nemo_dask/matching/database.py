"""Motif databases to match against: a JASPAR release shipped by pyjaspar, or a MEME file.

``jaspar[:RELEASE[:COLLECTION[:TAX_GROUP]]]`` reads pyjaspar's SQLite copy of a JASPAR release
(no network); anything else is a path to a MEME-format motif file (``letter-probability
matrix`` entries, as MEME, STREME, JASPAR's and HOCOMOCO's downloads write them), read with
memelite.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import config
from ..errors import InputError

#: The package and extra that the annotation needs.
EXTRA_HINT = "pip install 'nemo_dask[names]'"


@dataclass(frozen=True)
class MotifDatabase:
    """Target motifs of a TOMTOM search.

    Attributes
    ----------
    source : str
        The database as the user named it (``jaspar:JASPAR2024:CORE:vertebrates`` or a path).
    description : str
        For messages and the table's metadata, e.g. ``JASPAR2024 CORE vertebrates``.
    ids, names : tuple of str
        Each motif's identifier (JASPAR matrix ID, the MEME ``MOTIF`` line's first field) and
        name (the TF name, the ``MOTIF`` line's second field, or the identifier when absent).
    ppms : tuple of ndarray, each shape=(4, w), float64
        Position probability matrices (A, C, G, T rows); every column sums to 1.
    """

    source: str
    description: str
    ids: tuple[str, ...]
    names: tuple[str, ...]
    ppms: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.ids)


def open_database(spec: str | os.PathLike[str]) -> MotifDatabase:
    """The motif database named by ``spec``.

    Parameters
    ----------
    spec : str or path
        ``jaspar``, ``jaspar:RELEASE``, ``jaspar:RELEASE:COLLECTION`` or
        ``jaspar:RELEASE:COLLECTION:TAX_GROUP`` (RELEASE ``2024`` or ``JASPAR2024``; COLLECTION
        ``CORE`` or ``UNVALIDATED``; TAX_GROUP e.g. ``vertebrates``, ``plants``, or ``all``;
        an empty field takes the default, dask config ``nemo_dask.annotate.jaspar-*``), or the
        path of a MEME motif file.

    Raises
    ------
    InputError
        The database cannot be read, holds no motifs, or a release/collection does not exist
        (one line naming it and the fix); memelite or pyjaspar is not installed.
    """
    text = os.fspath(spec)
    if text.lower() == "jaspar" or text.lower().startswith("jaspar:"):
        return _jaspar(text)
    return read_meme_database(text)


# --- JASPAR through pyjaspar ---------------------------------------------------------------


def parse_jaspar_spec(spec: str) -> tuple[str, str, str | None]:
    """(release, collection, tax group or None for all) of a ``jaspar:...`` spec."""
    fields = spec.split(":")[1:]
    if len(fields) > 3:
        raise InputError(f"motif database {spec!r}: expected jaspar[:RELEASE[:COLLECTION"
                         "[:TAX_GROUP]]], e.g. jaspar:2024:CORE:vertebrates")
    fields += [""] * (3 - len(fields))
    release = fields[0] or str(config.get("annotate.jaspar-release"))
    if re.fullmatch(r"\d{4}", release):
        release = f"JASPAR{release}"
    release = release.upper()
    collection = (fields[1] or str(config.get("annotate.jaspar-collection"))).upper()
    tax = fields[2] or str(config.get("annotate.jaspar-tax-group"))
    return release, collection, None if tax.lower() == "all" else tax.lower()


def _jaspar(spec: str) -> MotifDatabase:
    release, collection, tax = parse_jaspar_spec(spec)
    try:
        import pyjaspar
    except ImportError:
        raise InputError(f"motif database {spec!r} needs pyjaspar (JASPAR's releases, no "
                         f"network): {EXTRA_HINT}") from None
    releases = sorted(pyjaspar.jaspar_releases)
    if release not in pyjaspar.jaspar_releases:
        raise InputError(f"motif database {spec!r}: JASPAR release {release} is not among those "
                         f"pyjaspar {pyjaspar.__version__} ships ({', '.join(releases)})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Biopython's notes on motifs without species etc.
        db = pyjaspar.jaspardb(release=release)
        cur = db.conn.cursor()
        cur.execute("SELECT DISTINCT COLLECTION FROM MATRIX")
        collections = sorted(r[0] for r in cur.fetchall())
        if collection not in collections:
            raise InputError(f"motif database {spec!r}: {release} has no collection "
                             f"{collection!r} (it has {', '.join(collections)})")
        # The latest version of each matrix, as JASPAR's own downloads list them.
        motifs = db.fetch_motifs(collection=collection, tax_group=tax)
    where = f"{release} {collection}" + (f" {tax}" if tax else "")
    if not motifs:
        raise InputError(f"motif database {spec!r}: {where} holds no motifs (tax group "
                         f"{tax!r}? e.g. vertebrates, plants, insects, fungi, or all)")
    ids, names, ppms = [], [], []
    for m in motifs:
        counts = np.array([m.counts[b] for b in "ACGT"], dtype=np.float64)
        ids.append(str(m.matrix_id))
        names.append(str(m.name))
        ppms.append(_probabilities(counts, f"{where} {m.matrix_id}"))
    return MotifDatabase(source=f"jaspar:{release}:{collection}:{tax or 'all'}",
                         description=where, ids=tuple(ids), names=tuple(names),
                         ppms=tuple(ppms))


# --- MEME files ----------------------------------------------------------------------------


def read_meme_database(path: str | os.PathLike[str]) -> MotifDatabase:
    """The motifs of a MEME-format file (memelite's reader), checked.

    Every ``MOTIF`` entry must have a ``letter-probability matrix`` of 4 columns (A, C, G, T)
    with non-negative numbers; each row is rescaled to sum to 1 (files round them, and some
    hold counts). Duplicate identifiers, a non-DNA ``ALPHABET`` and entries cut short are
    refused, since they would silently drop motifs.
    """
    p = Path(path)
    if not p.is_file():
        what = "is a directory" if p.is_dir() else "does not exist"
        raise InputError(f"motif database {path} {what}; pass a MEME motif file, or jaspar "
                         "(JASPAR's CORE vertebrates) / jaspar:RELEASE[:COLLECTION]")
    try:
        from memelite.io import read_meme
    except ImportError:
        raise InputError(f"matching motifs needs memelite (TOMTOM): {EXTRA_HINT}") from None
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"motif database {path}: cannot be read as a MEME text file "
                         f"({err}); pass a MEME motif file") from None
    alphabet = re.search(r"^ALPHABET\s*=\s*(\S+)", text, flags=re.MULTILINE)
    if alphabet and alphabet.group(1).upper() != "ACGT":
        raise InputError(f"motif database {path}: ALPHABET= {alphabet.group(1)}, expected DNA "
                         "(ACGT) motifs")
    entries = [" ".join(line[5:].split()) for line in text.splitlines()
               if line.startswith("MOTIF")]
    try:
        motifs = read_meme(str(p))
    except (ValueError, IndexError, AttributeError) as err:
        raise InputError(f"motif database {path}: not a readable MEME motif file ({err}); "
                         "each MOTIF needs a 'letter-probability matrix: alength= 4 w= W' line "
                         "and W rows of 4 numbers") from None
    if not entries:
        raise InputError(f"motif database {path} holds no motifs (no MOTIF entry with a "
                         "letter-probability matrix); pass a MEME motif file")
    duplicates = sorted({e for e in entries if entries.count(e) > 1})
    if duplicates:
        raise InputError(f"motif database {path}: MOTIF {duplicates[0]!r} appears more than "
                         "once; identifiers must be unique")
    missing = [e for e in entries if e not in motifs]
    if missing:
        raise InputError(f"motif database {path}: MOTIF {missing[0]!r} has no complete "
                         "letter-probability matrix (missing, or fewer rows than its w=)")
    ids, names, ppms = [], [], []
    for key, matrix in motifs.items():
        fields = key.split(" ", 1)
        ids.append(fields[0])
        names.append(fields[1] if len(fields) > 1 else fields[0])
        ppms.append(_probabilities(np.asarray(matrix, dtype=np.float64), f"{path} {key}"))
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[0]
        raise InputError(f"motif database {path}: identifier {dup!r} names several motifs; "
                         "identifiers must be unique")
    return MotifDatabase(source=str(path), description=f"{p.name} ({len(ids)} motifs)",
                         ids=tuple(ids), names=tuple(names), ppms=tuple(ppms))


def _probabilities(matrix: np.ndarray, where: str) -> np.ndarray:
    """A (4, w) matrix of counts or rounded probabilities as probabilities (columns sum to 1)."""
    if matrix.ndim != 2 or matrix.shape[0] != 4 or matrix.shape[1] == 0:
        raise InputError(f"motif {where}: matrix of shape {matrix.shape}, expected 4 rows "
                         "(A, C, G, T) by at least one position")
    if not np.isfinite(matrix).all() or (matrix < 0).any():
        raise InputError(f"motif {where}: negative or non-finite values; expected "
                         "probabilities or counts")
    totals = matrix.sum(axis=0)
    if (totals <= 0).any():
        raise InputError(f"motif {where}: position {int(np.argmin(totals)) + 1} is all zero")
    return np.ascontiguousarray(matrix / totals)
