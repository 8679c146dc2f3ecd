"""`nemo-dask tracks`: bigBed of the hits and a bigWig per motif, read back with pybigtools and
pyBigWig and compared with the export's hits.bed and the Parquet dataset."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pybigtools
import pyBigWig
import pytest

from nemo_dask.cli import main
from nemo_dask.dataset import scan_hits
from nemo_dask.tracks import AUTOSQL, BIGBED_FILE, bigwig_name, coverage

D = Path(__file__).parent / "data"
BED = ["chr", "start", "end", "motif_name", "score", "strand"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    """convert bigwig (FASTA: the store records chromosome sizes) -> call-hits -> export."""
    d = tmp_path_factory.mktemp("tracks")
    p = {"store": d / "s.zarr", "out": d / "out", "export": d / "exp", "tracks": d / "trk"}
    c = D / "convert"
    assert main(["convert", "bigwig", "-p", str(c / "peaks_bw.narrowPeak"), "-f",
                 str(c / "genome.fa"), "-b", str(c / "contribs.bw"), "-o", str(p["store"]),
                 "--no-progress"]) == 0
    assert main(["call-hits", "-r", str(p["store"]), "-m", str(D / "modisco.h5"), "-o",
                 str(p["out"]), "--workers", "1", "--no-progress"]) == 0
    assert main(["export", "-H", str(p["out"]), "-o", str(p["export"])]) == 0
    assert main(["tracks", "-H", str(p["out"]), "-o", str(p["tracks"])]) == 0
    return p


def _sizes() -> dict[str, int]:
    fai = (D / "convert" / "genome.fa.fai").read_text().splitlines()
    return {line.split("\t")[0]: int(line.split("\t")[1]) for line in fai}


def _bigbed_rows(path: Path) -> pl.DataFrame:
    """Every entry of a bigBed through pyBigWig, and the same through pybigtools."""
    bb = pyBigWig.open(str(path))
    assert bb.isBigBed()
    rows = []
    for chrom, size in bb.chroms().items():
        for s, e, rest in bb.entries(chrom, 0, size) or []:
            rows.append((chrom, s, e, *rest.split("\t")))
    assert bb.SQL().decode() == AUTOSQL
    bb.close()
    with pybigtools.open(str(path)) as r:
        other = [(c, *rec) for c in r.chroms() for rec in r.records(c)]
    assert [tuple(map(str, x)) for x in other] == [tuple(map(str, x)) for x in rows]
    cols = [*BED, "f_motif", "f_coef", "f_sim", "f_imp"]
    return pl.DataFrame(rows, schema=cols, orient="row").with_columns(
        pl.col("start", "end", "score").cast(pl.Int64),
        pl.col("f_coef", "f_sim", "f_imp").cast(pl.Float64))


def test_bigbed_equals_hits_bed_and_dataset(run) -> None:
    got = _bigbed_rows(run["tracks"] / BIGBED_FILE)
    bed = pl.read_csv(run["export"] / "hits.bed", separator="\t", has_header=False,
                      new_columns=BED)
    key = ["chr", "start", "end", "motif_name", "strand"]
    assert got.height == bed.height > 0
    assert got.select(key).sort(key).equals(bed.select(key).cast({"start": pl.Int64,
                                                                  "end": pl.Int64}).sort(key))
    assert (got["f_motif"] == got["motif_name"]).all()
    hits = scan_hits(run["out"]).collect()
    joined = got.join(hits.with_columns(pl.col("start", "end").cast(pl.Int64)), on=key,
                      how="left")
    assert joined["hit_similarity"].null_count() == 0
    np.testing.assert_array_equal(joined["f_coef"].cast(pl.Float32),
                                  joined["hit_coefficient_global"])
    np.testing.assert_array_equal(joined["f_sim"].cast(pl.Float32), joined["hit_similarity"])
    np.testing.assert_array_equal(joined["f_imp"].cast(pl.Float32), joined["hit_importance"])
    # The default score of a run with q-values: JASPAR's min(1000, round(-100 log10 q)).
    q = joined["hit_qvalue"].to_numpy().astype(float)
    expected = np.minimum(1000, np.rint(-100 * np.log10(q)))
    np.testing.assert_array_equal(joined["score"].to_numpy(), expected)
    assert 0 <= got["score"].min() and got["score"].max() <= 1000 and got["score"].n_unique() > 1
    with pybigtools.open(str(run["tracks"] / BIGBED_FILE)) as r:
        assert r.chroms() == {c: n for c, n in _sizes().items() if c in set(bed["chr"])}


def test_bigbed_header_counts_fields_as_its_autosql(run) -> None:
    """The header says BED6+4 (fieldCount 10, definedFieldCount 6), and a reader that decodes
    records by those counts (Biopython's bigBed parser, as IGV does) finds names and strands."""
    import struct

    from Bio import Align

    path = run["tracks"] / BIGBED_FILE
    with open(path, "rb") as f:
        header = f.read(36)
    assert struct.unpack("<I", header[:4])[0] == 0x8789F2EB
    assert struct.unpack("<HH", header[32:36]) == (10, 6)
    expected = _bigbed_rows(path)
    read = [(a.target.id, int(a.coordinates[0][0]), int(a.coordinates[0][-1]), a.query.id,
             int(a.score), "-" if a.coordinates[1][0] > a.coordinates[1][-1] else "+",
             a.annotations["motif_name"], a.annotations["hit_similarity"])
            for a in Align.parse(str(path), "bigbed")]
    assert len(read) == expected.height > 0
    got = pl.DataFrame(read, schema=[*BED, "f_motif", "f_sim"], orient="row")
    key = ["chr", "start", "end", "motif_name", "strand"]
    both = got.join(expected, on=key, how="inner", suffix="_x")
    assert both.height == got.height
    assert (both["score"] == both["score_x"]).all()
    assert set(got["strand"].to_list()) == {"+", "-"}
    np.testing.assert_allclose(both["f_sim"].to_numpy(), both["f_sim_x"].to_numpy(), rtol=1e-6)


def test_bigwig_per_motif_is_summed_coefficient_coverage(run) -> None:
    hits = scan_hits(run["out"]).collect()
    sizes = _sizes()
    motifs = sorted(hits["motif_name"].unique())
    files = sorted(p.name for p in run["tracks"].glob("*.bw"))
    assert files == sorted(bigwig_name(m) for m in motifs)
    for m in motifs:
        mine = hits.filter(pl.col("motif_name") == m)
        bw = pyBigWig.open(str(run["tracks"] / bigwig_name(m)))
        assert bw.isBigWig()
        for chrom in sizes:
            # Naive per-base sum: the definition, independent of tracks.coverage.
            want = np.zeros(sizes[chrom])
            covered = np.zeros(sizes[chrom], bool)
            for s, e, v in mine.filter(pl.col("chr") == chrom).select(
                    "start", "end", "hit_coefficient_global").iter_rows():
                want[s:e] += v
                covered[s:e] = True
            got = np.asarray(bw.values(chrom, 0, sizes[chrom], numpy=True)) \
                if chrom in bw.chroms() else np.full(sizes[chrom], np.nan)
            assert np.array_equal(np.isnan(got), ~covered)
            np.testing.assert_allclose(got[covered], want[covered], rtol=1e-6)
            with pybigtools.open(str(run["tracks"] / bigwig_name(m))) as r:
                if chrom in r.chroms():
                    other = np.asarray(r.values(chrom, 0, sizes[chrom], fillna=None))
                    np.testing.assert_array_equal(np.isnan(other), ~covered)
                    np.testing.assert_allclose(other[covered], got[covered], rtol=1e-7)
        bw.close()


def test_coefficient_score_and_chrom_sizes_option(run, tmp_path) -> None:
    sizes = tmp_path / "genome.chrom.sizes"
    sizes.write_text("".join(f"{c}\t{n}\n" for c, n in _sizes().items()))
    assert main(["tracks", "-H", str(run["out"]), "-o", str(tmp_path / "t"), "--score",
                 "coefficient", "--chrom-sizes", str(sizes)]) == 0
    got = _bigbed_rows(tmp_path / "t" / BIGBED_FILE)
    c = got["f_coef"].to_numpy()
    np.testing.assert_array_equal(got["score"].to_numpy(),
                                  np.rint(1000 * np.clip(c / c.max(), 0, 1)))
    assert got["score"].max() == 1000
    assert main(["tracks", "-H", str(run["out"]), "-o", str(tmp_path / "s"), "--score",
                 "similarity"]) == 0
    got = _bigbed_rows(tmp_path / "s" / BIGBED_FILE)
    np.testing.assert_array_equal(got["score"].to_numpy(), np.rint(1000 * np.clip(
        got["f_sim"].to_numpy(), 0, 1)))
    assert main(["tracks", "-H", str(run["out"]), "-o", str(tmp_path / "f"), "--fasta",
                 str(D / "convert" / "genome.fa")]) == 0
    assert (tmp_path / "f" / BIGBED_FILE).read_bytes() == (run["tracks"] / BIGBED_FILE).read_bytes()


def test_refusals_are_one_line(run, tmp_path, capsys) -> None:
    # A store without recorded sizes (converted from an npz) and no --chrom-sizes / --fasta.
    store, out = tmp_path / "n.zarr", tmp_path / "nout"
    c = D / "convert"
    from nemo_dask.regions.convert import convert_bpnet_h5

    convert_bpnet_h5(c / "bpnet.h5", store, progress=False)
    capsys.readouterr()
    # A run without coordinates: refused before any file is made.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No peak region data provided"
        assert main(["call-hits", "-r", str(store), "-m", str(D / "modisco.h5"), "-o",
                     str(out), "--workers", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["tracks", "-H", str(out), "-o", str(tmp_path / "t1"), "--chrom-sizes",
                 str(c / "genome.fa.fai")]) == 2
    err = capsys.readouterr().err
    assert "no genomic coordinates" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t1").exists()
    # Coordinates but no sizes anywhere.
    pstore = tmp_path / "p.zarr"
    assert main(["convert", "npz", "-r", str(D / "regions.npz"), "-p",
                 str(D / "peaks.narrowPeak"), "-o", str(pstore), "--no-progress"]) == 0
    pout = tmp_path / "pout"
    assert main(["call-hits", "-r", str(pstore), "-m", str(D / "modisco.h5"), "-o",
                 str(pout), "--workers", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["tracks", "-H", str(pout), "-o", str(tmp_path / "t2")]) == 2
    err = capsys.readouterr().err
    assert "no chromosome sizes known" in err and "--chrom-sizes" in err
    assert len(err.strip().splitlines()) == 1
    # A hit beyond the sizes given.
    small = tmp_path / "small.sizes"
    small.write_text("".join(f"{c}\t10\n" for c in (f"chr{i}" for i in range(1, 23))))
    assert main(["tracks", "-H", str(pout), "-o", str(tmp_path / "t3"), "--chrom-sizes",
                 str(small)]) == 2
    err = capsys.readouterr().err
    assert ("outside its size" in err or "absent from the chromosome sizes" in err)
    assert not (tmp_path / "t3").exists()


def test_coverage_runs() -> None:
    a, b, v = coverage(np.array([0, 5, 20]), np.array([10, 8, 25]), np.array([1.0, 2.0, 4.0]))
    assert a.tolist() == [0, 5, 8, 20] and b.tolist() == [5, 8, 10, 25]
    assert v.tolist() == [1.0, 3.0, 1.0, 4.0]
    a, b, v = coverage(np.array([0, 3]), np.array([3, 6]), np.array([-1.0, 1.0]))
    assert a.tolist() == [0, 3] and b.tolist() == [3, 6] and v.tolist() == [-1.0, 1.0]
