"""A worker memory limit smaller than a block needs: one line after the FIRST worker death,
saying the block's size, what it needs, the limit and which option to change (issue 29,
item 16c), instead of ``KilledWorker`` after dask's allowed failures."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import nemo_dask
from nemo_dask.calling.deaths import DeathWatch, WorkerMemoryError, block_bytes

DATA = Path(__file__).parents[1] / "data"

#: A limit the worker itself (~0.2-0.35 GB on this machine's kind) fits under, but not the
#: fixture's 350 regions solved as one batch of 350 (~0.4 GB at the kill).
LIMIT = "420MB"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    from nemo_dask.regions.convert import convert_npz

    path = tmp_path_factory.mktemp("mem") / "r.zarr"
    convert_npz(DATA / "regions.npz", path, progress=False)
    return str(path)


#: dask's allowed-failures for the memory-death test, raised so that dask alone would need
#: ALLOWED_FAILURES + 1 deaths to end the run.
ALLOWED_FAILURES = 10


class _CountKills(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.kills = 0

    def filter(self, record: logging.LogRecord) -> bool:
        self.kills += "memory budget" in record.getMessage()
        return True


def test_first_memory_death_ends_the_run_in_one_line(store: str, tmp_path: Path) -> None:
    import dask

    from nemo_dask.clusters.options import ClusterOptions

    counter = _CountKills()  # added first: it sees the nanny's lines before they are dropped
    logging.getLogger("distributed.nanny.memory").addFilter(counter)
    try:
        # dask alone would end the run with KilledWorker after allowed-failures + 1 deaths;
        # raised high so that the count below shows the watch, not dask, ended it.
        with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}), \
                pytest.raises(WorkerMemoryError) as info:
            nemo_dask.call_hits(store, DATA / "modisco.h5", tmp_path / "out",
                                cluster=ClusterOptions(n_workers=1, memory_limit=LIMIT),
                                block_size=350, batch_size=350, progress=False)
    finally:
        logging.getLogger("distributed.nanny.memory").removeFilter(counter)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("a worker was stopped at its memory limit while solving block 0 "
                           "(350 regions): a block that size needs about ")
    assert "of the 400.54 MiB worker limit" in text  # 420 MB, as dask shows it
    for option in ("--block-size", "--memory", "nemo_dask.cluster.local.memory-limit",
                   "-b/--batch-size"):
        assert option in text
    # Found at the first death the watch sees (it asks the scheduler every INTERVAL_S); a
    # restarted worker may take the block again and die before the next look, the more often
    # the busier the machine (6 deaths once on a loaded 2-core CI run), so the count is bounded
    # by what shows the watch ended the run: fewer than the allowed-failures + 1 = 11 deaths
    # after which dask itself would.
    assert 1 <= counter.kills <= ALLOWED_FAILURES


class _Scheduler:
    """A fake client whose scheduler reports one paused worker and no deaths."""

    def __init__(self) -> None:
        self.view = {"workers": {"w": (400 * 2**20, 330 * 2**20)}, "suspicious": {},
                     "paused": ["w"]}

    def run_on_scheduler(self, fn, *args):  # noqa: ANN001, ANN201
        return self.view


def test_workers_paused_with_no_progress_end_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from nemo_dask.calling import deaths

    clock = [0.0]
    monkeypatch.setattr(deaths.time, "monotonic", lambda: clock[0])
    watch = DeathWatch(_Scheduler(), "nemo-dask-x-block-", {0: 350}, lambda n: n * 1000)
    try:
        for t in (0.0, 30.0, 59.0):
            clock[0] = t
            watch.check()
        clock[0] = 62.0
        watch.progressed()  # a block finished: paused, but working
        clock[0] = 64.0
        watch.check()
        clock[0] = 130.0
        with pytest.raises(WorkerMemoryError, match="paused by dask for 60 s"):
            watch.check()
    finally:
        watch.close()


def test_block_need_grows_with_block_and_batch() -> None:
    small = block_bytes(64, 1000, 12, 50, 16)
    assert block_bytes(128, 1000, 12, 50, 16) > small
    assert block_bytes(64, 1000, 12, 50, 64) > small
    # Two blocks' arrays (stored + float32 working copies) and the batch's slots.
    assert small == 2 * 64 * 4 * 1000 * 35 + 16 * 4 * (16 * 12 * 951 + 20 * 1000)


def test_message_suggests_a_block_size_that_fits() -> None:
    watch = DeathWatch.__new__(DeathWatch)
    watch.sizes, watch.baseline, watch.flag = {3: 4096}, 300 * 2**20, "--block-size"
    watch.need = lambda n: n * 200_000
    text = watch.message({"nemo-dask-abc-block-3": 1}, 1 * 2**30)
    assert "block 3 (4096 regions)" in text and "of the 1.00 GiB worker limit" in text
    suggested = int(text.split("--block-size ")[1].split()[0])
    assert 16 <= suggested < 4096 and suggested * 200_000 < 0.6 * 2**30
