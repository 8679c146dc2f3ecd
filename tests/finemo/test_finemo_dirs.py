"""finemo's outputs, plain or compressed, wherever a verb takes them (issue 29, items 10-11):
collapse-hits, intersect-hits, compare-hits, export -H and report -H read one finemo directory
(or TSV) the same whether its files are plain, gzip, bgzip-named, bzip2 or xz."""

from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
from pathlib import Path

import polars as pl
import pytest

from nemo_dask.cli import main
from nemo_dask.finemo.directory import is_finemo_dir

DATA = Path(__file__).parents[1] / "data"
PP, POST = DATA / "finemo_out", DATA / "finemo_post"

_PACK = {".gz": gzip.compress, ".bgz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}


def _packed_copy(dest: Path, suffix: str, every_file: bool = False) -> Path:
    """finemo_out with its TSVs (or, ``every_file``, all its files) compressed as ``suffix``
    says, the plain files removed."""
    shutil.copytree(PP, dest)
    for f in sorted(dest.iterdir()):
        if f.suffix == ".tsv" or every_file:
            (dest / (f.name + suffix)).write_bytes(_PACK[suffix](f.read_bytes()))
            f.unlink()
    return dest


@pytest.fixture(scope="module", params=[".gz", ".bz2", ".xz"])
def packed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _packed_copy(tmp_path_factory.mktemp("packed") / "fm", request.param)


def test_collapse_and_intersect_read_compressed_tsvs_and_dirs(packed: Path,
                                                              tmp_path: Path) -> None:
    name = next(p.name for p in packed.iterdir() if p.name.startswith("hits.tsv"))
    assert main(["collapse-hits", "-i", str(packed / name), "-o", str(tmp_path / "a.tsv")]) == 0
    assert main(["collapse-hits", "-i", str(packed), "-o", str(tmp_path / "b.tsv")]) == 0
    expected = (POST / "hits_collapsed.tsv").read_bytes()
    assert (tmp_path / "a.tsv").read_bytes() == expected
    assert (tmp_path / "b.tsv").read_bytes() == expected
    assert main(["intersect-hits", "-i", str(packed), str(PP), "-o", str(tmp_path / "i.tsv")]) == 0
    assert main(["intersect-hits", "-i", str(PP), str(PP), "-o", str(tmp_path / "j.tsv")]) == 0
    assert (tmp_path / "i.tsv").read_bytes() == (tmp_path / "j.tsv").read_bytes()


def test_compare_reads_a_compressed_finemo_dir(packed: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare-hits", str(packed), str(PP)]) == 0
    out = capsys.readouterr().out
    assert "verdict: AGREE" in out
    # peaks_qc.tsv was found compressed: step counts are compared region by region.
    assert "regions: 350 in both; num_steps differ in 0" in out


def test_export_takes_finemo_dirs_plain_and_compressed(tmp_path: Path) -> None:
    packed = _packed_copy(tmp_path / "fm", ".bgz", every_file=True)
    assert is_finemo_dir(PP) and is_finemo_dir(packed)
    for src, dest in ((PP, tmp_path / "e_plain"), (packed, tmp_path / "e_packed")):
        assert main(["export", "-H", str(src), "-o", str(dest)]) == 0
    for name in ("hits.tsv", "hits.bed", "peaks_qc.tsv", "motif_data.tsv", "motif_cwms.npy"):
        assert (tmp_path / "e_plain" / name).read_bytes() == \
            (tmp_path / "e_packed" / name).read_bytes(), name
    for name in ("peaks_qc.tsv", "motif_data.tsv", "motif_cwms.npy"):
        assert (tmp_path / "e_plain" / name).read_bytes() == (PP / name).read_bytes(), name
    ours = pl.read_csv(tmp_path / "e_plain" / "hits.tsv", separator="\t")
    theirs = pl.read_csv(PP / "hits.tsv", separator="\t")
    assert ours.sort(ours.columns).equals(theirs.sort(theirs.columns))
    assert not any(tmp_path.glob("e_*/.*")), "no temporary import left in the destination"


def test_report_takes_a_gzipped_finemo_dir(tmp_path: Path, data_dir: Path) -> None:
    packed = _packed_copy(tmp_path / "fm", ".gz")
    assert main(["report", "-r", str(data_dir / "regions.npz"), "-H", str(packed), "-o",
                 str(tmp_path / "rep"), "-n"]) == 0
    table = pl.read_csv(tmp_path / "rep" / "motif_report.tsv", separator="\t")
    assert table.height > 0 and (tmp_path / "rep" / "report.html").is_file()


def test_truncated_or_foreign_files_are_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    whole = gzip.compress((PP / "hits.tsv").read_bytes())
    cut = tmp_path / "hits.tsv.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    assert main(["collapse-hits", "-i", str(cut), "-o", str(tmp_path / "c.tsv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(cut) in err and "truncated" in err
    other = tmp_path / "other.tsv.gz"
    other.write_bytes(gzip.compress(b"a\tb\n1\t2\n"))
    assert main(["collapse-hits", "-i", str(other), "-o", str(tmp_path / "c.tsv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "expected finemo's hits.tsv columns" in err
    assert not (tmp_path / "c.tsv").exists()
