"""finemo-compatible export: the files of finemo 0.41, rebuilt from the Parquet dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import write_recorded_blocks

from nemo_dask.cli import main
from nemo_dask.dataset import read_json
from nemo_dask.errors import InputError, OutputExistsError
from nemo_dask.finemo import export as ex
from nemo_dask.finemo import formats as fmt
from nemo_dask.finemo import read as rd
from nemo_dask.finemo.formats import FINEMO_HITS_DTYPES
from nemo_dask.finemo.importing import import_finemo
from nemo_dask.schema import HITS_SCHEMA, QC_SCHEMA
from nemo_dask.storage.outputs import write_json

FINEMO = Path(__file__).parents[1] / "data" / "finemo_out"
BYTE_IDENTICAL = ("peaks_qc.tsv", "motif_data.tsv", "motif_cwms.npy", "parameters.json")
KEY_COLS = ["chr", "start", "end", "start_untrimmed", "end_untrimmed", "motif_name", "strand"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """finemo's pp output imported as a dataset: 9 blocks of 40 regions plus an empty block."""
    out = tmp_path_factory.mktemp("run") / "out"
    import_finemo(FINEMO, out, regions_per_partition=40)
    empty = pl.DataFrame(schema=pl.from_arrow(HITS_SCHEMA.empty_table()).schema)
    write_recorded_blocks(out, {99: (empty, pl.DataFrame(
        schema=pl.from_arrow(QC_SCHEMA.empty_table()).schema), 360, 360)})
    return out


