"""The attacks of issue 30 on a run and its output directory: each ends in one line (or a
resume that computes the damaged blocks again, saying which and why), never in wrong hits with
exit 0, and a rerun after repair gives the same hits."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from nemo_dask.calling.api import call_hits
from nemo_dask.dataset import scan_hits, scan_qc
from nemo_dask.errors import CorruptDataError, InputError, OutputExistsError, OutputLockedError
from nemo_dask.finemo.export import export
from nemo_dask.regions.convert import convert_npz
from nemo_dask.storage.lock import OutputLock
from nemo_dask.storage.temporary import temporary_name

distributed = pytest.importorskip("distributed")

SORT = ["peak_id", "motif_id", "hit_start"]
BLOCK = 4  # 24 regions: 6 blocks


def _run(regions, modisco_h5, out, threads_client, **kw):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = call_hits(regions, modisco_h5, out, client=threads_client, progress=False,
                           **({"block_size": BLOCK} | kw))
    lines = [str(w.message) for w in record if "No peak region data" not in str(w.message)]
    return result, lines


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_npz, modisco_h5, threads_client) -> tuple[Path, pl.DataFrame]:
    out = tmp_path_factory.mktemp("ref") / "out"
    _run(tiny_npz, modisco_h5, out, threads_client)
    return out, scan_hits(out).collect().sort(SORT)


@pytest.fixture()
def run(tmp_path, reference) -> Path:
    """A finished run to attack (a copy of the reference)."""
    out = tmp_path / "out"
    shutil.copytree(reference[0], out)
    return out


def _flip_page(path: Path) -> None:
    """Flip 30 bytes inside the first data page of a column: the footer still reads."""
    meta = pq.read_metadata(path)
    offset = meta.row_group(0).column(3).data_page_offset
    data = bytearray(path.read_bytes())
    for i in range(30):
        data[offset + 20 + i] ^= 0xFF
    path.write_bytes(bytes(data))
    assert pq.read_metadata(path).num_rows == meta.num_rows


def test_a_missing_chunk_stops_the_run_at_its_first_read(tmp_path, tiny_npz, modisco_h5,
                                                         threads_client, monkeypatch):
    from nemo_dask.regions.store import Regions

    store = tmp_path / "r.zarr"
    convert_npz(tiny_npz, store, chunk_size=8, progress=False)
    (store / "contributions" / "c" / "1" / "0" / "0").unlink()
    reads: list[tuple[int, int]] = []
    original = Regions.read_block

    def counting(self, start, stop):
        reads.append((start, stop))
        return original(self, start, stop)

    monkeypatch.setattr(Regions, "read_block", counting)
    with pytest.raises(CorruptDataError) as err:
        _run(store, modisco_h5, tmp_path / "out", threads_client, retries=2)
    assert str(err.value).startswith(f"{store}: array 'contributions' chunk 1 "
                                     "(contributions/c/1/0/0, regions 8-15) is missing")
    # Found by the first task that read it: no block is read twice (dask retries a task that
    # raises, here twice on each worker, before giving up).
    assert (8, 12) in reads or (12, 16) in reads
    assert max(reads.count(r) for r in reads) == 1, reads
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["complete"] is False
    assert not {"2", "3"} & set(manifest["blocks"])


def test_corrupt_page_and_swapped_partition_are_refused_then_recomputed(run, reference,
                                                                       tiny_npz, modisco_h5,
                                                                       threads_client, tmp_path):
    _flip_page(run / "hits" / "part-000002.parquet")
    for table in ("hits", "qc"):  # another block's valid partitions copied over block 4
        shutil.copy(run / table / "part-000001.parquet", run / table / "part-000004.parquet")
    # Every reader refuses the dataset, naming the file.
    with pytest.raises(CorruptDataError, match=r"hits/part-000002.parquet is not the file"):
        scan_hits(run)
    with pytest.raises(CorruptDataError, match=r"qc/part-000004.parquet is not the file"):
        scan_qc(run)
    with pytest.raises(CorruptDataError, match=r"part-00000[24].parquet is not the file"):
        export(run, tmp_path / "exp")
    assert not (tmp_path / "exp").exists() or not os.listdir(tmp_path / "exp")
    # A resume trusts neither: one line each, and the hits are the reference's again.
    result, lines = _run(tiny_npz, modisco_h5, run, threads_client)
    assert result.n_skipped == 4
    assert lines == [
        "block 2 (regions 8-11) is computed again: its hits partition was changed after it was "
        "written (its SHA-256 is not the manifest's)",
        "block 4 (regions 16-19) is computed again: its hits partition belongs to another block "
        "(hits of block 1, regions 4-7)"]
    assert scan_hits(run).collect().sort(SORT).equals(reference[1])
    assert export(run, tmp_path / "exp").n_hits == reference[1].height


def test_blocks_finished_after_the_last_manifest_are_checked_page_by_page(run, reference,
                                                                         tiny_npz, modisco_h5,
                                                                         threads_client):
    """A driver killed after its tasks wrote partitions but before it recorded them."""
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.update(complete=False, blocks={k: v for k, v in manifest["blocks"].items()
                                            if k in ("0", "1")})
    (run / "manifest.json").write_text(json.dumps(manifest))
    _flip_page(run / "qc" / "part-000003.parquet")
    result, lines = _run(tiny_npz, modisco_h5, run, threads_client)
    assert result.n_skipped == 5
    assert len(lines) == 1 and lines[0].startswith(
        "block 3 (regions 12-15) is computed again: its qc partition a data page is damaged"), lines
    assert scan_hits(run).collect().sort(SORT).equals(reference[1])


def test_an_edited_block_size_keeps_the_recorded_layout(run, reference, tiny_npz, modisco_h5,
                                                        threads_client, tmp_path):
    params = json.loads((run / "parameters.json").read_text())
    params["nemo_dask"]["block_size"] = 10
    (run / "parameters.json").write_text(json.dumps(params))
    result, lines = _run(tiny_npz, modisco_h5, run, threads_client, block_size=None)
    assert (result.n_blocks, result.n_skipped) == (6, 6)
    assert lines == [f"{run}/parameters.json records blocks of 10 regions (6 blocks), but the "
                     "run is laid out in blocks of 4 (6 blocks); parameters.json is rewritten "
                     "to say so"]
    assert json.loads((run / "parameters.json").read_text())["nemo_dask"]["block_size"] == BLOCK
    done = export(run, tmp_path / "exp")
    assert (done.n_hits, done.n_regions) == (reference[1].height, 24)
    # Without the manifest, the partitions' own stamps give the layout.
    os.unlink(run / "manifest.json")
    params["nemo_dask"]["block_size"] = 10
    (run / "parameters.json").write_text(json.dumps(params))
    with pytest.raises(CorruptDataError, match="manifest.json is missing"):
        scan_hits(run)
    result, _ = _run(tiny_npz, modisco_h5, run, threads_client, block_size=None)
    assert (result.n_blocks, result.n_skipped) == (6, 6)
    assert scan_hits(run).collect().sort(SORT).equals(reference[1])


def test_partitions_of_another_layout_are_removed(run, reference, tiny_npz, modisco_h5, threads_client):
    for table in ("hits", "qc"):
        shutil.copy(run / table / "part-000001.parquet", run / table / "part-000017.parquet")
    with pytest.raises(CorruptDataError, match="part-000017.parquet is not in the manifest"):
        scan_hits(run)
    result, lines = _run(tiny_npz, modisco_h5, run, threads_client)
    assert result.n_skipped == 6
    assert lines == [f"{run}: removed 2 partitions of blocks outside this run's layout of 6 "
                     "blocks (hits/part-000017.parquet, qc/part-000017.parquet)"]
    assert scan_hits(run).collect().sort(SORT).equals(reference[1])


@pytest.mark.parametrize("same_options", [True, False])
def test_a_second_driver_never_writes_into_a_held_out(run, reference, tiny_npz, modisco_h5,
                                                      threads_client, same_options):
    before = {p.name: p.stat().st_mtime_ns for p in (run / "hits").iterdir()}
    extra = {} if same_options else {"max_steps": 50}
    with OutputLock(run, "call-hits"):  # another driver's run in progress
        for overwrite in (False, True):
            with pytest.raises(OutputLockedError, match=rf"{run} is being written by another "
                               r"run \(call-hits of .*, pid \d+, started "):
                _run(tiny_npz, modisco_h5, run, threads_client, overwrite=overwrite, **extra)
    assert {p.name: p.stat().st_mtime_ns for p in (run / "hits").iterdir()} == before
    # Solver-only options are part of the run: once the lock is free, a resume is refused.
    if not same_options:
        with pytest.raises(OutputExistsError, match="parameters differ: max_steps 10000 -> 50"):
            _run(tiny_npz, modisco_h5, run, threads_client, **extra)


def test_leftovers_of_a_killed_conversion_and_start_are_cleaned(tmp_path, reference, tiny_npz,
                                                                modisco_h5, threads_client,
                                                                monkeypatch):
    from nemo_dask.calling import execute

    out = tmp_path / "out"
    # A conversion killed beside OUT leaves its temporary store there.
    leftover = tmp_path / temporary_name("out.regions.zarr")
    convert_npz(tiny_npz, leftover, chunk_size=8, progress=False)
    # A Ctrl-C while the cluster starts: OUT holds the converted store, claimed by the run.
    with monkeypatch.context() as m:
        m.setattr(execute, "cluster_has_gpus", lambda *a: (_ for _ in ()).throw(
            KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            _run(tiny_npz, modisco_h5, out, threads_client)
    assert not leftover.exists()
    assert sorted(os.listdir(out)) == ["manifest.json", "regions.zarr"]
    # The rerun recognises OUT as its own, reuses the store and finishes.
    store_made = (out / "regions.zarr" / "zarr.json").stat().st_mtime_ns
    result, _ = _run(tiny_npz, modisco_h5, out, threads_client)
    assert result.n_skipped == 0 and sorted(os.listdir(tmp_path)) == ["out"]
    assert (out / "regions.zarr" / "zarr.json").stat().st_mtime_ns == store_made
    assert scan_hits(out).collect().sort(SORT).equals(reference[1])


def test_an_older_start_up_leftover_is_refused_then_overwritten(tmp_path, reference, tiny_npz,
                                                                modisco_h5, threads_client):
    """OUT holding only regions.zarr (an older version killed while starting): refused with
    advice that works -- --overwrite once crashed with ModuleNotFoundError here."""
    out = tmp_path / "out"
    shutil.copytree(reference[0] / "regions.zarr", out / "regions.zarr")
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        _run(tiny_npz, modisco_h5, out, threads_client)
    _run(tiny_npz, modisco_h5, out, threads_client, overwrite=True)
    assert scan_hits(out).collect().sort(SORT).equals(reference[1])
    # A directory whose hits/ is a user's: --overwrite would refuse, so it is not suggested.
    foreign = tmp_path / "foreign"
    (foreign / "hits").mkdir(parents=True)
    (foreign / "hits" / "notes.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match=r"--overwrite would not help: .*hits is not "
                       "nemo_dask's own output") as err:
        _run(tiny_npz, modisco_h5, foreign, threads_client)
    assert "pass --overwrite" not in str(err.value)


def test_export_refuses_a_run_rewritten_while_it_reads(run, tmp_path, monkeypatch):
    """call-hits --overwrite into OUT while export reads it: one line, nothing exported."""
    from nemo_dask.finemo import export as ex

    original = ex._write_qc

    def overwritten_meanwhile(out, tmp, max_rows):
        shutil.rmtree(out / "qc")  # what another run's --overwrite does
        manifest = json.loads((out / "manifest.json").read_text())
        (out / "manifest.json").write_text(json.dumps(manifest | {"fingerprint": "other"}))
        return original(out, tmp, max_rows)

    monkeypatch.setattr(ex, "_write_qc", overwritten_meanwhile)
    with pytest.raises(InputError, match=rf"{run} changed while export read it .*nothing was "
                       "exported"):
        export(run, tmp_path / "exp")
    assert not [n for n in os.listdir(tmp_path / "exp") if not n.startswith(".")]


def test_export_of_a_run_being_written_names_its_writer(run, tmp_path):
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps(manifest | {"complete": False}))
    with pytest.raises(InputError, match="incomplete .* resume it with call-hits"):
        export(run, tmp_path / "exp")
    with OutputLock(run, "call-hits") as lock:
        with pytest.raises(InputError, match=rf"incomplete \(6 of 6 blocks finished\); it is "
                           rf"being written now \(call-hits of .*pid {lock.record['pid']}"):
            export(run, tmp_path / "exp")


def test_parameters_record_the_batch_the_workers_used(reference):
    section = json.loads((reference[0] / "parameters.json").read_text())["nemo_dask"]
    assert section["batch_size_resolved"] == {"cpu": [16]}  # one torch thread: 16 regions
    manifest = json.loads((reference[0] / "manifest.json").read_text())
    assert {(b["device"], b["batch_size"]) for b in manifest["blocks"].values()} == {("cpu", 16)}


def test_identity_covers_every_option_that_can_change_a_hit(modisco_h5):
    from nemo_dask.calling.identity import run_identity
    from nemo_dask.motifs import load_motifs
    from nemo_dask.params import MotifParams, SolverParams

    motifs, mp = load_motifs(modisco_h5), MotifParams()

    def solver(**kw):
        return run_identity({"content": "x"}, None, mp, motifs, SolverParams(**kw))["solver"]

    base = solver()
    for option, value in (("max_steps", 50), ("step_size_max", 2.0), ("step_size_min", 0.01),
                          ("convergence_tol", 0.01), ("step_adjust", 0.5), ("eps", 0.5),
                          ("post_filter", False), ("sqrt_transform", True), ("exact", True),
                          ("compile_optimizer", True), ("global_scale", 2.0)):
        assert solver(**{option: value}) != base, option
    for option, value in (("batch_size", 7), ("check_every", 5)):  # bit-identical results
        assert solver(**{option: value}) == base, option
    assert "compile_optimizer" not in base and "global_scale" not in base  # old runs resume
    assert np.isfinite(len(base))


def test_a_garbage_chunk_ends_the_cli_in_one_line(tmp_path, tiny_npz, modisco_h5, capfd):
    """Issue 29 16(a) as users meet it: the embedded cluster, worker processes, the CLI."""
    from nemo_dask.cli import main

    store = tmp_path / "r.zarr"
    convert_npz(tiny_npz, store, chunk_size=8, progress=False)
    chunk = store / "contributions" / "c" / "2" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:40] + b"garbage" * 20)
    capfd.readouterr()
    code = main(["call-hits", "-r", str(store), "-m", str(modisco_h5), "-o", str(tmp_path / "o"),
                 "--workers", "1", "--no-progress", "--block-size", "4"])
    err = capfd.readouterr().err
    lines = [x for x in err.splitlines() if x.strip() and
             not x.startswith("nemo-dask: local cluster")]
    assert code == 2 and "Traceback" not in err, err
    assert lines == [f"nemo-dask call-hits: error: {store}: array 'contributions' chunk 2 "
                     "(contributions/c/2/0/0, regions 16-23) is damaged: it does not decode "
                     "(RuntimeError: error during blosc decompression: -1); the regions store is "
                     "damaged: convert the inputs again (nemo-dask convert ... --overwrite) or "
                     "restore the store from a copy"], err


def test_the_recorded_cuda_batch_is_what_the_stream_uses(modisco_h5, monkeypatch):
    """On a GPU (patched here: no device on this machine) the batch recorded per block is the
    one fit_stream would take from the free memory, not a default no GPU run uses."""
    import torch

    from nemo_dask.motifs import load_motifs
    from nemo_dask.params import SolverParams
    from nemo_dask.solver.kernels import prepare_motifs
    from nemo_dask.solver.service import stream_batch
    from nemo_dask.solver.stream import cuda_batch_size

    prepared = prepare_motifs(load_motifs(modisco_h5), torch.device("cpu"), False)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (40 << 30, 80 << 30))
    cuda = torch.device("cuda")
    m = prepared.cwms.shape[0]
    assert stream_batch(SolverParams(), cuda, 1, prepared, 1000) == cuda_batch_size(
        40 << 30, m, 1000 - prepared.width + 1, 1000) != 2000
    assert stream_batch(SolverParams(batch_size=77), cuda, 1, prepared, 1000) == 77
    assert stream_batch(SolverParams(), torch.device("cpu"), 3, prepared, 1000) == 48
