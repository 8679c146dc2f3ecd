"""Motif names end to end: call-hits --annotate, nemo-dask annotate after the fact (the same
table), resume with an annotated table, labels in the hits views, export, tracks and report, and
finemo 0.41's readers on the exported files."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import polars as pl
import pyBigWig
import pytest

import nemo_dask
from nemo_dask.cli import main
from nemo_dask.dataset import read_annotation, read_motifs, write_motifs
from nemo_dask.finemo.formats import FINEMO_HITS_DTYPES, FINEMO_MOTIFS_DTYPES
from nemo_dask.matching.annotate import annotated_table
from nemo_dask.matching.database import open_database
from nemo_dask.motifs import load_motifs
from nemo_dask.params import MotifParams
from nemo_dask.schema import ANNOTATED_MOTIFS_SCHEMA, MOTIFS_SCHEMA

D = Path(__file__).parents[1] / "data"
MEME = D / "matching" / "two_motifs.meme"
EMPTY = D / "matching" / "empty.meme"


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_npz) -> Path:
    """call-hits --annotate (the two-motif MEME file) on the fixture's first 24 regions."""
    out = tmp_path_factory.mktemp("names") / "out"
    # (The CLI prints warnings as "warning: ..." lines; the small database's is one.)
    assert main(["call-hits", "-r", str(tiny_npz), "-m", str(D / "modisco.h5"), "-o",
                 str(out), "--workers", "1", "--no-progress", "--annotate", str(MEME)]) == 0
    return out


def test_call_hits_annotates_the_motif_table(run) -> None:
    motifs = read_motifs(run)
    assert motifs.columns == ANNOTATED_MOTIFS_SCHEMA.names
    labels = dict(motifs.select("motif_id", "motif_label").iter_rows())
    assert labels[0] == labels[1] == "pos_patterns.pattern_0 (CTCF)"
    assert labels[10] == labels[11] == "neg_patterns.pattern_0 (REST)"
    # No match passes q <= 0.05 in a database of CTCF and REST: the pattern's name.
    assert labels[6] == "pos_patterns.pattern_3"
    row = motifs.filter(pl.col("motif_id") == 0).row(0, named=True)
    assert row["match_id"] == ["MA0139.2", "MA0138.3"] and row["match_name"] == ["CTCF", "REST"]
    assert row["match_qvalue"][0] <= 0.05 and row["match_pvalue"][0] <= row["match_pvalue"][1]
    # The fixture's CTCF pattern is the reverse complement of the JASPAR matrix; its '-' motif
    # is the matrix as written.
    assert row["match_orientation"][0] == "-"
    rc = motifs.filter(pl.col("motif_id") == 1).row(0, named=True)
    assert rc["match_orientation"][0] == "+" and rc["match_pvalue"] == row["match_pvalue"]
    info = read_annotation(run)
    assert info["database"] == str(MEME) and info["database_motifs"] == 2
    assert (info["ppm"], info["top_k"], info["qvalue"]) == ("hcwm", 3, 0.05)


def test_annotating_after_the_fact_gives_the_same_table(run, tmp_path, capsys) -> None:
    copy = tmp_path / "plain"
    shutil.copytree(run, copy)
    write_motifs(copy, read_motifs(run).select(MOTIFS_SCHEMA.names))  # as if never annotated
    assert read_annotation(copy) is None
    hits = sorted(p.name for p in (copy / "hits").iterdir())
    assert main(["annotate", "-H", str(copy), str(MEME)]) == 0
    out, err = capsys.readouterr()
    assert "pos_patterns.pattern_0 (CTCF)    best: MA0139.2 CTCF" in out
    assert "warning: motif database" in err and "holds 2 motifs" in err
    assert read_motifs(copy).equals(read_motifs(run))
    assert read_annotation(copy) == read_annotation(run)
    assert sorted(p.name for p in (copy / "hits").iterdir()) == hits  # only the table changed


