"""Many runs on one cluster (``call-hits --runs``, ``nemo_dask.call_hits_many``): each run is
exactly its solo run, a bad row stops the sheet before anything starts, a run that fails while
running ends alone, a killed driver's sheet resumes every run."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nemo_dask.calling.api import call_hits
from nemo_dask.calling.many import call_hits_many
from nemo_dask.cli import main
from nemo_dask.dataset import scan_hits
from nemo_dask.regions.convert import convert_npz
from nemo_dask.storage.lock import OutputLock

distributed = pytest.importorskip("distributed")

SORT = ["peak_id", "motif_id", "hit_start"]
#: Three runs of one sheet: (name, extra columns, call_hits keywords of the same run alone).
#: The first two get the default q-values (the flank null), the third a decoy null.
RUNS = [("pp", {}, {}), ("hh", {"mode": "hh"}, {"mode": "hh"}),
        ("l08", {"global-lambda": "0.8", "null": "decoy"},
         {"lambda_default": 0.8, "null": "decoy"})]


@pytest.fixture(scope="module")
def client(threads_client):
    return threads_client


def _write_sheet(path: Path, rows: list[dict[str, str]]) -> Path:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["\t".join(columns)] + ["\t".join(r.get(c, "") for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _sheet_of_runs(folder: Path, tiny_npz: Path, modisco_h5: Path) -> Path:
    shutil.copy(tiny_npz, folder / "r.npz")
    shutil.copy(modisco_h5, folder / "m.h5")
    return _write_sheet(folder / "RUNS.tsv", [
        {"name": name, "regions": "r.npz", "motifs": "m.h5", "out": f"out_{name}",
         "block-size": "4", **extra} for name, extra, _ in RUNS])


def _files(out: Path) -> dict[str, bytes]:
    """Every partition of OUT: hits, QC, and a run's null hits and q-values."""
    return {f"{d}/{p.name}": p.read_bytes() for d in ("hits", "qc", "null", "qvalues")
            if (out / d).is_dir() for p in sorted((out / d).iterdir())}


def _quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


@pytest.fixture(scope="module")
def solo(tmp_path_factory, tiny_npz, modisco_h5, client) -> dict[str, pl.DataFrame]:
    """Each run of RUNS alone: its hits."""
    folder = tmp_path_factory.mktemp("solo")
    hits = {}
    for name, _, keywords in RUNS:
        out = folder / name
        _quiet(call_hits, tiny_npz, modisco_h5, out, client=client, block_size=4,
               progress=False, **keywords)
        hits[name] = scan_hits(out).collect().sort(SORT)
    return hits


