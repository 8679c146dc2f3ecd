"""config.py: every default in nemo_dask.yaml, registered in dask's configuration on import."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dask
import yaml

from nemo_dask import config


def test_defaults_are_registered_by_importing_nemo_dask():
    # A fresh interpreter: nothing but `import nemo_dask` may be needed.
    code = ("import json, dask, nemo_dask; print(json.dumps([dask.config.get('nemo_dask.cluster'"
            ")['kind'], dask.config.get('nemo_dask.call-hits.retries'), "
            "dask.config.get('nemo_dask.export.max-rows')]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120, env=env).stdout
    assert json.loads(out.strip().splitlines()[-1]) == ["local", 2, 500000]


def test_users_override_the_package_defaults():
    with dask.config.set({"nemo_dask.report.regions-per-read": 7}):
        assert config.get("report.regions-per-read") == 7
    assert config.get("report.regions-per-read") == config.defaults("report")["regions-per-read"]


def test_yaml_has_one_section_per_stage():
    with open(config.YAML_PATH) as f:
        sections = set(yaml.safe_load(f)["nemo_dask"])
    assert sections == {"call-hits", "annotate", "export", "report", "import", "cluster"}
