"""convert intervals: tiling, stored windows equal to the bigwig converter's, validation, CLI."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nemo_dask.errors import InputError
from nemo_dask.regions.convert import convert_bigwig, convert_intervals

D = Path(__file__).parents[1] / "data" / "convert"
FA, BW = D / "genome.fa", D / "contribs.bw"


def _peaks_for(store, path: Path) -> Path:
    """A narrowPeak whose regions are the store's windows (summit at the window centre)."""
    peaks = store.peaks
    rows = []
    for chrom, begin in zip(peaks["chr"], peaks["peak_region_start"], strict=True):
        begin = int(begin)
        rows.append(f"{chrom}\t{begin}\t{begin + store.width}\tp\t0\t.\t0\t0\t0\t"
                    f"{store.width // 2}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_windows_equal_the_bigwig_converters(tmp_path):
    bed = tmp_path / "iv.bed"
    bed.write_text("track name=x\nchrB\t100\t5000\tb1\nchrA\t0\t2500\n# c\nchrA\t16000\t17750\ta2\n")
    store = convert_intervals(FA, [BW], tmp_path / "iv.zarr", intervals=bed, region_width=1000,
                              overlap=100, chunk_size=3, progress=False)
    tiling = store.attrs["tiling"]
    assert tiling["width"] == 1000 and tiling["overlap"] == 100 and tiling["step"] == 900
    peaks = store.peaks
    # Sorted by chromosome (first appearance) then start; names or chr:start-end.
    assert peaks["chr"].to_list()[0] == "chrB"
    assert set(peaks["peak_name"]) == {"b1", "chrA:0-2500", "a2"}
    assert peaks["peak_id"].to_list() == list(range(store.n_regions))
    own_s = np.asarray(store.group["tiling/own_start"][:])
    own_e = np.asarray(store.group["tiling/own_end"][:])
    iid = np.asarray(store.group["tiling/interval_id"][:])
    for i, (s, e) in enumerate([(100, 5000), (0, 2500), (16000, 17750)]):
        sel = iid == i
        assert own_s[sel][0] == s and own_e[sel][-1] == e
        assert (own_s[sel][1:] == own_e[sel][:-1]).all()
    # Each window holds exactly what the bigwig converter stores for a peak window there
    # (zero-padded before 0 and past the end of chrA).
    assert peaks["peak_region_start"].min() < 0
    assert (peaks.filter(peaks["chr"] == "chrA")["peak_region_start"].max() + 1000) > 17750
    with pytest.warns(UserWarning):
        ref = convert_bigwig(_peaks_for(store, tmp_path / "w.narrowPeak"), FA, [BW],
                             tmp_path / "ref.zarr", progress=False)
    a, b = store.read_block(0, store.n_regions), ref.read_block(0, ref.n_regions)
    np.testing.assert_array_equal(a.sequences, b.sequences)
    np.testing.assert_array_equal(a.contributions, b.contributions)
    assert (a.peaks["peak_region_start"] == b.peaks["peak_region_start"]).all()


def test_whole_genome_and_chrom_sizes_agree(tmp_path):
    sizes = tmp_path / "chrom.sizes"
    sizes.write_text("chrA\t17750\nchrB\t17974\n")
    a = convert_intervals(FA, BW, tmp_path / "a.zarr", chrom_sizes=sizes, progress=False)
    b = convert_intervals(FA, BW, tmp_path / "b.zarr", whole_genome=True, progress=False)
    assert a.attrs["content_sha256"] == b.attrs["content_sha256"]
    # 17750 + 100 bases widened -> ceil((17850 - 1000) / 900) + 1 = 20 windows
    assert (a.peaks["chr"] == "chrA").sum() == 20
    assert a.attrs["tiling"]["bases"] == 17750 + 17974
    # The genome's sizes, for `nemo-dask tracks` without --chrom-sizes or --fasta.
    assert a.attrs["chrom_sizes"] == {"chrA": 17750, "chrB": 17974}


def test_overlapping_intervals_are_merged(tmp_path):
    bed = tmp_path / "iv.bed.gz"
    with gzip.open(bed, "wt") as f:
        f.write("chrA\t1000\t3000\tx\nchrA\t2500\t4000\ty\nchrA\t4000\t4100\tz\n")
    with pytest.warns(UserWarning, match="2 interval"):
        store = convert_intervals(FA, BW, tmp_path / "m.zarr", intervals=bed, progress=False)
    assert set(store.peaks["peak_name"]) == {"x,y,z"}
    assert store.group["tiling/own_start"][0] == 1000
    assert store.group["tiling/own_end"][store.n_regions - 1] == 4100


@pytest.mark.parametrize("text, match", [
    ("chrA\t10\n", "needs chr, start, end"),
    ("chrA\tx\t100\n", "not an integer"),
    ("chrA\t100\t100\n", "empty or negative"),
    ("chrZ\t0\t100\n", "absent from the FASTA"),
    ("chrA\t0\t20000\n", "past the chromosome's end"),
    ("", "holds no intervals"),
])
def test_bad_bed_refused(tmp_path, text, match):
    bed = tmp_path / "bad.bed"
    bed.write_text(text)
    with pytest.raises(InputError, match=match):
        convert_intervals(FA, BW, tmp_path / "o.zarr", intervals=bed, progress=False)
    assert not (tmp_path / "o.zarr").exists()


@pytest.mark.parametrize("kw, match", [
    ({}, "exactly one of"),
    ({"whole_genome": True, "overlap": 1000}, "--overlap must be"),
    ({"whole_genome": True, "overlap": -1}, "--overlap must be"),
    ({"whole_genome": True, "region_width": 999}, "odd"),
])
def test_bad_options_refused(tmp_path, kw, match):
    with pytest.raises(InputError, match=match):
        convert_intervals(FA, BW, tmp_path / "o.zarr", progress=False, **kw)


def test_cli(tmp_path):
    bed = tmp_path / "iv.bed"
    bed.write_text("chrA\t0\t5000\n")
    out = tmp_path / "cli.zarr"
    run = subprocess.run([sys.executable, "-m", "nemo_dask", "convert", "intervals", "-f",
                          str(FA), "-b", str(BW), "-i", str(bed), "-w", "500", "--overlap",
                          "80", "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "regions x 500 bp" in run.stderr
    from nemo_dask.regions.store import open_store

    assert open_store(out).attrs["tiling"]["step"] == 420
    both = subprocess.run([sys.executable, "-m", "nemo_dask", "convert", "intervals", "-f",
                           str(FA), "-b", str(BW), "-i", str(bed), "--whole-genome", "-o",
                           str(tmp_path / "x.zarr")], capture_output=True, text=True)
    assert both.returncode == 2 and "not allowed with" in both.stderr
