"""The seam rule: a motif planted at every offset across a seam is called once, never dropped."""

from __future__ import annotations

import polars as pl
import pytest
from intervals_synth import pattern_cwm, write_genome

from nemo_dask.calling.api import call_hits
from nemo_dask.errors import InputError
from nemo_dask.regions.convert import convert_intervals
from nemo_dask.regions.convert.intervals import plan_intervals

pytest.importorskip("distributed")
L, OVERLAP, CHROM_LEN = 200, 60, 250


def test_owned_spans_partition_the_interval():
    for n in (1, 49, 139, 140, 141, 200, 999, 5000, 12345):
        for overlap in (50, 60, 101):
            tiles = plan_intervals(["c"], [7], [7 + n], [None], L, overlap)
            w = tiles.windows(0, tiles.n_windows)
            assert w["own_start"][0] == 7 and w["own_end"][-1] == 7 + n
            assert (w["own_start"][1:] == w["own_end"][:-1]).all()
            assert (w["own_end"] > w["own_start"]).all()
            # Every owned anchor keeps a W = overlap motif whole inside its window.
            half = overlap // 2
            assert (w["own_start"] - half >= w["begin"]).all()
            assert (w["own_end"] - 1 - half + overlap <= w["begin"] + L).all()


def test_planted_across_the_seam_found_once(client1, tmp_path, modisco_h5):
    cwm = pattern_cwm(modisco_h5)
    width = len(cwm)
    tiles = plan_intervals(["c"], [0], [CHROM_LEN], [None], L, OVERLAP)
    assert tiles.n_windows == 2
    begins = tiles.windows(0, 2)["begin"]
    seam_lo, seam_hi = int(begins[1]), int(begins[0]) + L  # the overlap [seam_lo, seam_hi)
    # Every untrimmed start whose motif touches the overlap, one chromosome each.
    offsets = list(range(seam_lo - width + 1, seam_hi))
    chroms = {f"s{p}": CHROM_LEN for p in offsets}
    plants = {f"s{p}": [p] for p in offsets}
    fasta, bw = write_genome(tmp_path, chroms, plants, cwm)
    store = convert_intervals(fasta, bw, tmp_path / "tiled.zarr", chrom_sizes=None,
                              whole_genome=True, region_width=L, overlap=OVERLAP,
                              progress=False)
    assert store.n_regions == 2 * len(offsets)
    # Without the rule, the instances lying whole in both windows would be called twice.
    both = [p for p in offsets if p >= seam_lo and p + width <= seam_hi]
    assert both
    res = call_hits(store.url, modisco_h5, tmp_path / "out", client=client1, progress=False)
    hits = res.hits.collect()
    planted = hits.filter((pl.col("motif_name") == "pos_patterns.pattern_0")
                          & (pl.col("strand") == "+"))
    found = planted.group_by("chr").agg(pl.col("start_untrimmed"), n=pl.len())
    got = {row["chr"]: row["start_untrimmed"] for row in found.iter_rows(named=True)}
    missing = [p for p in offsets if f"s{p}" not in got]
    assert not missing, f"planted instances lost at the seam: {missing}"
    for p in offsets:
        assert got[f"s{p}"] == [p], (p, got[f"s{p}"])
    # No hit at all is reported twice.
    keys = hits.select("chr", "start_untrimmed", "motif_name", "strand")
    assert keys.is_duplicated().sum() == 0
    # Every hit lies in its interval (the chromosome).
    assert hits["start"].min() >= 0 and hits["end"].max() <= CHROM_LEN


def test_overlap_narrower_than_motifs_refused(client1, tmp_path, modisco_h5):
    cwm = pattern_cwm(modisco_h5)
    fasta, bw = write_genome(tmp_path, {"c": 600}, {"c": [100]}, cwm)
    store = convert_intervals(fasta, bw, tmp_path / "narrow.zarr", whole_genome=True,
                              region_width=L, overlap=len(cwm) - 2, progress=False)
    with pytest.raises(InputError, match="overlap 48, narrower than the motifs' untrimmed"):
        call_hits(store.url, modisco_h5, tmp_path / "out", client=client1, progress=False)
    assert not (tmp_path / "out").exists()


def test_hits_outside_a_short_interval_are_dropped(client1, tmp_path, modisco_h5):
    """A short interval's one window also sees its flanks; only hits anchored inside count."""
    cwm = pattern_cwm(modisco_h5)
    fasta, bw = write_genome(tmp_path, {"c": 1200}, {"c": [150, 600, 950]}, cwm)
    bed = tmp_path / "short.bed"
    bed.write_text("c\t560\t700\tshort\n")
    # Its one window, [130, 1130), holds all three instances whole; only 600 is in the interval.
    wide = convert_intervals(fasta, bw, tmp_path / "wide.zarr", intervals=bed,
                             region_width=1000, overlap=OVERLAP, progress=False)
    assert wide.n_regions == 1 and wide.peaks["peak_region_start"][0] == 130
    res = call_hits(wide.url, modisco_h5, tmp_path / "out", client=client1, progress=False)
    hits = res.hits.collect()
    assert hits["start_untrimmed"].to_list() == [600]
    assert hits["peak_name"].to_list() == ["short"]