def test_each_run_of_a_sheet_is_exactly_its_solo_run(tmp_path, tiny_npz, modisco_h5, client,
                                                     capfd, monkeypatch):
    from nemo_dask.calling import execute

    sheet = _sheet_of_runs(tmp_path, tiny_npz, modisco_h5)
    calls = []
    original = execute.execute
    monkeypatch.setattr(execute, "execute",
                        lambda *a, **k: calls.append(original(*a, **k)) or calls[-1])
    result = _quiet(call_hits_many, sheet, client=client, progress=False)
    [outcomes] = calls
    assert result.ok and [r.status for r in result.runs] == ["done"] * 3
    # The worker takes the runs' blocks run after run (not interleaved: each switch of run
    # ends a solver stream), all through one scheduler loop.
    starts = [sorted(s["started_at"] for s in o.summaries) for o in outcomes]
    assert [len(s) for s in starts] == [6, 6, 6]
    assert starts[0][-1] < starts[2][0] and starts[0][0] < starts[1][0] < starts[2][0]
    log = [line for line in capfd.readouterr().err.splitlines() if " done: " in line]
    assert len(log) == 3 and log[1].startswith(f"nemo-dask: hh ({sheet}:3) done: ")
    summary = pl.read_csv(tmp_path / "RUNS.summary.tsv", separator="\t")
    assert summary.columns == ["name", "status", "hits", "regions", "blocks_solved",
                               "blocks_skipped", "seconds", "out", "error"]
    assert summary["blocks_solved"].to_list() == [6, 6, 6]
    assert summary["regions"].to_list() == [24, 24, 24]
    for (name, _, keywords), report in zip(RUNS, result.runs, strict=True):
        out = tmp_path / f"out_{name}"
        assert report.out == str(out)
        kept = tmp_path / f"sheet_{name}"
        os.rename(out, kept)
        # The same run alone, into the same OUT, with the same options (not through a sheet).
        _quiet(call_hits, tmp_path / "r.npz", tmp_path / "m.h5", out, client=client,
               block_size=4, progress=False, **keywords)
        assert _files(kept) == _files(out), name  # bit for bit, partition by partition
        assert any(k.startswith("qvalues/") for k in _files(out))  # each got its q-value pass
        assert (name == "l08") == any(k.startswith("null/") for k in _files(out))
        assert scan_hits(kept).collect().equals(scan_hits(out).collect())  # hit_qvalue too
        manifests = [json.loads((o / "manifest.json").read_text()) for o in (kept, out)]
        assert manifests[0]["qvalues"] == manifests[1]["qvalues"]
        assert json.loads((kept / "parameters.json").read_text()) == \
            json.loads((out / "parameters.json").read_text())
        assert (kept / "motifs.parquet").read_bytes() == (out / "motifs.parquet").read_bytes()
        assert summary.filter(pl.col("name") == name)["hits"].item() == \
            scan_hits(out).collect().height


def test_blocks_of_different_runs_on_one_solver_get_their_own_motifs_and_params(
        regions_npz, modisco_h5):
    """Blocks of runs with other motifs and parameters, queued in turn to one worker's solver,
    are each solved as alone; each motif set is prepared once however they alternate."""
    import torch

    import nemo_dask.solver.kernels as kernels
    from nemo_dask.motifs import load_motifs
    from nemo_dask.params import MotifParams, SolverParams
    from nemo_dask.solver.service import SolverService
    from nemo_dask.solver.stream import fit_block

    runs = {"pp": (MotifParams(), SolverParams()),
            "hh": (MotifParams(mode="hh", lambda_default=0.8),
                   SolverParams(use_hypothetical=True))}
    motifs = {k: load_motifs(modisco_h5, mp) for k, (mp, _) in runs.items()}
    seqs, contribs = regions_npz["sequences"], regions_npz["contributions"]
    blocks = [(k, s) for s in range(0, 24, 6) for k in runs]  # pp, hh, pp, hh, ...
    prepared = []
    original = kernels.prepare_motifs

    def counting(*args, **kwargs):
        prepared.append(1)
        return original(*args, **kwargs)

    service = SolverService()
    kernels.prepare_motifs = counting
    try:
        futures = [service.submit(k, seqs[s:s + 6], contribs[s:s + 6], s, motifs=motifs[k],
                                  device=torch.device("cpu"), params=runs[k][1], threads=1)[0]
                   for k, s in blocks]
        results = [f.result(timeout=120)[0] for f in futures]
    finally:
        kernels.prepare_motifs = original
    assert len(prepared) == 2
    for (k, s), got in zip(blocks, results, strict=True):
        alone = fit_block(seqs[s:s + 6], contribs[s:s + 6], motifs[k], params=runs[k][1],
                          threads=1, region_offset=s)
        assert got.hits.equals(alone.hits) and got.qc.equals(alone.qc), (k, s)


