"""nemo_dask's defaults: ``nemo_dask.yaml``, registered in dask's configuration on import.

As dask-jobqueue does, the package's YAML sits *under* the user's own configuration: a file in
``~/.config/dask/`` or a ``DASK_NEMO_DASK__...`` environment variable overrides any key, and an
explicit argument (API keyword, CLI flag) overrides both. :func:`register` runs when
``nemo_dask`` is imported, so ``dask.config.get("nemo_dask.cluster")`` works right after
``import nemo_dask``.

finemo's own solver and motif options are not here: their defaults are finemo's, and live with
their validation in :mod:`nemo_dask.params`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: dask config namespace of every key in ``nemo_dask.yaml``.
NAMESPACE = "nemo_dask"
YAML_PATH = Path(__file__).with_name("nemo_dask.yaml")

_registered = False


def register() -> None:
    """Add ``nemo_dask.yaml`` to dask's configuration defaults (idempotent)."""
    global _registered
    if _registered:
        return
    import dask.config
    import yaml

    with open(YAML_PATH) as f:
        dask.config.update_defaults(yaml.safe_load(f))
    _registered = True


def get(key: str, default: Any = None) -> Any:
    """``nemo_dask.<key>`` from dask's configuration, e.g. ``get("call-hits.retries")``."""
    import dask.config

    register()
    return dask.config.get(f"{NAMESPACE}.{key}", default=default)


def defaults(section: str) -> dict[str, Any]:
    """The *package* defaults of ``nemo_dask.<section>`` (not the user's overrides), for help
    texts that must show what the YAML says."""
    import yaml

    with open(YAML_PATH) as f:
        return dict(yaml.safe_load(f)[NAMESPACE][section])