def test_resume_keeps_identity_and_reannotates(run, tiny_npz, capsys) -> None:
    base = ["call-hits", "-r", str(tiny_npz), "-m", str(D / "modisco.h5"), "-o", str(run),
            "--workers", "1", "--no-progress"]
    before = read_motifs(run)
    assert main(base) == 0  # a resume: nothing to solve, the annotated table is kept
    assert "already done" in capsys.readouterr().out
    assert read_motifs(run).equals(before)
    assert main([*base, "--annotate", "jaspar", "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "already done" in out and "pos_patterns.pattern_3 (FOS::JUN)" in out
    again = read_motifs(run)
    assert again.select(MOTIFS_SCHEMA.names).equals(before.select(MOTIFS_SCHEMA.names))
    assert again["match_id"].list.len().to_list() == [2] * again.height
    assert read_annotation(run)["database"] == "jaspar:JASPAR2024:CORE:vertebrates"


def test_api_result_hits_carry_labels(run) -> None:
    with pytest.warns(UserWarning):
        res = nemo_dask.annotate(run, MEME)
    hits = res.hits.collect()
    assert hits.columns[-1] == "motif_label" and hits.height > 0
    labels = dict(res.motifs.select("motif_id", "motif_label").iter_rows())
    assert hits["motif_label"].to_list() == [labels[m] for m in hits["motif_id"].to_list()]
    assert nemo_dask.scan_hits(run, labels=True).collect().equals(hits)
    assert "motif_label" not in nemo_dask.scan_hits(run).collect_schema()


def test_bad_databases_are_one_line_and_change_nothing(run, tiny_npz, tmp_path,
                                                       capsys) -> None:
    before = (run / "motifs.parquet").read_bytes()
    for db in (EMPTY, tmp_path / "missing.meme", "jaspar:1999"):
        assert main(["annotate", "-H", str(run), str(db)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(db).split("/")[-1] in err
    assert (run / "motifs.parquet").read_bytes() == before
    new = tmp_path / "new"
    assert main(["call-hits", "-r", str(tiny_npz), "-m", str(D / "modisco.h5"), "-o", str(new),
                 "--workers", "1", "--annotate", str(EMPTY)]) == 2
    assert "holds no motifs" in capsys.readouterr().err and not new.exists()


def test_another_h5_is_refused(run, tmp_path, capsys) -> None:
    other = tmp_path / "other.h5"
    shutil.copy(D / "modisco.h5", other)
    with h5py.File(other, "r+") as h5:
        h5["pos_patterns/pattern_2/contrib_scores"][0, 0] += 1.0
    assert main(["annotate", "-H", str(run), str(MEME), "-m", str(other)]) == 2
    err = capsys.readouterr().err
    assert "pattern pos_patterns.pattern_2 is not the motif this run was called with" in err


def test_renamed_motifs_keep_their_names(modisco_h5) -> None:
    motifs = load_motifs(modisco_h5, MotifParams(motif_names={"pos_patterns.pattern_0": "my_ctcf"}))
    with pytest.warns(UserWarning):
        table, _ = annotated_table(motifs.table, motifs.cwms, modisco_h5,
                                   open_database(MEME))
    labels = dict(table.select("motif_name", "motif_label").iter_rows())
    assert labels["my_ctcf"] == "my_ctcf"  # -N wins, although CTCF matches
    assert labels["neg_patterns.pattern_0"] == "neg_patterns.pattern_0 (REST)"
    assert table.filter(pl.col("motif_name") == "my_ctcf")["match_name"][0][0] == "CTCF"


def test_export_keeps_finemo_files_and_adds_matches(run, tmp_path) -> None:
    from finemo import data_io

    with pytest.warns(UserWarning):
        nemo_dask.annotate(run, MEME)
    plain, labelled = tmp_path / "plain", tmp_path / "labelled"
    assert main(["export", "-H", str(run), "-o", str(plain)]) == 0
    assert main(["export", "-H", str(run), "-o", str(labelled), "--labels"]) == 0
    # finemo's own report reads hits.tsv, motif_data.tsv, motif_cwms.npy, parameters.json:
    hits = data_io.load_hits(str(plain / "hits.tsv"))
    motifs_df, names = data_io.load_motifs_df(str(plain / "motif_data.tsv"))
    assert hits.height > 0 and list(names) == read_motifs(run).filter(
        pl.col("strand") == "+")["motif_name"].to_list()
    assert motifs_df.columns == list(FINEMO_MOTIFS_DTYPES)
    data_io.load_params(str(plain / "parameters.json"))
    matches = pl.read_csv(plain / "motif_matches.tsv", separator="\t")
    assert matches.columns == ["motif_name", "motif_label", "rank", "match_id", "match_name",
                               "match_pvalue", "match_qvalue", "match_orientation"]
    assert matches.height == 6 * 2 and matches["rank"].to_list()[:2] == [1, 2]
    # hits.tsv stays finemo's with or without --labels (finemo's readers refuse any other
    # column); the labels go to hits_extra.tsv (before the q-values), and with --labels they
    # are hits.bed's name.
    for d in (plain, labelled):
        assert (d / "hits.tsv").read_text().split("\n", 1)[0].split("\t") == list(
            FINEMO_HITS_DTYPES)
    assert (labelled / "hits.tsv").read_bytes() == (plain / "hits.tsv").read_bytes()
    header = (plain / "hits_extra.tsv").read_text().split("\n", 1)[0].split("\t")
    assert header == [*FINEMO_HITS_DTYPES, "motif_label", "hit_qvalue"]
    extra = pl.read_csv(plain / "hits_unique_extra.tsv", separator="\t")
    bed = pl.read_csv(labelled / "hits.bed", separator="\t", has_header=False)
    assert bed["column_3"].to_list() == extra["motif_label"].to_list()
    assert "pos_patterns.pattern_0 (CTCF)" in set(bed["column_3"])
    plain_bed = pl.read_csv(plain / "hits.bed", separator="\t", has_header=False)
    assert plain_bed["column_3"].to_list() == extra["motif_name"].to_list()
    assert (plain / "hits.tsv").read_text() == "\n".join(
        "\t".join(line.split("\t")[:-2]) if k else "\t".join(FINEMO_HITS_DTYPES)
        for k, line in enumerate((plain / "hits_extra.tsv").read_text().split("\n")) if line
    ) + "\n"


def test_tracks_show_labels(run, tmp_path) -> None:
    with pytest.warns(UserWarning):
        nemo_dask.annotate(run, MEME)
    sizes = str(D / "matching" / "genome.chrom.sizes")
    for label_by in ("match", "pattern"):
        d = tmp_path / label_by
        assert main(["tracks", "-H", str(run), "-o", str(d), "--chrom-sizes", sizes,
                     "--label-by", label_by]) == 0
        bb = pyBigWig.open(str(d / "hits.bb"))
        names = {(rest.split("\t")[0], rest.split("\t")[2 + 1])
                 for c, n in bb.chroms().items() for _, _, rest in (bb.entries(c, 0, n) or [])}
        bb.close()
        files = sorted(p.name for p in d.glob("*.bw"))
        if label_by == "match":
            assert ("pos_patterns.pattern_0 (CTCF)", "pos_patterns.pattern_0") in names
            assert "pos_patterns.pattern_0_CTCF.bw" in files
            assert "pos_patterns.pattern_3.bw" in files  # no match passed: its name
        else:
            assert all(a == b for a, b in names)
            assert "pos_patterns.pattern_0.bw" in files


def test_report_shows_matches_beside_logos(run, tmp_path) -> None:
    with pytest.warns(UserWarning):
        nemo_dask.annotate(run, MEME)
    tables = nemo_dask.write_report(run / "regions.zarr", run, tmp_path / "rep",
                                    compute_recall=False)
    assert tables.matches is not None and tables.match_database.startswith("two_motifs.meme")
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "<h3><code>pos_patterns.pattern_0 (CTCF)</code></h3>" in page
    assert "TOMTOM matches in two_motifs.meme" in page
    assert "<td>MA0139.2</td><td>CTCF</td>" in page
    assert np.isclose(tables.matches.filter(pl.col("motif_name") == "neg_patterns.pattern_0")
                      ["match_qvalue"][0][0], read_motifs(run).filter(
                          pl.col("motif_id") == 10)["match_qvalue"][0][0])


def test_hh_mode_motifs_get_the_same_matches(modisco_h5) -> None:
    db = open_database(MEME)
    tables = []
    for mode in ("pp", "hh"):
        motifs = load_motifs(modisco_h5, MotifParams(mode=mode))
        with pytest.warns(UserWarning):
            tables.append(annotated_table(motifs.table, motifs.cwms, modisco_h5, db)[0])
    assert tables[0].drop("motif_scale").equals(tables[1].drop("motif_scale"))
