"""Closing a cluster nemo_dask started prints nothing but its own lines (issue 29, item 13):
the workers' and the driver's ``distributed`` loggers are silenced for the close and the
driver's put back; on any cluster only this run's cancellation warnings are dropped."""

from __future__ import annotations

import logging

from nemo_dask.clusters.connect import ClusterOptions, connect
from nemo_dask.clusters.quiet import _DropKeys, closing_quietly, install_key_filter


def _levels() -> dict[str, int]:
    return {n: logging.getLogger(n).level for n in ("distributed", "distributed.worker",
                                                    "distributed.nanny")}


def _worker_level() -> int:
    return logging.getLogger("distributed").getEffectiveLevel()


def test_close_silences_workers_and_driver_then_restores_the_driver() -> None:
    before = _levels()
    with connect(ClusterOptions(n_workers=1), announce=False) as client:
        assert set(client.run(_worker_level).values()) != {logging.CRITICAL + 10}
        with closing_quietly(client):
            assert set(client.run(_worker_level).values()) == {logging.CRITICAL + 10}
            assert logging.getLogger("distributed").getEffectiveLevel() > logging.CRITICAL
        assert _levels() == before
    assert _levels() == before  # the embedded cluster's own close restored them too


def test_key_filter_drops_only_this_runs_cancellations() -> None:
    install_key_filter("nemo-dask-abc-block-")
    install_key_filter("nemo-dask-abc-block-")  # once per prefix
    logger = logging.getLogger("distributed.worker.state_machine")
    ours = [f for f in logger.filters if isinstance(f, _DropKeys)]
    try:
        assert len(ours) == 1 and "nemo-dask-abc-block-" in ours[0].prefixes  # one per process

        def record(msg: str) -> logging.LogRecord:
            return logging.LogRecord("distributed.worker.state_machine", logging.WARNING, "",
                                     0, msg, None, None)

        mine = record("Async instruction for <Task cancelled name=\"execute('nemo-dask-abc-"
                      "block-3')\"> ended with CancelledError")
        other = record("Async instruction for <Task cancelled name=\"execute('other-1')\"> "
                       "ended with CancelledError")
        assert not ours[0].filter(mine) and ours[0].filter(other)
        assert ours[0].filter(record("nemo-dask-abc-block-3 is slow"))  # not a cancellation
    finally:
        for f in ours:
            f.prefixes.discard("nemo-dask-abc-block-")