def test_bad_rows_stop_the_sheet_before_anything_starts(tmp_path, tiny_npz, modisco_h5, client,
                                                        capsys, monkeypatch):
    from nemo_dask.calling import execute

    sheet = _sheet_of_runs(tmp_path, tiny_npz, modisco_h5)
    text = sheet.read_text().splitlines()
    text[2] = text[2].replace("m.h5", "missing.h5")  # line 3: its motifs do not exist
    text.append("bad\tr.npz\tm.h5\tout_bad\t4\tpp\tx\t")  # line 5: global-lambda 'x'
    sheet.write_text("\n".join(text) + "\n")
    with monkeypatch.context() as m:
        m.setattr(execute, "connected", lambda *a: pytest.fail("a cluster was started"))
        rc = main(["call-hits", "--runs", str(sheet), "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2
    assert err[0].startswith(f"nemo-dask call-hits: error: {sheet}:3: ") and "missing.h5" in err[0]
    assert err[1] == (f"{sheet}:5: column global-lambda: argument -l/--global-lambda: invalid "
                      "float value: 'x'")
    assert err[2] == f"(2 problems in {sheet}; nothing was run)"
    assert sorted(os.listdir(tmp_path)) == ["RUNS.tsv", "m.h5", "r.npz"]

    # OUTs are checked before any is touched: one held by a live run, one holding another run.
    _write_sheet(sheet, [{"name": n, "regions": "r.npz", "motifs": "m.h5", "out": f"out_{n}",
                          "block-size": "4"} for n in ("a", "b", "c")])
    _quiet(call_hits, tiny_npz, modisco_h5, tmp_path / "out_c", block_size=4, max_steps=50,
           client=client, progress=False)
    before = sorted(os.listdir(tmp_path / "out_c"))
    with OutputLock(tmp_path / "out_a", "call-hits"), monkeypatch.context() as m:
        m.setattr(execute, "connected", lambda *a: pytest.fail("a cluster was started"))
        rc = main(["call-hits", "--runs", str(sheet), "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{sheet}:2: {tmp_path / 'out_a'} is being written by another run" in err
    assert f"{sheet}:4: {tmp_path / 'out_c'} holds the results of a different run " \
           "(parameters differ: max_steps 50 -> 10000)" in err
    assert not (tmp_path / "out_b").exists() and sorted(os.listdir(tmp_path / "out_c")) == before


def test_an_unwritable_out_is_refused_up_front_as_call_hits_says_it(tmp_path, tiny_npz,
                                                                    modisco_h5, mounts,
                                                                    capsys, monkeypatch):
    from nemo_dask.calling import execute

    sheet = _sheet_of_runs(tmp_path, tiny_npz, modisco_h5)
    ro = mounts("1m", read_only=True)
    text = sheet.read_text().splitlines()
    text[2] = text[2].replace("out_hh", f"{ro}/out")  # line 3
    sheet.write_text("\n".join(text) + "\n")
    with monkeypatch.context() as m:
        m.setattr(execute, "connected", lambda *a: pytest.fail("a cluster was started"))
        rc = main(["call-hits", "--runs", str(sheet), "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and len(err) == 2
    # The storage-fault line call-hits gives alone (storage/faults.py), naming the row.
    assert err[0].startswith(f"nemo-dask call-hits: error: {sheet}:3: {ro}/out: read-only "
                             "file system; no block was written")
    assert "make it writable" in err[0]
    assert sorted(os.listdir(tmp_path)) == ["RUNS.tsv", "fs0", "m.h5", "r.npz"]


def test_a_run_whose_store_is_deleted_mid_run_fails_alone(tmp_path, tiny_npz, modisco_h5,
                                                          client, solo, monkeypatch):
    from nemo_dask.calling import execute

    sheet = _sheet_of_runs(tmp_path, tiny_npz, modisco_h5)
    convert_npz(tiny_npz, tmp_path / "r3.zarr", chunk_size=8, progress=False)
    rows = sheet.read_text().splitlines()
    rows.insert(3, "gone\tr3.zarr\tm.h5\tout_gone\t4\t\t\t")  # the third run
    sheet.write_text("\n".join(rows) + "\n")
    original = execute.end_of_run

    def delete_after_first(cl, plan, **kw):  # the first run is done; the third has not started
        original(cl, plan, **kw)
        if plan.out.name == "out_pp":
            shutil.rmtree(tmp_path / "r3.zarr")

    monkeypatch.setattr(execute, "end_of_run", delete_after_first)
    result = _quiet(call_hits_many, sheet, client=client, progress=False)
    assert not result.ok
    assert [r.status for r in result.runs] == ["done", "done", "failed", "done"]
    failed = result.runs[2]
    assert failed.name == "gone" and "r3.zarr" in failed.error and "\n" not in failed.error
    for name, hits in solo.items():
        assert scan_hits(tmp_path / f"out_{name}").collect().sort(SORT).equals(hits), name
    summary = pl.read_csv(tmp_path / "RUNS.summary.tsv", separator="\t")
    assert summary.row(2, named=True)["status"] == "failed"
    assert summary.row(2, named=True)["error"] == failed.error
    # Its OUT was given back and says what finished: rerunning after the repair resumes it.
    assert not (tmp_path / "out_gone" / ".nemo-dask.lock").exists()
    monkeypatch.undo()
    convert_npz(tiny_npz, tmp_path / "r3.zarr", chunk_size=8, progress=False)
    again = _quiet(call_hits_many, sheet, client=client, progress=False)
    assert again.ok and [r.n_blocks_skipped for r in again.runs] == [6, 6, 0, 6]
    assert scan_hits(tmp_path / "out_gone").collect().sort(SORT).equals(solo["pp"])


def _fill(folder: Path) -> Path:
    """Fill ``folder``'s file system to the last byte; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    with contextlib.suppress(OSError), open(filler, "ab") as f:
        while True:  # the last partial pages
            f.write(b"\0" * 512)
            f.flush()
    return filler


def test_a_run_whose_out_fills_up_fails_alone_in_one_line(tmp_path, tiny_npz, modisco_h5,
                                                          client, solo, mounts, monkeypatch):
    from nemo_dask.calling import execute

    sheet = _sheet_of_runs(tmp_path, tiny_npz, modisco_h5)
    fs = mounts("1m")
    rows = sheet.read_text().splitlines()
    rows.insert(3, f"full\tr.npz\tm.h5\t{fs}/out\t4\t\t\t")  # the third run, on its own disk
    sheet.write_text("\n".join(rows) + "\n")
    original, filled = execute.end_of_run, []

    def fill_after_first(cl, plan, **kw):  # planned (OUT written), no block of it solved yet
        original(cl, plan, **kw)
        if plan.out.name == "out_pp":
            filled.append(_fill(fs))

    monkeypatch.setattr(execute, "end_of_run", fill_after_first)
    result = _quiet(call_hits_many, sheet, client=client, progress=False)
    assert [r.status for r in result.runs] == ["done", "done", "failed", "done"]
    line = result.runs[2].error
    # The one line call-hits says alone (storage/faults.py), with what this run kept.
    assert line.startswith(f"{fs}/out/") and "/part-" in line and "\n" not in line
    assert "no space left on device" in line and "free of 1.00 MiB" in line
    assert " of 6 blocks (" in line and "run the same command again: it resumes" in line
    for name, hits in solo.items():
        assert scan_hits(tmp_path / f"out_{name}").collect().sort(SORT).equals(hits), name
    for sub in ("hits", "qc"):  # nothing half-written
        kept = os.listdir(fs / "out" / sub) if (fs / "out" / sub).exists() else []
        assert all(n.startswith("part-") for n in kept), kept
    filled[0].unlink()
    monkeypatch.undo()
    again = _quiet(call_hits_many, sheet, client=client, progress=False)
    assert again.ok and [r.n_blocks_skipped for r in again.runs][:2] == [6, 6]
    assert scan_hits(fs / "out").collect().sort(SORT).equals(solo["pp"])


class _Scheduler:
    """A fake client whose scheduler answers with the views given, one per look."""

    def __init__(self, *views: dict) -> None:
        self.views = list(views)

    def run_on_scheduler(self, fn, *args):  # noqa: ANN001, ANN201
        return self.views.pop(0)


def test_a_memory_death_is_blamed_on_one_run_of_a_sheet(monkeypatch):
    from nemo_dask.calling import deaths
    from nemo_dask.calling.deaths import DeathWatch

    clock = [0.0]
    monkeypatch.setattr(deaths.time, "monotonic", lambda: clock[0])
    mb, a, b = 2**20, "nemo-dask-c-a-block-", "nemo-dask-c-b-block-"
    near = {"workers": {"w1": (400 * mb, 390 * mb)}, "suspicious": {}, "paused": []}
    # w1 died near its limit holding a block of each run; its replacement w2 is fresh.
    both = {"workers": {"w2": (400 * mb, 60 * mb)}, "paused": [],
            "suspicious": {f"{a}1": 1, f"{b}0": 1}}
    again = {"workers": {"w3": (400 * mb, 60 * mb)}, "paused": [],
             "suspicious": {f"{a}1": 2, f"{b}0": 1}}
    watch = DeathWatch(_Scheduler(near, both, {**near, "suspicious": both["suspicious"]},
                                  again), "nemo-dask-c-", {}, None)
    watch.watch(a, {0: 16, 1: 16}, lambda n: n * 1000)
    watch.watch(b, {0: 350}, lambda n: n * 100_000)
    try:
        assert watch.look() == []
        clock[0] = 3.0
        [err] = watch.look()  # the run whose block needs the most: b's, not a's too
        assert err.run == b and "solving block 0 (350 regions)" in str(err)
        assert "of the 400.00 MiB worker limit" in str(err) and "\n" not in str(err)
        clock[0] = 6.0
        assert watch.look() == []  # each death is said once
        watch.forget(b)  # b ended; a's block dies again on its own
        clock[0] = 9.0
        [err] = watch.look()
        assert err.run == a and "solving block 1 (16 regions)" in str(err)
    finally:
        watch.close()


def test_a_memory_death_ends_its_run_only(tmp_path, tiny_npz, modisco_h5, client, solo,
                                        monkeypatch):
    from nemo_dask.calling import execute
    from nemo_dask.calling.deaths import DeathWatch, WorkerMemoryError

    sheet = _sheet_of_runs(tmp_path, tiny_npz, modisco_h5)
    look, said = DeathWatch.look, []

    def hh_dies(self):  # the watch's word when a worker dies solving the second run's block
        if said:
            return look(self)
        hh = list(self.runs)[1]  # watched in the sheet's order: pp, hh, l08
        said.append(hh)
        err = WorkerMemoryError("a worker was stopped at its memory limit while solving "
                                "block 0 (4 regions): ...")
        err.run = hh
        return [err]

    monkeypatch.setattr(execute.DeathWatch, "look", hh_dies)
    result = _quiet(call_hits_many, sheet, client=client, progress=False)
    assert [r.status for r in result.runs] == ["done", "failed", "done"]
    assert result.runs[1].error.startswith("a worker was stopped at its memory limit")
    for name in ("pp", "l08"):
        assert scan_hits(tmp_path / f"out_{name}").collect().sort(SORT).equals(solo[name])
    monkeypatch.undo()  # (more memory:) the sheet again finishes it
    again = _quiet(call_hits_many, sheet, client=client, progress=False)
    assert again.ok and [r.n_blocks_skipped for r in again.runs] == [6, 0, 6]
    assert scan_hits(tmp_path / "out_hh").collect().sort(SORT).equals(solo["hh"])


def _cli(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nemo_dask", "call-hits", *args],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: cluster too


class _Killed(BaseException):
    """The driver stopping dead, as at a SIGKILL: no manifest is written on the way out."""


def test_a_driver_stopped_mid_sheet_rerun_resumes_every_run(tmp_path, tiny_npz, modisco_h5,
                                                            client, solo, monkeypatch):
    """In process (fast) what the next test does with a killed driver and its cluster."""
    from nemo_dask.calling import execute

    shutil.copy(tiny_npz, tmp_path / "r.npz")
    shutil.copy(modisco_h5, tmp_path / "m.h5")
    sheet = _write_sheet(tmp_path / "RUNS.tsv", [
        {"name": name, "regions": "r.npz", "motifs": "m.h5", "out": f"out_{name}",
         "block-size": "2", **extra} for name, extra, _ in RUNS])
    look = execute.DeathWatch.look

    def killed_in_second_run(self):
        parts = tmp_path / "out_hh" / "qc"
        if parts.exists() and len(list(parts.glob("part-*.parquet"))) >= 2:
            monkeypatch.setattr(execute, "record_progress", lambda *a, **k: None)
            raise _Killed
        return look(self)

    monkeypatch.setattr(execute.DeathWatch, "look", killed_in_second_run)
    with pytest.raises(_Killed):
        _quiet(call_hits_many, sheet, client=client, progress=False)
    summary = pl.read_csv(sheet.with_suffix(".summary.tsv"), separator="\t")
    assert summary["status"].to_list() == ["done", "stopped", "stopped"]
    manifest = json.loads((tmp_path / "out_hh" / "manifest.json").read_text())
    assert not manifest.get("complete")
    monkeypatch.undo()
    again = _quiet(call_hits_many, sheet, client=client, progress=False)
    assert again.ok
    skipped = [r.n_blocks_skipped for r in again.runs]
    assert skipped[0] == 12 and skipped[1] >= 2
    assert [r.n_blocks_skipped + r.n_blocks_solved for r in again.runs] == [12] * 3
    for name, hits in solo.items():
        assert scan_hits(tmp_path / f"out_{name}").collect().sort(SORT).equals(hits), name


@pytest.mark.slow  # two drivers, each starting a cluster (~15 s); the test above is in process
def test_a_killed_driver_rerun_resumes_every_run(tmp_path, tiny_npz, modisco_h5, solo):
    shutil.copy(tiny_npz, tmp_path / "r.npz")
    shutil.copy(modisco_h5, tmp_path / "m.h5")
    sheet = _write_sheet(tmp_path / "RUNS.tsv", [
        {"name": name, "regions": "r.npz", "motifs": "m.h5", "out": f"out_{name}",
         "block-size": "2", **extra} for name, extra, _ in RUNS])
    args = ("--runs", "RUNS.tsv", "--workers", "1", "--no-progress")
    proc = _cli(*args, cwd=tmp_path)
    parts = tmp_path / "out_hh" / "hits"
    deadline = time.monotonic() + 240
    while not (parts.exists() and len(list(parts.glob("*.parquet"))) >= 2):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no block of the second run finished"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its cluster, as a batch system would
    proc.wait()
    summary = pl.read_csv(sheet.with_suffix(".summary.tsv"), separator="\t")
    assert summary["status"].to_list()[1:] == ["pending", "pending"]
    proc = _cli(*args, cwd=tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "3 runs: 3 done" in out
    summary = pl.read_csv(sheet.with_suffix(".summary.tsv"), separator="\t")
    assert summary["status"].to_list() == ["done"] * 3
    skipped = summary["blocks_skipped"].to_list()
    assert skipped[0] == 12 and skipped[1] >= 2
    assert [a + b for a, b in zip(skipped, summary["blocks_solved"], strict=True)] == [12] * 3
    for name, hits in solo.items():
        assert scan_hits(tmp_path / f"out_{name}").collect().sort(SORT).equals(hits), name


def test_runs_given_as_mappings(tmp_path, tiny_npz, modisco_h5, client, solo, capfd):
    runs = [{"name": name, "regions": tiny_npz, "motifs": modisco_h5,
             "out": tmp_path / name, **extra} for name, extra, _ in RUNS[:2]]
    result = _quiet(call_hits_many, runs, client=client, progress=True,
                    defaults={"block-size": 4}, summary=tmp_path / "s.tsv")
    bar = capfd.readouterr().err
    # One bar over both runs' blocks (48 regions), saying how many runs have ended.
    assert "call-hits (2/2 runs)" in bar and "48/48" in bar
    assert result.ok and result.summary == str(tmp_path / "s.tsv")
    assert "2 runs: 2 done" in result.describe()
    for name, _, _ in RUNS[:2]:
        assert scan_hits(tmp_path / name).collect().sort(SORT).equals(solo[name])
    assert np.array_equal(pl.read_csv(tmp_path / "s.tsv", separator="\t")["blocks_solved"],
                          [6, 6])


def test_a_store_replaced_between_runs_on_one_cluster_is_read_anew(tmp_path, regions_npz,
                                                                   modisco_h5, client):
    """Workers keep stores open between tasks (and the chunks they last checked): a store
    converted again with other regions at the same path, for the next run on the same
    cluster, must be read as it is now."""
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    np.savez(first, **{k: v[:16] for k, v in regions_npz.items()})
    np.savez(second, **{k: v[16:32] for k, v in regions_npz.items()})
    store = tmp_path / "r.zarr"
    expected = {}
    for name, npz in (("a", first), ("b", second)):
        convert_npz(npz, tmp_path / f"{name}.zarr", chunk_size=8, progress=False)
        _quiet(call_hits, tmp_path / f"{name}.zarr", modisco_h5, tmp_path / f"alone_{name}",
               client=client, block_size=4, progress=False)
        expected[name] = scan_hits(tmp_path / f"alone_{name}").collect().sort(SORT)
    assert not expected["a"].equals(expected["b"])
    for name, npz in (("a", first), ("b", second)):
        convert_npz(npz, store, chunk_size=8, overwrite=True, progress=False)
        _quiet(call_hits_many, [{"name": name, "regions": store, "motifs": modisco_h5,
                                 "out": tmp_path / f"out_{name}", "block-size": 4}],
               client=client, progress=False)
        assert scan_hits(tmp_path / f"out_{name}").collect().sort(SORT).equals(expected[name])


def test_the_open_files_limit_is_raised_for_the_locks_or_the_sheet_refused(monkeypatch):
    import resource

    from nemo_dask.calling import many
    from nemo_dask.errors import InputError

    limits = {"now": (256, 1000)}
    monkeypatch.setattr(resource, "getrlimit", lambda what: limits["now"])
    monkeypatch.setattr(resource, "setrlimit", lambda what, v: limits.update(now=v))
    many._allow_open_files(100, "RUNS.tsv")  # 612 needed: soft raised to the hard limit
    assert limits["now"] == (1000, 1000)
    with pytest.raises(InputError, match=r"RUNS.tsv: 600 runs hold 600 locks at once, but this "
                       r"process may open at most 1000 files \(ulimit -Hn\); split the sheet "
                       "into sheets of at most 488 runs"):
        many._allow_open_files(600, "RUNS.tsv")


def test_a_sheets_default_blocks_are_sized_for_its_one_queue(tmp_path, data_dir, modisco_h5,
                                                             client):
    """Without --block-size the sheet's runs are blocked as one run of all their regions
    would be (plan.default_block_size's queue_regions): two runs of 350 regions get larger
    blocks than one run of 350 alone (22: test_execute)."""
    import json

    runs = [{"name": n, "regions": data_dir / "regions.npz", "motifs": modisco_h5,
             "out": tmp_path / n} for n in ("a", "b")]
    result = _quiet(call_hits_many, runs, client=client, progress=False)
    assert result.ok
    [size] = {json.loads((tmp_path / n / "parameters.json").read_text())["nemo_dask"]
              ["block_size"] for n in ("a", "b")}
    assert size > 22
    assert [r.n_blocks_solved for r in result.runs] == [-(-350 // size)] * 2
