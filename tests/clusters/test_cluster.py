"""Cluster options, job scripts per batch system (as text), loopback and TLS clusters, GPUs.

No batch system or GPU is needed: job scripts are checked as text, a jobqueue worker is started
from its own job script's command line, and GPU placement uses a patched CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

import dask
import pytest
from conftest import assert_refused, scheduler_identity

from nemo_dask.clusters import jobqueue as jq
from nemo_dask.clusters import local
from nemo_dask.clusters.connect import (
    ClusterOptions,
    GpuUnavailableError,
    add_cluster_arguments,
    cluster_options_from_args,
    connect,
    job_script,
)
from nemo_dask.clusters.options import resolve
from nemo_dask.errors import InputError

distributed = pytest.importorskip("distributed")
dask_jobqueue = pytest.importorskip("dask_jobqueue")  # also registers jobqueue.* defaults

PROLOGUE = ["module load cuda/12.4", "source ~/venvs/nemo/bin/activate"]
# (GPU directive, memory directive, walltime directive) each system must carry.
EXPECTED = {
    "slurm": ("#SBATCH --gres=gpu:1", "#SBATCH --mem=30G", "#SBATCH -t 02:00:00"),
    "pbs": ("#PBS -l select=1:ncpus=8:ngpus=1:mem=30gb", "mem=30gb",
            "#PBS -l walltime=02:00:00"),
    "lsf": ('#BSUB -gpu "num=1"', "#BSUB -M ", "#BSUB -W 02:00"),
    "sge": ("#$ -l gpu=1,h_vmem=", "h_vmem=3815M", "#$ -l h_rt=02:00:00"),
}


def _opts(system: str, **kw) -> ClusterOptions:
    base = dict(cluster=system, memory="32GB", job_cpu=8, queue="gpu", account="lab42",
                walltime="02:00" if system == "lsf" else "02:00:00", job_prologue=PROLOGUE,
                shared_temp_directory="/home/me/.nemo_tls", python="/opt/env/bin/python")
    base.update(kw)
    return ClusterOptions(**base)


@pytest.mark.parametrize("system", ["slurm", "pbs", "lsf", "sge"])
def test_job_script_carries_gpu_memory_walltime_prologue_and_tls(system):
    script = job_script(_opts(system))
    gpu, mem, wall = EXPECTED[system]
    for text in (gpu, mem, wall, *PROLOGUE):
        assert text in script, f"{system}: {text!r} missing from\n{script}"
    worker = script.strip().splitlines()[-1]
    assert worker.startswith("/opt/env/bin/python -m distributed.cli.dask_worker tls://")
    assert "--nthreads 1" in worker  # one solver thread owns the GPU
    for flag in ("--protocol tls://", "--tls-ca-file /home/me/.nemo_tls/",
                 "--tls-cert /home/me/.nemo_tls/", "--tls-key /home/me/.nemo_tls/"):
        assert flag in worker
    # Adaptive by default: workers retire 5 min before the 2 h walltime, staggered.
    assert "--lifetime 6900s --lifetime-stagger 120s" in worker
    assert script.index(PROLOGUE[-1]) < script.index(worker)  # prologue runs first
    # the submit directory is not put on the worker's sys.path (a clone there would shadow us)
    assert script.index("export PYTHONSAFEPATH=1") < script.index(PROLOGUE[0])
    queue = {"slurm": "-p gpu", "pbs": "-q gpu", "lsf": "-q gpu", "sge": "-q gpu"}[system]
    assert queue in script and "lab42" in script


def test_slurm_cpus_and_fixed_jobs_have_no_lifetime():
    script = job_script(_opts("slurm", jobs=3))
    assert "#SBATCH --cpus-per-task=8" in script
    assert "--lifetime" not in script  # a fixed cluster does not replace retired workers


def test_user_jobqueue_config_is_extended_not_replaced():
    with dask.config.set({"jobqueue.slurm.job-extra-directives": ["--constraint=a100"],
                          "jobqueue.slurm.job-script-prologue": ["module purge"],
                          "jobqueue.slurm.memory": "64GB", "jobqueue.slurm.queue": "short",
                          "jobqueue.slurm.account": "site"}):
        script = job_script(ClusterOptions(cluster="slurm", walltime="1:00:00"))
    for text in ("--constraint=a100", "--gres=gpu:1", "--mem=60G", "-p short", "-A site"):
        assert text in script
    assert script.index("module purge") < script.index("dask_worker")


def test_nemo_dask_config_namespace_holds_the_defaults():
    assert dask.config.get("nemo_dask.cluster.jobqueue.gpus-per-job") == 1
    assert dask.config.get("nemo_dask.cluster.dashboard-address") == "127.0.0.1:0"
    with dask.config.set({"nemo_dask.cluster.jobqueue.max-jobs": 16,
                          "nemo_dask.cluster.kind": "pbs"}):
        o = resolve(ClusterOptions())
    assert (o.cluster, o.max_jobs, o.tls, o.cores) == ("pbs", 16, True, 1)
    assert resolve(ClusterOptions()).tls is False  # local: loopback, no TLS needed


def test_multi_gpu_job_runs_dask_cuda_worker():
    script = job_script(_opts("slurm", gpus_per_job=4, cuda_worker=True, tls=False))
    worker = script.strip().splitlines()[-1]
    assert "#SBATCH --gres=gpu:4" in script
    assert "-m dask_cuda.cli tcp://" in worker and "--nthreads 1" in worker
    assert "--tls" not in worker and "--lifetime" not in worker  # no such flag in dask-cuda
    assert "export DASK_DISTRIBUTED__WORKER__LIFETIME__DURATION=6900s" in script


def test_user_certificates_go_into_the_script(tmp_path):
    files = {n: tmp_path / f"{n}.pem" for n in ("ca", "cert", "key")}
    for p in files.values():
        p.write_text("x")
    script = job_script(_opts("pbs", tls_ca_file=str(files["ca"]), tls_cert=str(files["cert"]),
                              tls_key=str(files["key"])))
    assert f"--tls-ca-file {files['ca']}" in script and f"--tls-key {files['key']}" in script


def test_bad_options_give_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="--cuda-worker"):
        job_script(_opts("slurm", gpus_per_job=2))
    with pytest.raises(InputError, match="--cluster slurm"):
        job_script(ClusterOptions(cluster="local"))
    with pytest.raises(InputError, match="--min-jobs"):
        job_script(_opts("slurm", min_jobs=5, max_jobs=2))
    with pytest.raises(InputError, match="--tls-ca-file"):
        job_script(_opts("slurm", tls_ca_file=str(tmp_path / "missing.pem")))
    with pytest.raises(InputError, match="--walltime"):
        job_script(_opts("pbs", walltime="two hours"))
    with pytest.raises(InputError, match="--cluster"):
        resolve(ClusterOptions(cluster="kubernetes"))


@pytest.mark.parametrize(("walltime", "system", "seconds"), [
    ("02:00:00", "pbs", 7200), ("30:00", "pbs", 1800), ("90", "sge", 90),
    ("02:00", "lsf", 7200), ("45", "lsf", 2700), ("1-12:00:00", "slurm", 129600),
    ("30", "slurm", 1800), ("1-2", "slurm", 93600),
])
def test_walltime_formats(walltime, system, seconds):
    assert jq.walltime_seconds(walltime, system) == seconds


def test_cli_flags_round_trip():
    parser = argparse.ArgumentParser()
    add_cluster_arguments(parser)
    args = parser.parse_args(["--cluster", "slurm", "--max-jobs", "8", "--queue", "gpu",
                              "--job-prologue", "module load cuda", "--job-prologue", "x=1",
                              "--no-tls", "--dry-run", "--walltime", "1:00:00"])
    o = cluster_options_from_args(args)
    assert (o.cluster, o.max_jobs, o.queue, o.tls, o.dry_run) == ("slurm", 8, "gpu", False, True)
    assert o.job_prologue == ["module load cuda", "x=1"]
    defaults = cluster_options_from_args(parser.parse_args([]))
    assert defaults.tls is None and defaults.cluster is None and defaults.cuda_worker is None


def test_local_cluster_binds_loopback_only():
    with connect(ClusterOptions(n_workers=1)) as client:
        info = client.scheduler_info()
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        assert all(w.startswith("tcp://127.0.0.1:") for w in info["workers"])
        assert info["services"].get("dashboard") is None or \
            client.dashboard_link.startswith("http://127.0.0.1:")
        assert client.submit(os.getpid).result() != os.getpid()  # worker processes
    with connect(ClusterOptions(n_workers=1, tls=True)) as client:  # opt-in on shared machines
        assert client.scheduler.address.startswith("tls://127.0.0.1:")
        assert_refused(client.scheduler.address.replace("tls://", "tcp://"))


def test_local_workers_run_without_dask_profiler_unless_asked():
    def enabled() -> bool:
        return dask.config.get("distributed.worker.profile.enabled")

    with connect(ClusterOptions(n_workers=1, dashboard_address=None), announce=False) as client:
        assert list(client.run(enabled).values()) == [False]
        assert dask.config.get("distributed.worker.profile.enabled")  # driver's own untouched
    with dask.config.set({"nemo_dask.cluster.local.worker-profiler": True}), \
            connect(ClusterOptions(n_workers=1, dashboard_address=None), announce=False) as client:
        assert list(client.run(enabled).values()) == [True]


def test_tls_scheduler_refuses_clients_without_its_credentials(tmp_path):
    """A jobqueue cluster's TLS scheduler: a worker started from the job script's own command
    line joins; clients without credentials, or with other ones, are refused."""
    from distributed.security import Security

    with dask.config.set({"jobqueue.slurm.scheduler-options": {"host": "127.0.0.1"}}):
        o = resolve(ClusterOptions(cluster="slurm", memory="1GB", walltime="00:10:00",
                                   shared_temp_directory=str(tmp_path / "tls")))
        cluster = jq.make(o)
    worker = None
    try:
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
        assert oct((tmp_path / "tls").stat().st_mode)[-3:] == "700"
        line = cluster.job_script().strip().splitlines()[-1]
        worker = subprocess.Popen(shlex.split(line), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        with distributed.Client(cluster, timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
            assert client.submit(sum, [1, 2]).result(timeout=30) == 3
        assert_refused(cluster.scheduler_address.replace("tls://", "tcp://"))
        assert_refused(cluster.scheduler_address, None)
        assert_refused(cluster.scheduler_address, Security.temporary())
        assert scheduler_identity(cluster.scheduler_address, cluster.security)["type"] == "Scheduler"
        with pytest.raises(InputError, match="needs credentials"):
            with connect(ClusterOptions(scheduler=cluster.scheduler_address)):
                pass
    finally:
        if worker is not None:
            worker.kill()
            worker.wait(timeout=30)
        cluster.close()


def test_cuda_without_gpu_says_what_to_do(monkeypatch):
    pytest.importorskip("dask_cuda")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(GpuUnavailableError, match="--cluster local") as err:
        with connect(ClusterOptions(cluster="cuda")):
            pass
    assert "CUDA_VISIBLE_DEVICES" in str(err.value)
    assert isinstance(err.value, InputError)  # the CLI prints it as one line, exit 2


def test_cuda_without_dask_cuda_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_cuda", None)  # not installed
    with pytest.raises(GpuUnavailableError, match="pypi.nvidia.com"):
        with connect(ClusterOptions(cluster="cuda")):
            pass


def test_cuda_cluster_gives_each_worker_its_own_gpu(monkeypatch):
    pytest.importorskip("dask_cuda")
    # dask-cuda's own test switches skip NVML queries, so placement runs without GPUs.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("DASK_CUDA_TEST_DISABLE_DEVICE_SPECIFIC", "1")
    monkeypatch.setenv("DASK_CUDA_TEST_SINGLE_GPU", "1")
    monkeypatch.setattr(local, "visible_gpu_count", lambda: 2)
    with connect(ClusterOptions(cluster="cuda")) as client:
        seen = client.run(lambda: os.environ["CUDA_VISIBLE_DEVICES"])
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        assert all(w.startswith("tcp://127.0.0.1:") for w in seen)
        assert sorted(v.split(",")[0] for v in seen.values()) == ["0", "1"]
        assert all(n == 1 for n in client.nthreads().values())
    with pytest.raises(GpuUnavailableError, match="at most 2"):
        with connect(ClusterOptions(cluster="cuda", n_workers=3)):
            pass


def test_call_hits_dry_run_prints_the_job_script(capsys, monkeypatch, tmp_path):
    """`nemo-dask call-hits ... --cluster pbs --dry-run`, as a new user would type it."""
    import nemo_dask.cli as cli

    monkeypatch.chdir(tmp_path)
    rc = cli.main(["call-hits", "-r", "regions.zarr", "-m", "modisco.h5", "-o", "out",
                   "--cluster", "pbs", "--queue", "gpu", "--walltime", "01:00:00",
                   "--memory", "48GB", "--job-cpu", "6", "--job-prologue", "module load cuda",
                   "--dry-run"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "#PBS -l select=1:ncpus=6:ngpus=1:mem=45gb" in printed
    assert "#PBS -l walltime=01:00:00" in printed and "module load cuda" in printed
    assert "--protocol tls://" in printed
    assert not os.path.exists("out")  # a dry run writes nothing


@pytest.mark.slow
@pytest.mark.parametrize("scaling", [dict(jobs=2), dict(min_jobs=2, max_jobs=3)],
                         ids=["fixed", "adaptive"])
def test_pbs_cluster_end_to_end_with_fake_qsub(scaling, tmp_path, monkeypatch):
    """connect() with --cluster pbs: jobs go through a `qsub` stand-in that runs the job
    script as a local process; the TLS workers join and compute; closing cancels the jobs.
    (SLURM runs against a real scheduler: tests/test_slurm.py.)"""
    bin_dir = _fake_batch_system(tmp_path, "qsub", "qdel")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    opts = ClusterOptions(cluster="pbs", memory="1GB", walltime="00:10:00", job_cpu=1,
                          gpus_per_job=0, shared_temp_directory=str(tmp_path / "tls"), **scaling)
    with dask.config.set({"jobqueue.pbs.scheduler-options": {"host": "127.0.0.1"}}):
        with connect(opts) as client:
            assert client.scheduler.address.startswith("tls://127.0.0.1:")
            client.wait_for_workers(2, timeout=90)
            assert client.submit(sum, [4, 5]).result(timeout=30) == 9
            assert all(n == 1 for n in client.nthreads().values())
            pids = set(client.run(os.getpid).values())
    deadline = time.monotonic() + 30
    while pids and time.monotonic() < deadline:
        pids = {p for p in pids if _alive(p)}
        time.sleep(0.2)
    assert not pids, "closing the cluster must cancel its jobs"


def _fake_batch_system(tmp_path, submit: str, cancel: str, refuse: str | None = None):
    """A submit command that runs the job script as a local process (job id = its pid), or
    that refuses every job with ``refuse`` on stderr; a cancel command that kills it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if refuse:
        (bin_dir / submit).write_text(f"#!/usr/bin/env bash\necho '{refuse}' >&2\nexit 1\n")
    else:
        (bin_dir / submit).write_text(
            "#!/usr/bin/env bash\n"
            'cp "$1" "$1.copy"\n'
            'setsid bash "$1.copy" > "$1.log" 2>&1 < /dev/null &\n'
            'echo "$!.fakepbs"\n')
    (bin_dir / cancel).write_text(
        "#!/usr/bin/env bash\n"
        'for j in "$@"; do j=${j%%.*}; kill -- "-$j" 2>/dev/null || kill "$j" 2>/dev/null; done\n'
        "exit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return bin_dir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_distributed_still_has_the_forkserver_preload_flag():
    """nemo_dask sets distributed's private ``utils._forkserver_preload_set`` so that dask keeps
    our fork-server preload list (workers forked with torch loaded). If this fails, distributed
    renamed or dropped it: local workers still run (the fallback below) but start slower;
    find distributed's new way to set the preload list and update clusters/local.py."""
    import distributed.utils

    assert hasattr(distributed.utils, local._DASK_PRELOAD_FLAG), (
        "distributed.utils no longer has _forkserver_preload_set; see this test's docstring")
    saved = getattr(distributed.utils, local._DASK_PRELOAD_FLAG)
    try:
        assert local.claim_forkserver_preload() is True
        assert getattr(distributed.utils, local._DASK_PRELOAD_FLAG) is True
    finally:
        setattr(distributed.utils, local._DASK_PRELOAD_FLAG, saved)


def test_a_distributed_without_the_flag_is_tolerated(monkeypatch):
    import distributed.utils

    monkeypatch.delattr(distributed.utils, local._DASK_PRELOAD_FLAG)
    assert local.claim_forkserver_preload() is False
    with local.worker_start_method("forkserver"):  # no AttributeError: the fallback
        pass


def test_call_hits_from_the_parent_of_a_clone(tmp_path, data_dir, modisco_h5):
    """A directory named nemo_dask where call-hits runs (a clone, seen from its parent) is not
    what the workers import: with an editable install it used to shadow the package as an empty
    namespace package in the fork server, and no worker started."""
    (tmp_path / "nemo_dask" / "tests").mkdir(parents=True)  # no __init__.py, as in a clone
    script = os.path.join(os.path.dirname(sys.executable), "nemo-dask")
    assert os.path.exists(script), "run the tests from the environment nemo_dask is installed in"
    proc = subprocess.run([script, "call-hits", "-r", str(data_dir / "regions.npz"), "-m",
                           str(modisco_h5), "-o", "out", "--workers", "1", "--no-progress"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1721 hits" in proc.stdout


def test_each_batch_system_is_one_record():
    """--cluster's choices, the job class, the cancel command and the status query all come
    from clusters/systems.py's records (issue 27, item 3)."""
    from nemo_dask.clusters.options import JOBQUEUE_KINDS
    from nemo_dask.clusters.systems import SYSTEMS, system

    assert JOBQUEUE_KINDS == tuple(SYSTEMS) == ("slurm", "pbs", "lsf", "sge")
    for name, record in SYSTEMS.items():
        cls = record.cluster_cls()
        assert cls.job_cls.config_name == name  # dask-jobqueue's own section name
        assert record.cancel_command == cls.job_cls.cancel_command
        assert record.status_command(["7"])[0] in ("squeue", "qstat", "bjobs")
    assert system("slurm").parse_status("7|RUNNING|None\n")["7"].state == "running"
    with pytest.raises(InputError, match="lsf reads M or H:M"):
        jq.walltime_seconds("1:00:00", "lsf")
    with pytest.raises(InputError, match="--cluster kubernetes: not a batch system"):
        system("kubernetes")


def test_in_process_cluster_runs_its_workers_as_threads_of_this_process(capsys):
    """--cluster in-process: dask's LocalCluster(processes=False), one worker of one thread
    by default, no memory limit; its dashboard link names where it listens (loopback)."""
    from nemo_dask.clusters.connect import connect
    from nemo_dask.clusters.options import ClusterOptions

    o = resolve(ClusterOptions(cluster="in-process"))
    assert (o.n_workers, o.threads_per_worker) == (1, 1)
    with connect(ClusterOptions(cluster="in-process")) as client:
        pids = client.run(os.getpid)
        limits = [w["memory_limit"] for w in client.scheduler_info()["workers"].values()]
    assert list(pids.values()) == [os.getpid()] and limits == [0]
    said = capsys.readouterr().err
    assert "in-process cluster, 1 worker thread(s) in this process" in said and "http://127.0.0.1:" in said
