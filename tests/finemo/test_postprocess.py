"""collapse-hits and intersect-hits against finemo 0.41's own outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nemo_dask.cli import main
from nemo_dask.errors import InputError
from nemo_dask.finemo import formats as fmt
from nemo_dask.finemo import postprocess as pp
from nemo_dask.finemo import read as rd
from nemo_dask.finemo.export import export
from nemo_dask.finemo.formats import FINEMO_HITS_DTYPES
from nemo_dask.finemo.importing import import_finemo

DATA = Path(__file__).parents[1] / "data"
PP, HH, POST = DATA / "finemo_out", DATA / "finemo_out_hh", DATA / "finemo_post"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """finemo's pp and hh outputs as nemo_dask datasets, and their exports."""
    root = tmp_path_factory.mktemp("runs")
    paths = {}
    for name, src in (("pp", PP), ("hh", HH)):
        import_finemo(src, root / name, regions_per_partition=64)
        export(root / name, root / f"{name}_export")
        paths[name], paths[f"{name}_export"] = root / name, root / f"{name}_export"
    return paths


def test_collapse_reproduces_finemo(tmp_path: Path) -> None:
    out = pp.write_collapsed(PP / "hits.tsv", tmp_path / "c.tsv")
    assert out.read_bytes() == (POST / "hits_collapsed.tsv").read_bytes()


def test_collapse_api_is_lazy_and_keeps_columns() -> None:
    lf = pp.collapse_hits(rd.load_hits(PP / "hits.tsv"), overlap_frac=0.2)
    assert isinstance(lf, pl.LazyFrame)
    df = lf.collect()
    assert df.columns[-2:] == ["count", "is_primary"] and df.schema["is_primary"] == pl.UInt32
    ref = pl.read_csv(POST / "hits_collapsed.tsv", separator="\t")
    assert df["is_primary"].to_list() == ref["is_primary"].to_list()
    # A larger overlap fraction pairs fewer hits, so at least as many stay primary.
    strict = pp.collapse_hits(PP / "hits.tsv", 0.9).collect()["is_primary"].sum()
    assert strict >= df["is_primary"].sum()


def test_primary_mask_equals_finemo_sweep() -> None:
    """Random inputs, sorted or not, with ties: the same flags as finemo's numba heap sweep."""
    post = pytest.importorskip("finemo.postprocessing")
    rng = np.random.default_rng(0)
    for trial in range(120):
        n = int(rng.integers(0, 50))
        chrom = rng.integers(0, 3, n).astype(np.uint32)
        starts = rng.integers(0, 300, n).astype(np.int32)
        if trial % 2:
            order = np.lexsort((starts, chrom))
            chrom, starts = chrom[order], starts[order]
        ends = (starts + rng.integers(0, 40, n)).astype(np.int32)
        sim = rng.random(n).astype(np.float32)
        if trial % 4 == 0 and n:
            sim[rng.integers(0, n, 5)] = sim[0]
        expected = post._collapse_hits(chrom, starts, ends, sim)
        got = pp.primary_mask(chrom.astype(np.int64), starts.astype(np.int64),
                              ends.astype(np.int64), sim)
        assert np.array_equal(got, expected), trial


def test_collapse_from_run_directory(runs: dict[str, Path], tmp_path: Path) -> None:
    direct = pp.write_collapsed(runs["pp"], tmp_path / "a.tsv")
    via_tsv = pp.write_collapsed(runs["pp_export"] / "hits.tsv", tmp_path / "b.tsv")
    assert direct.read_bytes() == via_tsv.read_bytes()
    ours = pl.read_csv(direct, separator="\t")
    ref = pl.read_csv(POST / "hits_collapsed.tsv", separator="\t")
    assert ours.columns == ref.columns and ours.height == ref.height
    # Rows tied on (chr, start) may be swept in another order, which can change their flags.
    cols = [c for c in ref.columns if c != "is_primary"]
    both = ours.join(ref, on=cols, how="inner", suffix="_ref")
    assert both.height == ref.height
    agree = (both["is_primary"] == both["is_primary_ref"]).mean()
    assert agree > 0.97, agree


def test_intersect_reproduces_finemo(tmp_path: Path) -> None:
    out = pp.write_intersection([PP / "hits_unique.tsv", HH / "hits_unique.tsv"],
                                tmp_path / "i.tsv")
    assert out.read_bytes() == (POST / "hits_intersect_pp_hh.tsv").read_bytes()
    # finemo output directories with --unique read the same files.
    assert main(["intersect-hits", "-i", str(PP), str(HH), "-u", "-o",
                 str(tmp_path / "j.tsv")]) == 0
    assert (tmp_path / "j.tsv").read_bytes() == out.read_bytes()


def test_intersect_relaxed_and_single() -> None:
    strict = pp.intersect_hits([PP / "hits_unique.tsv", HH / "hits_unique.tsv"]).collect()
    relaxed = pp.intersect_hits([PP / "hits_unique.tsv", HH / "hits_unique.tsv"],
                                relaxed=True).collect()
    assert relaxed.height >= strict.height
    assert {"start_1", "peak_id_1", "count_1"} <= set(relaxed.columns)
    keys = list(fmt.RELAXED_KEYS)
    assert set(strict.select(keys).rows()) <= set(relaxed.select(keys).rows())
    one = pp.intersect_hits([PP / "hits.tsv"]).collect()
    assert one.height == 1721 and one.columns[-1] == "count"


