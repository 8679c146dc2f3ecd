"""Waiting for workers, batch-system status, refused jobs, motifs read from OUT, manifest cost.

No batch system needed: status output is parsed from samples, and refused / never-running jobs
go through stand-in `qsub`/`qstat` commands (tests/test_slurm.py does the same on real SLURM).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from test_cluster import _fake_batch_system

from nemo_dask.calling.api import call_hits
from nemo_dask.calling.task import motifs_from_out
from nemo_dask.clusters import batch_status as bs
from nemo_dask.errors import InputError, WorkersUnavailableError
from nemo_dask.motifs import load_motifs, motifs_digest

distributed = pytest.importorskip("distributed")
pytest.importorskip("dask_jobqueue")


def test_squeue_states_reasons_and_never_runnable():
    states = bs.parse_squeue("11|PENDING|Resources\n12|PENDING|Priority\n13|RUNNING|None\n"
                             "14|PENDING|PartitionConfig\n15|COMPLETED|None\n")
    assert states["11"] == bs.JobState("11", "pending", "Resources", "PENDING", False)
    assert states["13"].state == "running" and states["13"].reason == ""
    assert states["14"].never and not states["12"].never
    assert states["15"].state == "ended"
    assert bs.summary([states["11"], states["11"]]) == "2 jobs pending (Resources)"
    assert bs.summary([states["13"], states["12"]]) == "1 job running, 1 pending (Priority)"
    assert bs.summary([]) == "no job in the queue"
    assert (bs.summary([states["12"], states["11"], states["12"]])
            == "3 jobs pending (2 Priority, 1 Resources)")


def test_pbs_lsf_sge_status_parsers():
    pbs = bs.parse_qstat_pbs(
        "Job Id: 101.server\n    job_state = Q\n    comment = Can Never Run: Insufficient "
        "amount of resource: ngpus\nJob Id: 102.server\n    job_state = R\n")
    assert pbs["101"].never and pbs["101"].state == "pending"
    assert pbs["102.server"].state == "running" and not pbs["102"].never
    lsf = bs.parse_bjobs("7|PEND|Not enough job slot(s)\n8|RUN|-\n9|EXIT|-\n")
    assert (lsf["7"].state, lsf["7"].reason) == ("pending", "Not enough job slot(s)")
    assert lsf["8"].state == "running" and lsf["9"].state == "ended"
    sge = bs.parse_qstat_sge("job-ID prior name user state\n------\n"
                             " 31 0.5 w u qw 01/01/2026 00:00:00 1\n"
                             " 32 0.5 w u Eqw 01/01/2026 00:00:00 1\n")
    assert sge["31"].state == "pending" and not sge["31"].never and sge["32"].never


def test_submission_error_keeps_the_batch_systems_words():
    err = RuntimeError("Command exited with non-zero exit code.\nExit code: 1\nCommand:\n"
                       "sbatch /tmp/x.sh\nstdout:\n\nstderr:\nsbatch: error: Invalid generic "
                       "resource (gres) specification\n\n")
    assert bs.submission_error(err) == ("sbatch: error: Invalid generic resource (gres) "
                                        "specification")


def test_motifs_are_rebuilt_from_out_and_checked(tmp_path, modisco_h5):
    from nemo_dask.calling.plan import _save_npy
    from nemo_dask.dataset import write_motifs

    motifs = load_motifs(modisco_h5)
    write_motifs(tmp_path, motifs.table)
    _save_npy(tmp_path / "motif_cwms.npy", motifs.cwms)
    again = motifs_from_out(str(tmp_path), motifs_digest(motifs))
    np.testing.assert_array_equal(again.cwms, motifs.cwms)
    np.testing.assert_array_equal(again.trim_masks, motifs.trim_masks)
    np.testing.assert_array_equal(again.lambdas, motifs.lambdas)
    assert again.table.equals(motifs.table)
    with pytest.raises(InputError, match="other motifs than this run's"):
        motifs_from_out(str(tmp_path), "0" * 64)


def test_manifest_is_not_rewritten_per_block_and_blocks_are_windowed(threads_client, tmp_path, tiny_npz, modisco_h5,
                                             monkeypatch):
    """Bytes written to manifest.json per block do not grow with the number of blocks (it was
    rewritten whole while blocks finished: quadratic over a long run)."""
    from nemo_dask.calling import execute, qvalues

    written: list[int] = []
    original = qvalues.write_manifest

    def counting(out, *args, **kwargs):
        original(out, *args, **kwargs)
        written.append((Path(out) / "manifest.json").stat().st_size)

    # (calling/qvalues.py writes the manifest of a planned run, wherever it is written from)
    monkeypatch.setattr(qvalues, "write_manifest", counting)
    # At most 5 blocks in flight: the rest are submitted as blocks finish.
    monkeypatch.setattr(execute, "MAX_BLOCKS_IN_FLIGHT", 5)
    per_block, hits = {}, {}
    for block_size in (12, 1):
        written.clear()
        result = call_hits(tiny_npz, modisco_h5, tmp_path / f"b{block_size}",
                           client=threads_client, block_size=block_size, progress=False)
        assert result.n_blocks == 24 // block_size == len(result.summaries)
        # planned, blocks finished, q-values computed: never per block
        assert len(written) == 3
        per_block[result.n_blocks] = sum(written) / result.n_blocks
        hits[block_size] = result.hits.collect().sort("peak_id", "start", "motif_id")
    assert per_block[24] <= per_block[2] * 1.5
    assert hits[1].select("peak_id", "start", "motif_id").equals(
        hits[12].select("peak_id", "start", "motif_id"))


def test_worker_wait_bounds_a_run_without_workers(tmp_path, tiny_npz, modisco_h5):
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as c, \
            distributed.Client(c) as client:
        t0 = time.monotonic()
        with pytest.raises(WorkersUnavailableError, match="no Dask worker connected within "
                           "--worker-wait 2 s"):
            call_hits(tiny_npz, modisco_h5, tmp_path / "out", client=client, worker_wait="2s",
                      progress=False)
        assert time.monotonic() - t0 < 60
    with pytest.raises(InputError, match="worker_wait"):
        call_hits(tiny_npz, modisco_h5, tmp_path / "o2", client=client, worker_wait="soon")


def _pbs_cli(tmp_path, tiny_npz, modisco_h5, *extra):
    return ["call-hits", "-r", str(tiny_npz), "-m", str(modisco_h5), "-o",
            str(tmp_path / "out"), "--cluster", "pbs", "--gpus-per-job", "0", "--job-cpu", "1",
            "--memory", "1GB", "--jobs", "1", "--shared-temp-directory", str(tmp_path / "tls"),
            "--no-progress", *extra]


def test_refused_job_ends_the_run_in_one_line(tmp_path, tiny_npz, modisco_h5, monkeypatch,
                                              capsys):
    import nemo_dask.cli as cli

    bin_dir = _fake_batch_system(tmp_path, "qsub", "qdel",
                                 refuse="qsub: Unknown resource Resource_List.ngpus")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    t0 = time.monotonic()
    rc = cli.main(_pbs_cli(tmp_path, tiny_npz, modisco_h5))
    err = capsys.readouterr().err
    assert rc == 2 and time.monotonic() - t0 < 60
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert lines == [ln for ln in lines if "refused the worker job: qsub: Unknown resource "
                     "Resource_List.ngpus" in ln] and len(lines) == 1, err
    assert "Traceback" not in err


def test_never_runnable_job_ends_the_run_and_is_cancelled(tmp_path, tiny_npz, modisco_h5,
                                                         monkeypatch, capsys):
    import nemo_dask.cli as cli

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "qsub").write_text("#!/usr/bin/env bash\necho 4242.server\n")
    (bin_dir / "qstat").write_text(
        "#!/usr/bin/env bash\necho 'Job Id: 4242.server'\necho '    job_state = Q'\n"
        "echo '    comment = Can Never Run: Insufficient amount of resource: ncpus'\n")
    (bin_dir / "qdel").write_text(f"#!/usr/bin/env bash\necho \"$@\" >> {tmp_path}/qdel.log\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    rc = cli.main(_pbs_cli(tmp_path, tiny_npz, modisco_h5))
    err = capsys.readouterr().err
    assert rc == 2
    assert "worker job 4242.server can never start: the batch system keeps it pending" in err and "Can Never Run" in err, err
    assert "4242" in (tmp_path / "qdel.log").read_text()
