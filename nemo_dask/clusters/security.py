"""TLS for nemo_dask clusters: dask ``Security`` from the user's files or temporary credentials.

Why: a Dask scheduler runs any function a connected client sends. On a shared login node the
scheduler of a batch cluster listens on a network interface, so without TLS any user who can
reach the port can run code as you. With mutual TLS only holders of the certificate (written
with mode 0600 under a 0700 directory) can connect.
"""

from __future__ import annotations

import os
from pathlib import Path

import dask.config
from distributed.security import Security

from ..errors import InputError
from .options import ClusterOptions

NO_TLS_RISK = ("without TLS, anyone who can reach the scheduler's port (e.g. every user of a "
               "shared login node) can connect and run code as you; use --no-tls only on a "
               "machine or network that nobody else can reach")


def from_files(options: ClusterOptions) -> Security | None:
    """``Security`` built from ``--tls-ca-file/--tls-cert/--tls-key``, or None when none given.

    One certificate and key serve every role (client, scheduler, worker): a site CA may issue
    one per user; dask checks that peers are signed by the CA.
    """
    if not options.tls_ca_file:
        return None
    ca = _expand(options.tls_ca_file)
    cert = _expand(options.tls_cert) if options.tls_cert else None
    key = _expand(options.tls_key) if options.tls_key else None
    return Security(require_encryption=True, tls_ca_file=ca,
                    tls_client_cert=cert, tls_client_key=key,
                    tls_scheduler_cert=cert, tls_scheduler_key=key,
                    tls_worker_cert=cert, tls_worker_key=key)


def for_new_cluster(options: ClusterOptions) -> Security | None:
    """The ``Security`` of a cluster we start: None (tcp), the user's files, or temporary."""
    if not options.tls:
        return None
    user = from_files(options)
    if user is not None:
        return user
    try:
        return Security.temporary()
    except ImportError as err:
        raise InputError("TLS needs the `cryptography` package to make temporary "
                         "credentials: `pip install cryptography`, or give your own "
                         "--tls-ca-file/--tls-cert/--tls-key; --no-tls turns TLS off ("
                         + NO_TLS_RISK + ")") from err


def for_client(address: str, options: ClusterOptions) -> Security | None:
    """The ``Security`` for connecting to an existing scheduler at ``address``.

    Files on the command line win; else dask's ``distributed.comm.tls.*`` config (None lets the
    client read it). A ``tls://`` address with neither is refused before trying to connect.
    """
    user = from_files(options)
    if user is not None:
        return user
    if address.startswith("tls://") and not dask.config.get("distributed.comm.tls.ca-file",
                                                            default=None):
        raise InputError(f"--scheduler {address}: a tls:// scheduler needs credentials; give "
                         "--tls-ca-file, --tls-cert and --tls-key (PEM files the scheduler's CA "
                         "signed), or set distributed.comm.tls.ca-file / client.cert / "
                         "client.key in dask config")
    return None


def shared_temp_directory(options: ClusterOptions, create: bool = True) -> str:
    """The directory (visible to the jobs) for temporary TLS files, made private (0700)."""
    raw = options.shared_temp_directory or "~/.nemo_dask/tls"
    path = Path(_expand(raw))
    if not create:
        return str(path)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
    except OSError as err:
        raise InputError(f"--shared-temp-directory {raw}: cannot create it ({err}); give a "
                         "writable directory that the batch jobs can read (e.g. under $HOME)"
                         ) from err
    return str(path)


def _expand(path: str) -> str:
    return os.path.abspath(os.path.expanduser(os.path.expandvars(path)))
