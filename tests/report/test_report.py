"""The report: finemo parity of its tables on the fixture, options, bad input, and the page itself.

The dataset under test is finemo's own call-hits output (tests/data/finemo_out) written into the
nemo_dask layout in several blocks (one empty), so the comparison isolates the report.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import write_recorded_blocks

from nemo_dask import dataset
from nemo_dask.cli import main
from nemo_dask.errors import InputError
from nemo_dask.finemo.importing import import_finemo
from nemo_dask.regions.npz import NpzRegions
from nemo_dask.report import report_tables, write_report

REF = Path(__file__).parents[1] / "data" / "finemo_report_tables"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """finemo's call-hits output as a nemo_dask dataset: 4 blocks of regions and an empty one."""
    out = tmp_path_factory.mktemp("run") / "out"
    import_finemo(data_dir / "finemo_out", out, regions_per_partition=100)
    empty = dataset.scan_hits(out).clear().collect(), dataset.scan_qc(out).clear().collect()
    write_recorded_blocks(out, {999: (*empty, 360, 360)})
    return out


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, run_dir: Path) -> Path:
    """``nemo-dask report`` as finemo's reference was made: -r regions.npz -m modisco.h5 -W 400,
    on a dataset made by nemo-dask."""
    out = tmp_path_factory.mktemp("report")
    argv = [
        "report",
        "-r",
        str(data_dir / "regions.npz"),
        "-H",
        str(run_dir),
        "-o",
        str(out),
        "-m",
        str(data_dir / "modisco.h5"),
        "-W",
        "400",
        "--block-size",
        "64",
    ]
    assert main(argv) == 0
    return out


def _read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, separator="\t")


def test_motif_report_matches_finemo(report_dir: Path) -> None:
    ours, ref = _read(report_dir / "motif_report.tsv"), _read(REF / "motif_report.tsv")
    assert ours.columns == ref.columns
    assert ours["motif_name"].to_list() == ref["motif_name"].to_list()
    counts = [c for c in ref.columns if c.startswith("num_")]
    assert ours.select(counts).equals(ref.select(counts))
    np.testing.assert_allclose(ours["seqlet_recall"], ref["seqlet_recall"], rtol=1e-12)
    # finemo averages and multiplies in float16; we use float64 (see the next test).
    np.testing.assert_allclose(ours["cwm_similarity"], ref["cwm_similarity"], atol=3e-3)


def test_cwms_equal_finemo_evaluation_in_float64(data_dir: Path, run_dir: Path) -> None:
    """finemo's own evaluation code, fed float64 regions, gives our CWMs and similarities."""
    pytest.importorskip("finemo")
    from finemo import data_io, evaluation

    seqs, contribs, peaks, _ = data_io.load_regions_npz(str(data_dir / "regions.npz"))
    motifs_df, names = data_io.load_motifs_df(str(data_dir / "finemo_out" / "motif_data.tsv"))
    seqlets = data_io.load_modisco_seqlets(
        str(data_dir / "modisco.h5"), peaks, motifs_df, 500, 200, lazy=True
    )
    hits = data_io.load_hits(str(data_dir / "finemo_out" / "hits.tsv"), lazy=True)
    cwms_ref = np.load(data_dir / "finemo_out" / "motif_cwms.npy").astype(np.float64)
    _, ref_df, ref_cwms, _ = evaluation.tfmodisco_comparison(
        contribs.astype(np.float64) * seqs,
        hits,
        peaks,
        seqlets,
        motifs_df,
        cwms_ref,
        list(names),
        200,
        50,
        True,
    )
    ours = report_tables(data_dir / "regions.npz", run_dir, data_dir / "modisco.h5", regions_per_read=50)
    np.testing.assert_allclose(
        ours.motif_report["cwm_similarity"], ref_df["cwm_similarity"], rtol=1e-9
    )
    for i, m in enumerate(names):
        for kind in ("hits_fc", "hits_rc", "seqlets_only", "hits_restricted_only"):
            np.testing.assert_allclose(
                ours.cwms[kind][i], ref_cwms[m][kind], rtol=1e-9, atol=1e-12, err_msg=f"{m} {kind}"
            )


def test_seqlets_match_finemo(report_dir: Path) -> None:
    ours, ref = _read(report_dir / "seqlets.tsv"), _read(REF / "seqlets.tsv")
    assert ours.columns == ref.columns
    assert ours.sort(ours.columns).equals(ref.sort(ref.columns))


