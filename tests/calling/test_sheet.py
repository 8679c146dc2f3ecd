"""Reading a sheet of runs (``call-hits --runs``): columns from call-hits' own parser, cells
parsed by it, paths from the sheet's folder, every bad row named before anything runs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from nemo_dask.calling import sheet as sheet_module
from nemo_dask.calling.sheet import SheetError, read_sheet
from nemo_dask.cli import build_parser
from nemo_dask.errors import InputError


def _sheet(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _problems(rows) -> list[str]:
    return [p for r in rows for p in r.problems]


def test_every_run_option_is_a_column_and_sheet_wide_ones_are_not():
    cols = sheet_module.columns()
    parser = build_parser()
    call_hits = next(a for a in parser._subparsers._group_actions[0].choices.items()
                     if a[0] == "call-hits")[1]
    longs = {f[2:] for a in call_hits._actions for f in a.option_strings if f.startswith("--")}
    cluster = {"scheduler", "cluster", "workers", "queue", "walltime", "jobs", "tls", "dry-run"}
    assert cluster <= set(cols.sheet_wide)
    assert {"no-progress", "worker-wait", "runs", "summary"} <= set(cols.sheet_wide)
    # Everything else call-hits takes is a run's own column.
    assert set(cols.actions) == longs - set(cols.sheet_wide)
    assert {"mode", "global-lambda", "peaks", "exact", "block-size", "annotate"} <= set(cols.actions)


def test_a_new_call_hits_option_is_a_sheet_column_without_touching_the_sheet(tmp_path,
                                                                             monkeypatch):
    from nemo_dask.cli import call_hits as cli

    original = cli.add_arguments

    def with_new_option(p: argparse.ArgumentParser) -> None:
        original(p)
        p.add_argument("--new-knob", type=int, default=3, choices=(3, 4, 5))

    monkeypatch.setattr(cli, "add_arguments", with_new_option)
    path = _sheet(tmp_path / "RUNS.tsv", "name\tregions\tmotifs\tout\tnew-knob",
                  "a\tr.zarr\tm.h5\tout_a\t4", "b\tr.zarr\tm.h5\tout_b\t",
                  "c\tr.zarr\tm.h5\tout_c\tx", "d\tr.zarr\tm.h5\tout_d\t9")
    _, rows = read_sheet(path)
    assert [r.options.new_knob for r in rows[:2]] == [4, 3]
    assert _problems(rows) == [
        f"{path}:4: column new-knob: argument --new-knob: invalid int value: 'x'",
        f"{path}:5: column new-knob: argument --new-knob: invalid choice: 9 (choose from 3, 4, "
        "5)"]


def test_cells_are_parsed_by_call_hits_own_parser(tmp_path):
    path = _sheet(tmp_path / "RUNS.tsv",
                  "# a comment, then a blank line",
                  "",
                  "name\tregions\tmotifs\tout\tmode\tglobal-lambda\texact\tno-post-filter",
                  "pp\tr.zarr\tm.h5\tpp\t\t\t\t",
                  "hh\tr.zarr\tm.h5\thh\thh\t0.8\tyes\tFalse")
    _, rows = read_sheet(path)
    assert _problems(rows) == []
    pp, hh = (r.options for r in rows)
    assert (pp.mode, pp.global_lambda, pp.exact, pp.no_post_filter) == ("pp", 0.7, False, False)
    assert (hh.mode, hh.global_lambda, hh.exact, hh.no_post_filter) == ("hh", 0.8, True, False)
    assert [r.where for r in rows] == [f"{path}:4", f"{path}:5"]


def test_paths_are_taken_from_the_sheets_folder(tmp_path, monkeypatch):
    sub = tmp_path / "project"
    sub.mkdir()
    _sheet(sub / "RUNS.tsv",
           "name\tregions\tmotifs\tout\tpeaks\tglobal-scale-from\tannotate",
           "a\tdata/r.npz\t/abs/m.h5\tout_a\tp.narrowPeak\tpeaks.zarr:25\tjaspar:2024",
           "b\ts3://bucket/r.zarr\tm.h5\t~/out_b\t\t\tdb.meme")
    monkeypatch.chdir(tmp_path)  # not the sheet's folder
    _, rows = read_sheet(Path("project/RUNS.tsv"))
    a, b = (r.options for r in rows)
    assert a.regions == str(sub / "data" / "r.npz") and a.modisco_h5 == "/abs/m.h5"
    assert a.out_dir == str(sub / "out_a") and a.peaks == str(sub / "p.narrowPeak")
    assert a.global_scale_from == f"{sub / 'peaks.zarr'}:25" and a.annotate == "jaspar:2024"
    assert b.regions == "s3://bucket/r.zarr" and b.annotate == str(sub / "db.meme")
    assert b.out_dir == os.path.expanduser("~/out_b")


def test_a_url_sheets_paths_are_taken_from_its_url():
    fs = pytest.importorskip("fsspec").filesystem("memory")
    fs.pipe("/sheets/RUNS.tsv", b"name\tregions\tmotifs\tout\na\tr.zarr\tm.h5\tout_a\n")
    _, [row] = read_sheet("memory://sheets/RUNS.tsv")
    assert row.options.regions == "memory://sheets/r.zarr"
    assert row.options.out_dir == "memory://sheets/out_a"


def test_command_line_options_are_every_rows_default(tmp_path):
    cli = build_parser().parse_args(["call-hits", "--runs", "x.tsv", "-m", "shared.h5", "-M",
                                     "hh", "--global-scale", "2", "--exact"])
    path = _sheet(tmp_path / "RUNS.tsv", "name\tregions\tout\tmode\tglobal-scale-from\texact",
                  "a\tr.zarr\ta\t\t\t", "b\tr.zarr\tb\tpp\tpeaks.zarr\tno")
    _, (a, b) = read_sheet(path, defaults=cli)
    assert (a.options.modisco_h5, a.options.mode, a.options.global_scale, a.options.exact) == \
        ("shared.h5", "hh", 2.0, True)
    # A cell replaces the command line's value; one of an exclusive pair replaces the other.
    assert (b.options.mode, b.options.exact) == ("pp", False)
    assert (b.options.global_scale, b.options.global_scale_from) == \
        (None, str(tmp_path / "peaks.zarr"))


def test_runs_as_mappings(tmp_path):
    _, rows = read_sheet([{"name": "a", "regions": tmp_path / "r.zarr", "motifs": "m.h5",
                           "out": "o", "exact": True, "max-steps": 50, "mode": None}],
                         defaults={"mode": "hh"})
    [a] = rows
    assert (a.where, a.options.exact, a.options.max_steps, a.options.mode) == \
        ("runs[0]", True, 50, "hh")
    assert a.options.regions == str(tmp_path / "r.zarr")


def test_bad_columns_are_refused_naming_line_and_column(tmp_path):
    path = _sheet(tmp_path / "RUNS.tsv", "# runs", "name\tregions\tmotifs\tout\tglobal-lamda\t"
                  "workers\tmode\tmode", "a\tr\tm\to\t0.8\t2\tpp\tpp")
    with pytest.raises(SheetError) as err:
        read_sheet(path)
    assert err.value.problems == [
        f"{path}:2: column 5 ('global-lamda') is not a call-hits option; did you mean "
        "global-lambda? columns are name and call-hits' long option names (nemo-dask "
        "call-hits -h)",
        f"{path}:2: column 6 (workers): --workers applies to the whole sheet; give it on the "
        "command line",
        f"{path}:2: column 8 (mode) repeats column 7"]
    with pytest.raises(SheetError, match="no column name"):
        read_sheet(_sheet(tmp_path / "n.tsv", "regions\tmotifs\tout", "r\tm\to"))
    with pytest.raises(SheetError, match="separated by tabs"):
        read_sheet(_sheet(tmp_path / "c.tsv", "name,regions,motifs,out", "a,r,m,o"))
    with pytest.raises(InputError, match="no rows"):
        read_sheet(_sheet(tmp_path / "e.tsv", "name\tregions\tmotifs\tout"))
    with pytest.raises(InputError, match="no such sheet"):
        read_sheet(tmp_path / "missing.tsv")


def test_bad_rows_each_get_their_line(tmp_path):
    path = _sheet(tmp_path / "RUNS.tsv", "name\tregions\tmotifs\tout\tmode",
                  "a\tr\tm\toa\tpp", "\tr\tm\tob\tpp", "a\tr\tm\toc\tpp", "d\tr\tm\tod",
                  "e\tr\t\toe\txx", "f\tr\tm\tof\tpp\textra")
    _, rows = read_sheet(path)
    assert _problems(rows) == [
        f"{path}:3: column name is empty; give each run a name",
        f"{path}:4: run name 'a' is also the name of {path}:2; names must be unique",
        f"{path}:5: 4 cells, but the header has 5 columns (cells are separated by tabs; leave a "
        "cell empty for the default)",
        f"{path}:6: column mode: argument -M/--mode: invalid choice: 'xx' (choose from 'pp', "
        "'ph', 'hp', 'hh')",
        f"{path}:6: no motifs (give the column motifs, or -m on the command line for every row)",
        f"{path}:7: 6 cells, but the header has 5 columns (cells are separated by tabs; leave a "
        "cell empty for the default)"]
    assert not rows[0].problems
