"""Motif databases: MEME files (memelite's reader, checked) and JASPAR releases (pyjaspar)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nemo_dask.errors import InputError
from nemo_dask.matching.database import open_database, parse_jaspar_spec

D = Path(__file__).parents[1] / "data" / "matching"
HEADER = "MEME version 4\n\nALPHABET= ACGT\n\nstrands: + -\n\n"


def _meme(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "db.meme"
    path.write_text(header + body)
    return path


def test_meme_file_with_two_motifs() -> None:
    db = open_database(D / "two_motifs.meme")
    assert db.ids == ("MA0139.2", "MA0138.3") and db.names == ("CTCF", "REST")
    assert [p.shape for p in db.ppms] == [(4, 15), (4, 20)]
    for p in db.ppms:
        assert np.allclose(p.sum(axis=0), 1.0, atol=1e-12) and (p >= 0).all()


def test_counts_and_rounded_rows_become_probabilities(tmp_path) -> None:
    db = open_database(_meme(tmp_path, "MOTIF m1\nletter-probability matrix: alength= 4 w= 2\n"
                             "10 0 0 10\n0 5 15 0\n"))
    assert db.ids == ("m1",) and db.names == ("m1",)  # no second field: the id names it
    assert np.allclose(db.ppms[0], [[0.5, 0], [0, 0.25], [0, 0.75], [0.5, 0]])


@pytest.mark.parametrize("body,header,expected", [
    ("", HEADER, "holds no motifs"),
    ("MOTIF a\nletter-probability matrix: alength= 4 w= 3\n0.25 0.25 0.25 0.25\n",
     HEADER, "no complete letter-probability matrix"),
    ("MOTIF a\nlog-odds matrix: alength= 4 w= 1\n1 0 0 0\n", HEADER, "no complete"),
    ("MOTIF a\nletter-probability matrix: alength= 4 w= 1\n0.5 0.5 0\n", HEADER,
     "not a readable MEME motif file"),
    ("MOTIF a\nletter-probability matrix: alength= 4 w= 1\n1 0 0 0\n"
     "MOTIF a\nletter-probability matrix: alength= 4 w= 1\n0 1 0 0\n", HEADER, "more than once"),
    ("MOTIF a\nletter-probability matrix: alength= 4 w= 1\n-1 1 0 1\n", HEADER, "negative"),
    ("MOTIF a\nletter-probability matrix: alength= 4 w= 1\n0 0 0 0\n", HEADER, "all zero"),
    ("MOTIF a\nletter-probability matrix: alength= 4 w= 1\n1 0 0 0\n",
     "MEME version 4\n\nALPHABET= ACGU\n\n", "expected DNA"),
])
def test_unusable_meme_files_are_one_line(tmp_path, body, header, expected) -> None:
    with pytest.raises(InputError, match=expected) as err:
        open_database(_meme(tmp_path, body, header))
    assert "\n" not in str(err.value) and "db.meme" in str(err.value)


def test_empty_fixture_file_and_missing_paths(tmp_path) -> None:
    with pytest.raises(InputError, match="holds no motifs"):
        open_database(D / "empty.meme")
    with pytest.raises(InputError, match="does not exist"):
        open_database(tmp_path / "absent.meme")
    with pytest.raises(InputError, match="is a directory"):
        open_database(tmp_path)
    binary = tmp_path / "x.meme"
    binary.write_bytes(b"\xff\xfe\x00MOTIF")
    with pytest.raises(InputError, match="cannot be read"):
        open_database(binary)


def test_jaspar_spec_defaults_and_fields() -> None:
    assert parse_jaspar_spec("jaspar") == ("JASPAR2024", "CORE", "vertebrates")
    assert parse_jaspar_spec("jaspar:2026") == ("JASPAR2026", "CORE", "vertebrates")
    assert parse_jaspar_spec("jaspar:JASPAR2022:unvalidated") == ("JASPAR2022", "UNVALIDATED",
                                                                  "vertebrates")
    assert parse_jaspar_spec("jaspar::CORE:all") == ("JASPAR2024", "CORE", None)
    with pytest.raises(InputError, match="expected jaspar"):
        parse_jaspar_spec("jaspar:2024:CORE:plants:x")


def test_jaspar_release_is_read_without_network() -> None:
    db = open_database("jaspar")
    assert db.description == "JASPAR2024 CORE vertebrates" and len(db) == 879
    planted = {"MA0139.2", "MA0035.5", "MA0080.7", "MA0466.4", "MA0099.4", "MA0138.3"}
    assert planted <= set(db.ids)
    assert all(np.allclose(p.sum(axis=0), 1.0) for p in db.ppms)
    plants = open_database("jaspar:2024:CORE:plants")
    assert len(plants) > 100 and not set(plants.ids) & set(db.ids)


@pytest.mark.parametrize("spec,expected", [
    ("jaspar:2019", "not among those pyjaspar"),
    ("jaspar:2024:ARCHIVE", "no collection 'ARCHIVE'"),
    ("jaspar:2024:CORE:fish", "holds no motifs"),
])
def test_jaspar_refusals(spec, expected) -> None:
    with pytest.raises(InputError, match=expected) as err:
        open_database(spec)
    assert "\n" not in str(err.value)
