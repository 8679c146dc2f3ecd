"""deploy/: the sample configs produce correct job scripts, and the scripts and files are sound."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import dask
import pytest
import yaml

from nemo_dask.clusters.connect import ClusterOptions, job_script

pytest.importorskip("dask_jobqueue")  # registers the jobqueue.* defaults the samples override

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
PACKAGE_YAML = Path(__file__).resolve().parents[1] / "nemo_dask" / "nemo_dask.yaml"

GPU = {"slurm": "#SBATCH --gres=gpu:1", "pbs": ":ngpus=1:", "lsf": '#BSUB -gpu "num=1"',
       "sge": "#$ -l gpu=1,"}
CPUS = {"slurm": "#SBATCH --cpus-per-task=8", "pbs": "select=1:ncpus=4:", "lsf": "#BSUB -n 8",
        "sge": "#$ -pe smp 4"}
MEMORY = {"slurm": "#SBATCH --mem=60G", "pbs": ":mem=60gb", "lsf": "#BSUB -M ",
          "sge": "h_vmem=14306M"}  # 60 GB (dask: 10^9) over 4 slots, in MiB, rounded up
WALLTIME = {"slurm": "#SBATCH -t 04:00:00", "pbs": "#PBS -l walltime=04:00:00",
            "lsf": "#BSUB -W 04:00", "sge": "#$ -l h_rt=04:00:00"}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


@pytest.mark.parametrize("system", ["slurm", "pbs", "lsf", "sge"])
def test_sample_jobqueue_yaml_gives_a_gpu_job_script(system, tmp_path):
    """As a new user would: copy the sample, then `call-hits --cluster SYSTEM --dry-run`."""
    sample = yaml.safe_load((DEPLOY / "jobqueue" / f"{system}.yaml").read_text())
    assert set(sample["jobqueue"]) == {system}
    # dask.config.set with dotted keys merges like a user's file does (other systems untouched).
    with dask.config.set(_flatten(sample)):
        script = job_script(ClusterOptions(cluster=system))
    for text in (GPU[system], CPUS[system], MEMORY[system], WALLTIME[system], "module load cuda/12.4",
                 "source ~/venvs/nemo/bin/activate", "--protocol tls://", "--tls-key ",
                 "--nthreads 1", "--lifetime ", "--local-directory $TMPDIR", "-q gpu"
                 if system != "slurm" else "#SBATCH -p gpu"):
        assert text in script, f"{system}: {text!r} not in\n{script}"
    assert "nemo-dask" in script.splitlines()[2]  # the job name


def test_example_nemo_dask_yaml_uses_only_known_keys():
    known = set(_flatten(yaml.safe_load(PACKAGE_YAML.read_text())))
    example = set(_flatten(yaml.safe_load((DEPLOY / "nemo_dask.yaml").read_text())))
    assert example <= known, f"unknown keys: {example - known}"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("script", sorted(p.name for p in DEPLOY.rglob("*")
                                          if p.suffix in (".sh", ".sbatch", ".pbs")))
def test_shell_scripts_parse(script):
    path = next(DEPLOY.rglob(script))
    subprocess.run(["bash", "-n", str(path)], check=True, timeout=30)
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    assert "nemo-dask call-hits" in text


def test_gpu_requirements_and_readme_cover_every_file():
    packaging = pytest.importorskip("packaging.requirements")
    reqs = [line.split("#")[0].strip() for line in
            (DEPLOY / "requirements-gpu.txt").read_text().splitlines()]
    names = {packaging.Requirement(r).name for r in reqs if r}
    assert {"torch", "dask-cuda", "dask-jobqueue", "cryptography"} <= names
    assert "pypi.nvidia.com" in (DEPLOY / "requirements-gpu.txt").read_text()
    readme = (DEPLOY / "README.md").read_text()
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert path.name in readme, f"deploy/README.md does not mention {path.name}"
    # The sizing section states the solver's per-batch tensors.
    assert re.search(r"B × M × P", readme) and "B × 4 × L" in readme