def test_intersect_run_directories(runs: dict[str, Path], tmp_path: Path) -> None:
    a = pp.write_intersection([runs["pp"], runs["hh"]], tmp_path / "a.tsv", unique=True)
    b = pp.write_intersection([runs["pp_export"] / "hits_unique.tsv",
                               runs["hh_export"] / "hits_unique.tsv"], tmp_path / "b.tsv")
    assert a.read_bytes() == b.read_bytes()
    ours = pl.read_csv(a, separator="\t")
    ref = pl.read_csv(POST / "hits_intersect_pp_hh.tsv", separator="\t")
    assert ours.columns == ref.columns
    # finemo's hits_unique keeps an arbitrary one of duplicated hits, and the strict join needs
    # the same peak_id in both runs: ours picks the same one (lowest peak_id) in both, so it
    # finds every hit finemo found, and the duplicated ones finemo's picks missed.
    keys = ["chr", "start", "end", "motif_name", "strand"]
    assert set(ours.select(keys).rows()) >= set(ref.select(keys).rows())
    assert ours.height - ref.height < 60


def test_cli_collapse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collapse-hits", "-i", str(PP / "hits.tsv"), "-o", str(tmp_path / "c.tsv"),
                 "-O", "0.2"]) == 0
    assert (tmp_path / "c.tsv").read_bytes() == (POST / "hits_collapsed.tsv").read_bytes()
    assert main(["collapse-hits", "-i", str(POST / "hits_collapsed.tsv"), "-o",
                 str(tmp_path / "d.tsv")]) == 2
    assert "expected finemo's hits.tsv columns" in capsys.readouterr().err
    assert not (tmp_path / "d.tsv").exists()


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        rd.load_hits(tmp_path / "missing.tsv")
    with pytest.raises(InputError, match="neither"):
        rd.load_hits(tmp_path)
    with pytest.raises(InputError, match="overlap_frac"):
        pp.collapse_hits(PP / "hits.tsv", 1.5)
    with pytest.raises(InputError, match="at least one"):
        pp.intersect_hits([])


def _na_hits(chrom: str | None) -> pl.DataFrame:
    """Hits of three regions without coordinates: regions 0 and 1 hold a hit at the same
    offsets, region 2 an overlapping pair of its own."""
    rows = [  # peak_id, start, end, similarity, motif
        (0, 100, 110, 0.9, "m1"), (1, 100, 110, 0.8, "m1"), (1, 300, 310, 0.7, "m2"),
        (2, 100, 110, 0.6, "m1"), (2, 104, 114, 0.95, "m1"),
    ]
    n = len(rows)
    return pl.DataFrame({
        "chr": pl.Series([chrom] * n, dtype=pl.String),
        "start": pl.Series([r[1] for r in rows], dtype=pl.Int32),
        "end": pl.Series([r[2] for r in rows], dtype=pl.Int32),
        "start_untrimmed": pl.Series([r[1] - 5 for r in rows], dtype=pl.Int32),
        "end_untrimmed": pl.Series([r[2] + 5 for r in rows], dtype=pl.Int32),
        "motif_name": [r[4] for r in rows],
        "hit_coefficient": pl.Series([1.0] * n, dtype=pl.Float32),
        "hit_coefficient_global": pl.Series([1.0] * n, dtype=pl.Float32),
        "hit_similarity": pl.Series([r[3] for r in rows], dtype=pl.Float32),
        "hit_correlation": pl.Series([r[3] for r in rows], dtype=pl.Float32),
        "hit_importance": pl.Series([1.0] * n, dtype=pl.Float32),
        "hit_importance_sq": pl.Series([1.0] * n, dtype=pl.Float32),
        "strand": ["+"] * n,
        "peak_name": pl.Series([chrom] * n, dtype=pl.String),
        "peak_id": pl.Series([r[0] for r in rows], dtype=pl.UInt32),
    }).select(list(FINEMO_HITS_DTYPES)).cast(FINEMO_HITS_DTYPES)


@pytest.mark.parametrize("chrom", ["NA", None])
def test_regions_without_coordinates_are_keyed_by_region(tmp_path: Path, chrom) -> None:
    """chr NA (or null): positions are offsets in each region, so hits of different regions
    never overlap (collapse) nor match (intersect); finemo 0.41 treats NA as one chromosome."""
    hits = _na_hits(chrom)
    primary = pp.collapse_hits(hits).collect()["is_primary"].to_list()
    # regions 0 and 1 keep their hit; in region 2 the overlapping pair competes (finemo's rule)
    assert primary == [1, 1, 1, 1, 0]
    # with coordinates the same rows on one chromosome do compete across "regions"
    on_chr = hits.with_columns(chr=pl.lit("chr1"))
    assert pp.collapse_hits(on_chr).collect()["is_primary"].to_list() != primary
    for relaxed in (False, True):
        other = hits.with_columns(peak_id=pl.col("peak_id").replace_strict(
            {0: 5, 1: 6, 2: 2}, return_dtype=pl.UInt32))
        got = pp.intersect_hits([hits, other], relaxed=relaxed).collect()
        # same offsets, other regions: only region 2 is in both inputs
        assert sorted(got["peak_id"].to_list()) == [2, 2], relaxed
        assert "_region" not in got.columns
        same = pp.intersect_hits([hits, hits], relaxed=relaxed).collect()
        assert same.height == hits.height
    if chrom is not None:  # finemo's TSV through the CLI
        path = tmp_path / "hits.tsv"
        hits.write_csv(path, separator="\t")
        assert main(["collapse-hits", "-i", str(path), "-o", str(tmp_path / "c.tsv")]) == 0
        out = pl.read_csv(tmp_path / "c.tsv", separator="\t")
        assert out["is_primary"].to_list() == primary