@pytest.fixture(scope="module")
def exported(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("export")
    ex.export(run_dir, dest, max_rows=300)
    return dest


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _read(path: Path, header: bool = True) -> pl.DataFrame:
    return pl.read_csv(path, separator="\t", has_header=header, infer_schema_length=None)


def test_dataset_layout(run_dir: Path) -> None:
    assert len(list((run_dir / "hits").glob("part-*.parquet"))) == 10
    assert pl.read_parquet(run_dir / "hits" / "part-000099.parquet").height == 0
    params = read_json(run_dir / "parameters.json")
    assert "nemo_dask" in params and params["num_regions"] == 350


@pytest.mark.parametrize("name", BYTE_IDENTICAL)
def test_small_files_byte_identical(exported: Path, name: str) -> None:
    assert (exported / name).read_bytes() == (FINEMO / name).read_bytes()


def test_hits_tsv_same_rows_columns_order(exported: Path) -> None:
    ours, ref = _lines(exported / "hits.tsv"), _lines(FINEMO / "hits.tsv")
    assert ours[0] == ref[0]
    assert sorted(ours[1:]) == sorted(ref[1:])  # same rows, same text (float formatting too)
    a, b = _read(exported / "hits.tsv"), _read(FINEMO / "hits.tsv")
    assert a.schema == b.schema
    # finemo's order (chr_id, start); rows tied on both are compared as sets above.
    assert a.select("chr", "start").equals(b.select("chr", "start"))
    assert list(a.columns) == list(FINEMO_HITS_DTYPES)


def test_hits_unique_first_of_each_key(exported: Path) -> None:
    a, b = _read(exported / "hits_unique.tsv"), _read(FINEMO / "hits_unique.tsv")
    assert a.schema == b.schema and a.height == b.height == 1667
    assert a.select("chr", "start").equals(b.select("chr", "start"))
    assert sorted(a.select(KEY_COLS).rows()) == sorted(b.select(KEY_COLS).rows())
    assert a.select(fmt.UNIQUE_KEY).is_unique().all()
    # finemo keeps whichever duplicate its unstable sort put first; ours is one of them too.
    every = set(_read(FINEMO / "hits.tsv").rows())
    assert all(row in every for row in a.rows())


def test_hits_bed(exported: Path) -> None:
    ours, ref = _lines(exported / "hits.bed"), _lines(FINEMO / "hits.bed")
    assert sorted(ours) == sorted(ref)
    assert [r.split("\t")[:2] for r in ours] == [r.split("\t")[:2] for r in ref]
    assert ours[0].split("\t")[4] == "0" and not ours[0].startswith("chr\t")


def test_export_independent_of_bucket_size(run_dir: Path, exported: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    one = ex.export(run_dir, tmp_path / "one", max_rows=10**7)
    assert one.n_buckets == 1 and (one.n_hits, one.n_unique, one.n_regions) == (1721, 1667, 350)
    # 4 kb bins instead of 1 Mb ones, so that the fixture's 3 chromosomes give many buckets.
    from nemo_dask.finemo import sort

    monkeypatch.setattr(sort, "_BIN_BITS", 12)
    monkeypatch.setattr(sort, "_BIN_OFFSET", 1 << 19)
    sizes = [b.height for b in ex.sorted_hit_buckets(run_dir, 100)]
    assert len(sizes) > 10 and sum(sizes) == 1721 and max(sizes) <= 100 + 40
    many = ex.export(run_dir, tmp_path / "many", max_rows=100)
    assert many.n_buckets > 10
    for name in ("hits.tsv", "hits_unique.tsv", "hits.bed", "peaks_qc.tsv"):
        data = (exported / name).read_bytes()
        assert (tmp_path / "one" / name).read_bytes() == data
        assert (tmp_path / "many" / name).read_bytes() == data


def test_lazy_api_matches_files(run_dir: Path, exported: Path) -> None:
    hits = rd.finemo_hits(run_dir).collect()
    assert hits.equals(pl.read_csv(exported / "hits.tsv", separator="\t", schema=hits.schema))
    uniq = rd.finemo_hits(run_dir, unique=True).collect()
    assert uniq.equals(pl.read_csv(exported / "hits_unique.tsv", separator="\t",
                                   schema=uniq.schema))
    qc = rd.finemo_qc(run_dir).collect()
    assert qc.height == 350 and qc.columns == list(fmt.FINEMO_QC_COLUMNS)


def test_round_trip_tsv_dataset_tsv(exported: Path, tmp_path: Path) -> None:
    again = import_finemo(exported, tmp_path / "again", regions_per_partition=1000)
    assert (again.n_hits, again.n_regions, again.n_blocks) == (1721, 350, 1)
    ex.export(tmp_path / "again", tmp_path / "exp2")
    for name in ("hits.tsv", "hits_unique.tsv", "hits.bed", *BYTE_IDENTICAL):
        assert (tmp_path / "exp2" / name).read_bytes() == (exported / name).read_bytes()


def test_cli_export(run_dir: Path, exported: Path, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "-H", str(run_dir), "-o", str(tmp_path / "cli")]) == 0
    assert "1721 hits" in capsys.readouterr().out
    assert (tmp_path / "cli" / "hits.tsv").read_bytes() == (exported / "hits.tsv").read_bytes()
    assert not [p for p in (tmp_path / "cli").iterdir() if p.name.startswith(".")]
    assert main(["export", "-H", str(tmp_path / "nope"), "-o", str(tmp_path / "x")]) == 2
    assert "not a call-hits output directory" in capsys.readouterr().err


def test_bad_inputs(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="run directory itself"):
        ex.export(run_dir, run_dir)
    with pytest.raises(InputError, match="lacks"):
        import_finemo(tmp_path, tmp_path / "o")
    with pytest.raises(OutputExistsError):
        import_finemo(FINEMO, run_dir)
    part = tmp_path / "partial"
    import_finemo(FINEMO, part, regions_per_partition=100)
    manifest = read_json(part / "manifest.json")
    write_json(manifest | {"complete": False}, part / "manifest.json")
    with pytest.raises(InputError, match="incomplete"):
        ex.export(part, tmp_path / "e")
    assert ex.export(part, tmp_path / "e", allow_incomplete=True).n_hits == 1721


def test_parameters_drop_nemo_dask_keys(run_dir: Path, exported: Path) -> None:
    ours = json.loads((exported / "parameters.json").read_text())
    assert list(ours) == list(fmt.FINEMO_PARAMETER_KEYS)
    assert "nemo_dask" not in ours


def test_no_coordinates_like_finemo(tmp_path: Path) -> None:
    """Regions without coordinates: finemo writes chr/peak_name "NA", peak_region_start 0 and
    sorts by region index, as we do. finemo 0.41 also de-duplicates hits_unique across regions
    on ("NA", start, ...), dropping distinct hits of different regions at the same offset; we
    key such hits by region (finemo is the floor, not the target)."""
    data_io = pytest.importorskip("finemo.data_io")
    ref = pl.read_csv(FINEMO / "hits.tsv", separator="\t", schema=FINEMO_HITS_DTYPES)
    qc_ref = pl.read_csv(FINEMO / "peaks_qc.tsv", separator="\t").filter(pl.col("peak_id") < 60)
    motifs = pl.read_csv(FINEMO / "motif_data.tsv", separator="\t")
    peak_start = qc_ref.select("peak_id", "peak_region_start")
    # global_scale 1 makes finemo's raw values equal to the stored (scaled) ones.
    raw = (
        ref.filter(pl.col("peak_id") < 60).join(peak_start, on="peak_id")
        .join(motifs.select("motif_id", "motif_name", "strand"), on=["motif_name", "strand"])
        .select(pl.col("peak_id"), pl.col("motif_id").cast(pl.UInt32),
                hit_start=(pl.col("start_untrimmed") - pl.col("peak_region_start")).cast(pl.Int32),
                hit_coefficient="hit_coefficient", hit_similarity="hit_similarity",
                hit_importance="hit_importance", hit_importance_sq="hit_importance_sq")
    )
    qc = qc_ref.select(pl.col("nll", "dual_gap").cast(pl.Float32),
                       pl.col("num_steps").cast(pl.Int32), pl.col("step_size").cast(pl.Float32),
                       global_scale=pl.lit(1.0, pl.Float32),
                       peak_id=pl.col("peak_id").cast(pl.UInt32)).sort("peak_id")
    n = 60
    peaks = pl.DataFrame({"chr": ["NA"] * n, "chr_id": np.arange(n, dtype=np.uint32),
                          "peak_region_start": np.zeros(n, np.int32),
                          "peak_id": np.arange(n, dtype=np.uint32), "peak_name": ["NA"] * n})
    motifs_df, _ = data_io.load_motifs_df(str(FINEMO / "motif_data.tsv"))
    data_io.write_hits(raw, peaks, motifs_df, qc, str(tmp_path / "finemo"), 50)
    data_io.write_qc(qc, peaks, str(tmp_path / "finemo" / "peaks_qc.tsv"))

    # Our dataset for the same hits, with coordinates left null as a store without them may.
    m = motifs.select("motif_id", "motif_start", "motif_end")
    hits = raw.join(m, on="motif_id").with_columns(
        chr=pl.lit(None, pl.String), chr_id=pl.lit(None, pl.UInt32),
        peak_name=pl.lit(None, pl.String), start_untrimmed=pl.col("hit_start"),
        end_untrimmed=pl.col("hit_start") + 50,
        start=pl.col("hit_start") + pl.col("motif_start"),
        end=pl.col("hit_start") + pl.col("motif_end"),
        hit_coefficient_global=pl.col("hit_coefficient"),
    ).join(motifs.select("motif_id", "motif_name", "strand"), on="motif_id")
    qc_ours = qc.with_columns(status=pl.lit("converged"), chr=pl.lit(None, pl.String),
                              chr_id=pl.lit(None, pl.UInt32), peak_region_start=pl.lit(0, pl.Int32),
                              peak_name=pl.lit(None, pl.String))
    out = tmp_path / "out"
    import_finemo(FINEMO, out)  # motifs, CWMs and parameters; partitions replaced below
    for f in [*out.glob("hits/*.parquet"), *out.glob("qc/*.parquet")]:
        f.unlink()
    blocks = {}
    for b, lo in enumerate((0, 20, 40)):
        sel = (pl.col("peak_id") >= lo) & (pl.col("peak_id") < lo + 20)
        blocks[b] = (hits.filter(sel), qc_ours.filter(sel), lo, lo + 20)
    write_recorded_blocks(out, blocks, replace=True)
    ex.export(out, tmp_path / "ours", max_rows=50)

    for name in ("hits.tsv", "peaks_qc.tsv"):
        ours, theirs = _lines(tmp_path / "ours" / name), _lines(tmp_path / "finemo" / name)
        assert sorted(ours) == sorted(theirs), name
        assert [r.split("\t")[:2] for r in ours] == [r.split("\t")[:2] for r in theirs], name
    all_hits = pl.read_csv(tmp_path / "finemo" / "hits.tsv", separator="\t",
                           schema=FINEMO_HITS_DTYPES)
    want = all_hits.unique(subset=["peak_id", "start", "motif_name", "strand"], keep="first",
                           maintain_order=True)
    got = pl.read_csv(tmp_path / "ours" / "hits_unique.tsv", separator="\t",
                      schema=FINEMO_HITS_DTYPES)
    assert got.sort(pl.all()).equals(want.sort(pl.all()))
    assert got.select("peak_id", "start").equals(want.select("peak_id", "start"))
    finemo_unique = _lines(tmp_path / "finemo" / "hits_unique.tsv")
    # finemo drops hits of other regions at the same offset; we keep every region's hits
    assert len(finemo_unique) - 1 < got.height == len(_lines(tmp_path / "ours" / "hits.tsv")) - 1
    bed = pl.read_csv(tmp_path / "ours" / "hits.bed", separator="\t", has_header=False)
    assert bed.height == got.height and bed["column_2"].to_list() == got["end"].to_list()
    assert rd.finemo_hits(out, unique=True).collect().sort(pl.all()).equals(got.sort(pl.all()))


def test_call_hits_records_finemos_parameter_keys_in_its_order(tmp_path, tiny_npz, modisco_h5):
    """OUT/parameters.json holds finemo's keys first, in finemo's order (formats.py's list is
    the one statement of them), then nemo_dask's own."""
    out = tmp_path / "out"
    assert main(["call-hits", "-r", str(tiny_npz), "-m", str(modisco_h5), "-o", str(out),
                 "--workers", "1", "--no-progress"]) == 0
    keys = list(json.loads((out / "parameters.json").read_text()))
    assert keys[:len(fmt.FINEMO_PARAMETER_KEYS)] == list(fmt.FINEMO_PARAMETER_KEYS)
