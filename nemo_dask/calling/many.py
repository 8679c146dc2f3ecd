"""``call_hits_many``: a sheet of call-hits runs (samples, folds, parameter sets) on one cluster.

Each row is exactly the run ``call-hits`` with the same options would be: the same checks, the
same OUT (bit-identical hits and QC, the same ``parameters.json`` apart from timing), the same
lock, resume and refusal rules. What the sheet adds is order and sharing:

1. every row is parsed (:mod:`.sheet`) and checked (:func:`.api.check_call`) before anything
   is written or started; then every run's OUT is claimed (its lock taken) and checked against
   the run, still writing nothing (:func:`.output.check_out`). A bad row is one line,
   ``RUNS.tsv:LINE: ...``; all of them are reported together and nothing starts;
2. OUTs are prepared (``--overwrite`` applied, regions.npz converted) and one cluster started;
3. every run is planned and all their blocks go through one scheduler loop
   (:func:`.execute.execute`), so workers move from one run's blocks to the next one's; a run
   that fails there (its store unreadable, OUT removed) ends alone, in one line;
4. as each run ends, its lock is given back, a line goes to the batch log (stderr) and the
   summary (``RUNS.summary.tsv``) is rewritten, so a killed driver leaves it current.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, NemoDaskError
from .sheet import SheetError, SheetRow, read_sheet
from .summary import RunReport, default_summary_path, write_summary


@dataclass
class CallHitsManyResult:
    """What :func:`call_hits_many` returns: one :class:`RunReport` per row, in order (a
    finished run's hits: ``nemo_dask.scan_hits(report.out)``)."""

    runs: list[RunReport]
    summary: str | None
    elapsed_s: float
    #: The runs that did not finish (failed, or stopped with the sheet).
    failed: list[RunReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every run finished."""
        return all(r.status == "done" for r in self.runs)

    def describe(self) -> str:
        """Two lines for the command line: the counts, and where the summary is."""
        done = [r for r in self.runs if r.status == "done"]
        failed = [r for r in self.runs if r.status != "done"]
        names = ", ".join(r.name for r in failed[:5]) + (" ..." if len(failed) > 5 else "")
        text = (f"{len(self.runs)} runs: {len(done)} done"
                + (f", {len(failed)} failed ({names})" if failed else "")
                + f"; {sum(r.n_hits or 0 for r in done)} hits; {self.elapsed_s:.1f} s")
        if self.summary is not None:
            text += f"\nsummary: {self.summary}"
        return text


def call_hits_many(
    runs: Any,
    client: Any = None,
    *,
    defaults: Any = None,
    summary: str | os.PathLike[str] | None = None,
    cluster: Any = None,
    progress: bool | None = None,
    worker_wait: float | str | None = None,
) -> CallHitsManyResult:
    """Call hits for every run of a sheet on one Dask cluster.

    Parameters
    ----------
    runs : path, URL or sequence of mappings
        The sheet: a tab-separated file with a header (``name``, ``regions``, ``motifs``,
        ``out`` and any call-hits option by its long flag name, e.g. ``mode``,
        ``global-lambda``, ``peaks``, ``exact``; a blank cell is the default; relative paths
        are taken from the sheet's folder), or the same rows as mappings (column -> value).
        See :mod:`nemo_dask.calling.sheet`.
    client : distributed.Client, optional
        Your cluster's client (left running); else an embedded cluster made from ``cluster``.
    defaults : mapping, optional
        Values of sheet columns for every row whose cell is blank (``{"mode": "hh"}``); the
        CLI passes its parsed command line.
    summary : path or URL, optional
        Where the summary table goes; default ``<sheet>.summary.tsv`` beside a sheet file
        (none for a sequence of mappings). Columns: name, status (done, failed, stopped),
        hits, regions, blocks_solved, blocks_skipped, seconds, out, error.
    cluster : ClusterOptions, optional
        The embedded cluster, when no ``client`` is given (as :func:`nemo_dask.call_hits`).
    progress : bool, optional
        One bar over every block of every run (and runs done / total); default: on a terminal.
    worker_wait : float or str, optional
        As :func:`nemo_dask.call_hits`, for the whole sheet.

    Returns
    -------
    CallHitsManyResult
        Each run's status, hits, regions, blocks solved and skipped, seconds, OUT and error.
        A run that failed does not raise: its report says why (``ok`` is False).

    Raises
    ------
    SheetError
        A row is unusable (a column that is no call-hits option, a value its option refuses,
        an input that does not validate, an OUT held by another run or holding another one):
        every such row in one line each, ``RUNS.tsv:LINE: ...``; nothing was written or
        started.
    WorkersUnavailableError
        As :func:`nemo_dask.call_hits`: no run can go on. Each run's manifest records what it
        finished; rerunning the sheet resumes every run.
    """
    from .execute import prepare_cluster, warm_workers

    t0 = time.perf_counter()
    if client is None:
        cluster = prepare_cluster(cluster)
    else:
        warm_workers(client)  # torch imported on your workers while the sheet is checked
    path, rows = read_sheet(runs, defaults)
    summary_path, streamed = _summary_output(summary, path)
    with tempfile.TemporaryDirectory(prefix="nemo-dask-inputs-") as fetched, \
            contextlib.ExitStack() as held:
        calls = _check_rows(rows, fetched, progress, worker_wait, path or "runs")
        reports = [RunReport(name=row.name, where=row.where, out=str(call.checked.out),
                             n_regions=call.checked.source.n_regions)
                   for row, call in zip(rows, calls, strict=True)]
        locks = _claim(rows, calls, held, path or "runs")

        def save(final: bool = False) -> None:
            # A summary to stdout, a device or a FIFO is written once, at the end.
            if summary_path is not None and (final or not streamed):
                write_summary(summary_path, reports)

        try:
            _run_all(client, cluster, rows, calls, reports, locks, save)
        except BaseException as err:
            for report in reports:
                if report.status == "pending":
                    report.status = "stopped"
                    report.error = (f"the sheet stopped before this run ended "
                                    f"({type(err).__name__}: {' '.join(str(err).split())})")
            with contextlib.suppress(Exception):
                save(final=True)
            raise
        save(final=True)
    return _result(reports, summary_path, t0)


def _run_all(client: Any, cluster: Any, rows: Sequence[SheetRow], calls: Sequence[Any],
             reports: list[RunReport], locks: list[contextlib.ExitStack], save: Any) -> None:
    """Prepare every run's OUT, start one cluster, plan the runs, solve all their blocks."""
    from .api import plan_call
    from .execute import connected, execute
    from .plan import settle_out

    for k, (row, call) in enumerate(zip(rows, calls, strict=True)):
        with _row_warnings(row), _contained(reports[k], locks[k], call):
            settle_out(call.checked)
    save()
    live = [k for k, r in enumerate(reports) if r.status == "pending"]
    if not live:
        return
    with connected(client, cluster) as cl:
        plans: dict[int, Any] = {}
        gpus: dict[str, bool] = {}  # asked of the workers once per device setting
        # One queue: default blocks are sized for all of it (plan.default_block_size)
        queue = sum(calls[k].checked.source.n_regions for k in live)
        for k in live:
            with _row_warnings(rows[k]), _contained(reports[k], locks[k], calls[k]):
                plans[k] = plan_call(cl, calls[k], cluster, gpus, queue_regions=queue)
        order = [k for k in live if k in plans]
        by_plan = {id(plans[k]): k for k in order}

        def ended(outcome: Any, write: Any) -> None:
            k = by_plan[id(outcome.plan)]
            reports[k].record(outcome)
            locks[k].close()  # the run is over: its OUT is free again
            n = sum(r.status != "pending" for r in reports)
            write(f"nemo-dask: {reports[k].log_line()} [{n}/{len(reports)} runs ended]")
            save()

        execute(cl, [plans[k] for k in order], on_run_end=ended, embedded=client is None)


def _result(reports: list[RunReport], summary: Any, t0: float) -> CallHitsManyResult:
    return CallHitsManyResult(runs=reports, summary=None if summary is None else str(summary),
                              elapsed_s=time.perf_counter() - t0,
                              failed=[r for r in reports if r.status != "done"])


def _summary_output(summary: Any, sheet: str | None) -> tuple[Any, bool]:
    """The summary's path (None: no summary), checked as an output before anything runs, and
    whether it is a stream (stdout, a device, a FIFO), written once at the end."""
    from ..storage.outputs import output_file

    target = summary if summary is not None else (
        default_summary_path(sheet) if sheet is not None else None)
    if target is None:
        return None, False
    kind, _ = output_file(target, "summary of the runs")
    return target, kind not in ("file", "url")


def _check_rows(rows: Sequence[SheetRow], fetched: str, progress: bool | None,
                worker_wait: Any, shown: str) -> list[Any]:
    """Every row's inputs fetched (URLs of input files) and checked, as call-hits checks them;
    two rows writing one OUT are refused too."""
    from ..cli import _fetch_remote_inputs
    from ..cli.call_hits import call_hits_keywords
    from ..storage.urls import with_fetched_urls
    from .api import check_call

    problems: list[str] = []
    calls: list[Any] = []
    outs: dict[str, str] = {}
    for row in rows:
        if row.problems:
            problems += row.problems
            continue
        with _row_warnings(row):
            try:
                _fetch_remote_inputs(row.options, fetched)
                keywords = call_hits_keywords(
                    row.options, say=lambda text, r=row: print(
                        f"nemo-dask: {r.where} ({r.name}): {text}", file=sys.stderr))
                call = check_call(**keywords, progress=progress, worker_wait=worker_wait)
            except (NemoDaskError, OSError) as err:
                said = _storage_fault(err, getattr(row.options, "out_dir", None),
                                      getattr(row.options, "regions", None))
                problems.append(f"{row.where}: {with_fetched_urls(str(said))}")
                continue
        calls.append(call)
        key = _out_key(call.checked.out)
        if key in outs:
            problems.append(f"{row.where}: out {call.checked.out} is also the out of "
                            f"{outs[key]}; each run needs its own output directory")
        outs.setdefault(key, row.where)
    if problems:
        raise SheetError(problems, shown)
    return calls


def _out_key(out: Any) -> str:
    from ..storage.urls import is_url

    text = str(out)
    return text.rstrip("/") if is_url(text) else os.path.realpath(os.path.expanduser(text))


def _claim(rows: Sequence[SheetRow], calls: Sequence[Any], held: contextlib.ExitStack,
           shown: str) -> list[contextlib.ExitStack]:
    """Take every run's OUT lock and check OUT against the run, writing nothing; the locks
    are held (each in its own stack, closed when its run ends) or, on a refusal, all given
    back."""
    from .output import check_out, claim_out

    _allow_open_files(len(rows), shown)
    problems: list[str] = []
    locks: list[contextlib.ExitStack] = []
    for row, call in zip(rows, calls, strict=True):
        lock = contextlib.ExitStack()
        held.callback(lock.close)
        locks.append(lock)
        with _row_warnings(row):
            try:
                lock.enter_context(claim_out(call.checked.out))
                check_out(call.checked)
            except (NemoDaskError, OSError) as err:
                said = _storage_fault(err, call.checked.out, call.checked.regions)
                problems.append(f"{row.where}: {said}")
                lock.close()
    if problems:
        raise SheetError(problems, shown)
    return locks


#: Files the driver may have open besides the runs' locks (its cluster's sockets, the store
#: being converted, ...).
_SPARE_FILES = 512


def _allow_open_files(n_runs: int, shown: str) -> None:
    """Each run's lock holds one open file until the run ends: raise this process's soft
    limit on open files to its hard limit if the sheet needs it, or refuse the sheet in one
    line if even that is too small (rather than fail runs one by one with EMFILE)."""
    try:
        import resource
    except ImportError:  # not POSIX: no such limit to raise
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = n_runs + _SPARE_FILES
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return
    if hard != resource.RLIM_INFINITY and needed > hard:
        raise InputError(f"{shown}: {n_runs} runs hold {n_runs} locks at once, but this "
                         f"process may open at most {hard} files (ulimit -Hn); split the sheet "
                         f"into sheets of at most {max(1, hard - _SPARE_FILES)} runs, or raise "
                         "the limit")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed if hard == resource.RLIM_INFINITY
                                                else hard, hard))


@contextlib.contextmanager
def _row_warnings(row: SheetRow) -> Iterator[None]:
    """Warnings about a row, said again naming it (``RUNS.tsv:4 (s03): ...``)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        warnings.warn(f"{row.where} ({row.name}): {w.message}", w.category, stacklevel=3)


def _storage_fault(err: BaseException, out: Any, regions: Any) -> BaseException:
    """``err`` as call-hits says it: a full, unwritable or unreadable file system, or an object
    store that stopped answering, in its one line (:func:`.api.driver_failure`)."""
    from .api import driver_failure

    if out is None:
        return err
    return driver_failure(err, out, regions) or err


@contextlib.contextmanager
def _contained(report: RunReport, lock: contextlib.ExitStack, call: Any) -> Iterator[None]:
    """A run's failure before its blocks are solved (OUT cannot be prepared, its plan fails;
    storage faults said as call-hits says them): that run ends, reported in its one line; the
    others go on."""
    try:
        yield
    except (NemoDaskError, OSError) as err:
        report.fail(_storage_fault(err, call.checked.out, call.checked.regions))
        lock.close()
        print(f"nemo-dask: {report.log_line()}", file=sys.stderr, flush=True)


__all__ = ("CallHitsManyResult", "call_hits_many")