def test_seqlet_confusion_matches_finemo(report_dir: Path) -> None:
    ours, ref = _read(report_dir / "seqlet_confusion.tsv"), _read(REF / "seqlet_confusion.tsv")
    assert ours.columns == ref.columns
    key = ["motif_name_seqlets", "motif_name_hits"]
    assert ours.select(key).sort(key).equals(ref.select(key).sort(key))
    joined = ours.join(ref, on=key)
    np.testing.assert_allclose(joined["frac_overlap"], joined["frac_overlap_right"], rtol=1e-12)


def test_motif_occurrences_match_finemo(report_dir: Path) -> None:
    ours, ref = _read(report_dir / "motif_occurrences.tsv"), _read(REF / "motif_occurrences.tsv")
    # finemo's column order is the pivot's first-appearance order; ours is the motif order.
    assert sorted(ours.columns) == sorted(ref.columns)
    assert ours.columns[0] == "peak_id" and ours.columns[-1] == "total"
    assert ours.select(ref.columns).equals(ref)


def test_tables_api_agrees_across_blocks_and_layouts(
    tmp_path: Path, data_dir: Path, run_dir: Path
) -> None:
    """Block size, a regions store, and the projected (N, L) layout of regions_bw.npz do not
    change any number."""
    from nemo_dask.regions.convert.npz import convert_npz

    a = report_tables(data_dir / "regions.npz", run_dir, data_dir / "modisco.h5", regions_per_read=1000)
    b = report_tables(
        NpzRegions(data_dir / "regions_bw.npz"), run_dir, data_dir / "modisco.h5", regions_per_read=7
    )
    store = convert_npz(data_dir / "regions.npz", tmp_path / "regions.zarr", chunk_size=64)
    c = report_tables(store.url, run_dir, data_dir / "modisco.h5", regions_per_read=100)
    for other in (b, c):
        assert a.motif_report.equals(other.motif_report)
        for kind, value in a.cwms.items():
            np.testing.assert_array_equal(value, other.cwms[kind], err_msg=kind)
    occ = a.motif_occurrences.collect()
    assert occ.height == 336 and occ["total"].sum() == 1721
    # Co-occurrence equals finemo's definition on the reference occurrence table.
    ref = _read(REF / "motif_occurrences.tsv")
    ind = (ref.select(a.motif_names).to_numpy() > 0).astype(np.int64)
    np.testing.assert_array_equal(a.cooccurrence.drop("motif_name").to_numpy(), ind.T @ ind)
    # Hits per region cover every region, zeros included.
    per = a.hits_per_region
    for m in a.motif_names + ["total"]:
        part = per.filter(pl.col("motif_name") == m)
        assert part["num_regions"].sum() == a.n_regions == 350
    stats = a.hit_statistics.group_by("motif_name", "statistic").agg(pl.col("count").sum())
    assert stats["count"].sum() == 3 * 1721


def test_parts_give_the_same_tables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data_dir: Path, run_dir: Path
) -> None:
    """Aggregating hits in many small parts and averaging CWMs over many small chunks of
    spilled windows (as for millions of hits) changes nothing."""
    from nemo_dask.report import cwms, distinct, write_tables

    whole = report_tables(data_dir / "regions.npz", run_dir, data_dir / "modisco.h5")
    monkeypatch.setattr(distinct, "HITS_PER_PART", 100)
    monkeypatch.setattr(cwms, "WINDOWS_PER_CHUNK", 50)
    chunks = []
    real_peak_chunks = cwms._peak_chunks
    monkeypatch.setattr(cwms, "_peak_chunks",
                        lambda *a: chunks.extend(real_peak_chunks(*a)) or real_peak_chunks(*a))
    parts = report_tables(data_dir / "regions.npz", run_dir, data_dir / "modisco.h5",
                          regions_per_read=20)
    assert parts.motif_report.equals(whole.motif_report)
    assert parts.seqlet_confusion.equals(whole.seqlet_confusion)
    assert parts.hits_per_region.equals(whole.hits_per_region)
    assert parts.cooccurrence.equals(whole.cooccurrence)
    for kind, value in whole.cwms.items():
        np.testing.assert_allclose(parts.cwms[kind], value, rtol=1e-12, err_msg=kind)
    assert len(chunks) > 5
    assert all(lo < hi <= next_lo for (lo, hi), (next_lo, _) in zip(chunks, chunks[1:], strict=False))
    write_tables(parts, tmp_path)
    assert _read(tmp_path / "motif_occurrences.tsv").equals(whole.motif_occurrences.collect())


def test_without_modisco_and_without_recall(tmp_path: Path, data_dir: Path, run_dir: Path) -> None:
    # -H may be finemo's own output directory: it is imported beside the report.
    finemo_out = data_dir / "finemo_out"
    bare = write_report(data_dir / "regions.npz", finemo_out, tmp_path / "bare", embed_images=True)
    assert (tmp_path / "bare" / "finemo_dataset" / "motifs.parquet").is_file()
    ref = _read(REF / "motif_report.tsv").select(bare.motif_report.columns[:-1])
    assert bare.motif_report.drop("cwm_similarity").equals(ref)
    assert bare.motif_report.columns == [
        "motif_name",
        "num_hits_total",
        "num_hits_restricted",
        "cwm_similarity",
    ]
    assert bare.seqlets is None and not (tmp_path / "bare" / "seqlets.tsv").exists()
    page = (tmp_path / "bare" / "report.html").read_text()
    assert "seqlet comparisons are left out" in page
    assert not (tmp_path / "bare" / "figures").exists()  # everything embedded
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)

    rc = main(
        [
            "report",
            "-r",
            str(data_dir / "regions.npz"),
            "-H",
            str(run_dir),
            "-o",
            str(tmp_path / "nr"),
            "-m",
            str(data_dir / "modisco.h5"),
            "-n",
        ]
    )
    assert rc == 0
    nr = _read(tmp_path / "nr" / "motif_report.tsv")
    assert nr.columns == [
        "motif_name",
        "num_hits_total",
        "num_hits_restricted",
        "num_seqlets",
        "cwm_similarity",
    ]
    assert (tmp_path / "nr" / "seqlet_confusion.tsv").exists()


def test_bad_input_is_one_clear_error(
    tmp_path: Path, data_dir: Path, run_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    rc = main(
        [
            "report",
            "-r",
            str(data_dir / "regions.npz"),
            "-H",
            str(tmp_path / "nope"),
            "-o",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "motifs.parquet" in err and "-H" in err
    # Regions of another width than the run's: refused, naming parameters.json.
    np.savez(
        tmp_path / "narrow.npz",
        sequences=np.zeros((2, 4, 100), np.int8),
        contributions=np.zeros((2, 4, 100), np.float16),
    )
    with pytest.raises(InputError, match="region_width"):
        report_tables(tmp_path / "narrow.npz", run_dir)
    with pytest.raises(InputError, match="not found"):
        report_tables(data_dir / "regions.npz", run_dir, tmp_path / "missing.h5")
    assert not (tmp_path / "o" / "report.html").exists()


def test_page_is_offline_and_labelled(report_dir: Path) -> None:
    page = (report_dir / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 4 + 2 * 6
    assert all((report_dir / s).is_file() for s in srcs)
    assert len(re.findall(r"<figcaption>", page)) == len(srcs)
    table = re.search(r'<table id="motif-table">.*?</table>', page, re.S).group(0)
    assert len(re.findall(r"<tr>", table)) == 1 + 6


_CHECK_JS = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const rows = document.querySelectorAll("#motif-table tbody tr").length;
  document.body.setAttribute("data-check", JSON.stringify({
    n: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length, rows: rows}));
});
</script></body>"""


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium_args(profile: Path) -> list[str]:
    return [
        _chromium() or "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]


@pytest.mark.skipif(
    _chromium() is None,
    reason="chromium not installed (Debian package `chromium`; .ci/run installs it)",
)
def test_page_renders_in_headless_chromium(tmp_path: Path, report_dir: Path) -> None:
    """Every image loads and the summary table has one row per motif, in a real browser."""
    shot = report_dir / "report_screenshot.png"
    subprocess.run(
        [
            *_chromium_args(tmp_path / "p1"),
            f"--screenshot={shot}",
            "--window-size=1280,2400",
            (report_dir / "report.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    # The same page plus a load-time check, read back from the DOM chromium dumps.
    checked = report_dir / "report_checked.html"
    checked.write_text((report_dir / "report.html").read_text().replace("</body>", _CHECK_JS))
    dom = subprocess.run(
        [
            *_chromium_args(tmp_path / "p2"),
            "--virtual-time-budget=10000",
            "--dump-dom",
            checked.as_uri(),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    found = re.search(r"data-check=\"([^\"]+)\"", dom)
    assert found, dom[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert result == {"n": 16, "loaded": 16, "rows": 6}
