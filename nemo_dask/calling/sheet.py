"""A sheet of runs (``nemo-dask call-hits --runs RUNS.tsv``): one row per run, read and checked.

The sheet is tab-separated with a header line. Its columns are ``name`` (each run's own, unique)
and call-hits options by their long flag names: ``regions``, ``motifs`` (``modisco-h5``),
``out`` (``out-dir``), ``mode``, ``global-lambda``, ``peaks``, ``exact``... The allowed columns,
their types and choices are not listed here: they are read from call-hits' own parser
(:func:`nemo_dask.cli.call_hits.call_hits_parser`), and each cell is parsed by it, so an option
added to call-hits is a sheet column too. Options that apply to the whole sheet (cluster flags,
``--worker-wait``, ``--no-progress``: :data:`nemo_dask.cli.call_hits.SHEET_WIDE`) are refused
as columns. A blank cell takes the command line's value (or the ``defaults`` of
:func:`nemo_dask.call_hits_many`), else the option's default; a switch (``exact``,
``sqrt-transform``, ``overwrite``...) takes ``true``/``false`` (``yes``/``no``, ``1``/``0``).
Relative paths in cells are taken from the sheet's folder (a URL sheet's too); every path may be
an fsspec URL. Blank lines and lines starting with ``#`` are skipped.

Every problem is one line naming the row, ``RUNS.tsv:LINE: ...``; all of them are reported
together (:class:`SheetError`) before anything runs.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..storage.urls import as_text, is_url, localize, open_input, url_scheme

#: Columns that are not an option's long name: the run's name, and the sheet's short names.
NAME = "name"
ALIASES = {"motifs": "modisco-h5", "out": "out-dir"}
_TRUE = frozenset({"true", "yes", "y", "1", "on", "t"})
_FALSE = frozenset({"false", "no", "n", "0", "off", "f"})


class SheetError(InputError):
    """Rows of a sheet that cannot run: one line each (``RUNS.tsv:LINE: ...``), then a count."""

    def __init__(self, problems: Sequence[str], what: str) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        super().__init__("\n".join([*self.problems,
                                    f"({n} problem{'s' if n != 1 else ''} in {what}; "
                                    "nothing was run)"]))


@dataclass
class SheetRow:
    """One run of a sheet: how messages name it (``where``), its name, its options, and what
    is wrong with it (one line each; such a row never runs)."""

    where: str
    name: str
    options: argparse.Namespace
    problems: list[str] = field(default_factory=list)


class _ParseError(Exception):
    pass


def _raise(message: str) -> None:
    raise _ParseError(message)


@dataclass
class _Columns:
    """call-hits' parser and what a sheet may hold, derived from it."""

    parser: argparse.ArgumentParser
    actions: dict[str, argparse.Action]  # column (long flag without --) -> its action
    sheet_wide: dict[str, str]  # column -> the flag, for options given on the command line
    exclusive: list[set[str]]  # dests that exclude each other (mutually exclusive groups)
    paths: frozenset[str]  # dests whose values are paths


def columns() -> _Columns:
    """The sheet's columns, from call-hits' parser (one source of truth with the CLI)."""
    from ..cli import _DATABASE_OPTIONS, _INPUT_FILE_OPTIONS
    from ..cli.call_hits import PATH_OPTIONS, SHEET_WIDE, call_hits_parser
    from ..clusters.connect import add_cluster_arguments

    parser = call_hits_parser()
    parser.error = _raise  # type: ignore[method-assign]
    probe = argparse.ArgumentParser(add_help=False)
    add_cluster_arguments(probe)
    wide = set(SHEET_WIDE) | {a.dest for a in probe._actions}
    actions: dict[str, argparse.Action] = {}
    sheet_wide: dict[str, str] = {}
    for action in parser._actions:
        for flag in action.option_strings:
            if flag.startswith("--"):
                (sheet_wide if action.dest in wide else actions)[flag[2:]] = \
                    flag if action.dest in wide else action  # type: ignore[assignment]
    exclusive = [{a.dest for a in g._group_actions} for g in parser._mutually_exclusive_groups]
    paths = frozenset(_INPUT_FILE_OPTIONS) | frozenset(_DATABASE_OPTIONS) | frozenset(PATH_OPTIONS)
    return _Columns(parser, actions, sheet_wide, exclusive, paths)


def base_options(cols: _Columns, defaults: Any = None, where: str = "defaults"
                 ) -> argparse.Namespace:
    """Every option at its default, or at the value ``defaults`` gives it: a parsed call-hits
    command line (its per-run options count for every row), or a mapping of sheet columns."""
    if isinstance(defaults, argparse.Namespace):
        return copy.copy(defaults)
    base = cols.parser.parse_args([])
    if defaults:
        problems = _apply(cols, base, dict(defaults), where, folder=None, named=False)
        if problems:
            raise SheetError(problems, "the defaults")
    return base


def read_sheet(runs: Any, defaults: Any = None) -> tuple[str | None, list[SheetRow]]:
    """Read and parse a sheet: a TSV path or URL, or a sequence of mappings (column -> value,
    the same columns; ``None`` or ``""`` is blank; relative paths from the current directory).

    Returns
    -------
    (str or None, list of SheetRow)
        The sheet's path as given (None for mappings), and its rows in order, each with its
        options parsed (paths resolved, not yet fetched or opened) and its problems: a cell
        the option's parser refuses, a missing name, regions, motifs or out, a repeated
        name, a row of another length than the header (one line each).

    Raises
    ------
    SheetError
        Unknown, repeated or sheet-wide columns, no ``name`` column: every problem, one line
        each.
    InputError
        The sheet cannot be read, or has no header or no rows.
    """
    cols = columns()
    base = base_options(cols, defaults)
    if as_text(runs) is not None:  # a path, a URL, a UPath
        path = as_text(localize(runs))
        assert path is not None
        header_line, header, records = _read_tsv(path)
        folder = _folder(path)
        shown = os.fspath(runs) if isinstance(runs, (str, os.PathLike)) else path
        header_where = f"{shown}:{header_line}"
    elif isinstance(runs, Sequence) and all(isinstance(r, Mapping) for r in runs):
        path, folder, shown = None, None, "runs"
        header_where = shown
        header = list(dict.fromkeys(k for r in runs for k in r))
        records = [(f"runs[{i}]", [_cell(r.get(k)) for k in header]) for i, r in enumerate(runs)]
    else:
        raise InputError(f"runs: expected a sheet (a TSV path or URL) or a sequence of "
                         f"mappings (one per run), got {type(runs).__name__}")
    problems = _check_header(cols, header, header_where)
    if problems:
        raise SheetError(problems, shown)
    if not records:
        raise InputError(f"{shown}: the sheet has a header but no rows (one row per run)")
    rows: list[SheetRow] = []
    names: dict[str, str] = {}
    for where, cells in records:
        if path is not None:
            where = f"{shown}:{where}"
        options = copy.copy(base)
        if len(cells) != len(header):
            rows.append(SheetRow(where, cells[0] if cells else "", options, [
                f"{where}: {len(cells)} cells, but the header has {len(header)} columns "
                "(cells are separated by tabs; leave a cell empty for the default)"]))
            continue
        row = dict(zip(header, cells, strict=True))
        name = next((v for k, v in row.items() if _column_key(k) == NAME), "").strip()
        found = _apply(cols, options, row, where, folder)
        if not name:
            found.insert(0, f"{where}: column {NAME} is empty; give each run a name")
        elif name in names:
            found.insert(0, f"{where}: run name {name!r} is also the name of {names[name]}; "
                         "names must be unique")
        else:
            names[name] = where
        for dest, flag in (("regions", "regions"), ("modisco_h5", "motifs"),
                           ("out_dir", "out")):
            if getattr(options, dest) is None:
                found.append(f"{where}: no {flag} (give the column {flag}, or -{dest[0]} on "
                             "the command line for every row)")
        rows.append(SheetRow(where=where, name=name, options=options, problems=found))
    return path, rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return as_text(value) if as_text(value) is not None else str(value)


def _read_tsv(path: str) -> tuple[int, list[str], list[tuple[str, list[str]]]]:
    """The header's line number and cells, and (line number, cells) of each row; comments and
    blank lines skipped."""
    try:
        with open_input(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such sheet of runs") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the sheet of runs ({err})") from None
    header: list[str] | None = None
    header_line = 0
    records: list[tuple[str, list[str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in line.split("\t")]
        if header is None:
            header, header_line = cells, number
        else:
            records.append((str(number), cells))
    if header is None:
        raise InputError(f"{path}: the sheet is empty; its first line names the columns "
                         "(name, regions, motifs, out, then any call-hits option)")
    return header_line, header, records


def _check_header(cols: _Columns, header: list[str], where: str) -> list[str]:
    problems: list[str] = []
    seen: dict[str, int] = {}
    if len(header) == 1 and any(sep in header[0] for sep in (",", " ", ";")):
        return [f"{where}: the header is one column ({header[0]!r}); a sheet's cells are "
                "separated by tabs"]
    for k, column in enumerate(header, start=1):
        key = _column_key(column)
        if key in seen:
            problems.append(f"{where}: column {k} ({column}) repeats column {seen[key]}")
            continue
        seen[key] = k
        if key == NAME or key in cols.actions:
            continue
        if key in cols.sheet_wide:
            problems.append(f"{where}: column {k} ({column}): {cols.sheet_wide[key]} applies to "
                            "the whole sheet; give it on the command line")
            continue
        known = [NAME, *ALIASES, *cols.actions]
        close = difflib.get_close_matches(column.lstrip("-"), known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        problems.append(f"{where}: column {k} ({column!r}) is not a call-hits "
                        f"option; {hint}columns are name and call-hits' long option names "
                        "(nemo-dask call-hits -h)")
    if NAME not in seen:
        problems.append(f"{where}: no column {NAME} (each run's name)")
    return problems


def _column_key(column: str) -> str:
    key = column.strip()
    key = key[2:] if key.startswith("--") else key
    key = ALIASES.get(key, key)
    return key


def _apply(cols: _Columns, options: argparse.Namespace, row: dict[str, str], where: str,
           folder: str | None, named: bool = True) -> list[str]:
    """Parse a row's non-blank cells into ``options`` with call-hits' own parser; returns the
    problems found (one line each)."""
    problems: list[str] = []
    given: dict[str, str] = {}
    for column, raw in row.items():
        key = _column_key(column)
        value = _cell(raw).strip()
        if key == NAME or not value:
            continue
        action = cols.actions.get(key)
        if action is None:
            what = (f"{cols.sheet_wide[key]} applies to the whole sheet"
                    if key in cols.sheet_wide else "not a call-hits option")
            problems.append(f"{where}: {column}: {what}")
            continue
        try:
            if action.nargs == 0:  # a switch: true / false
                setattr(options, action.dest, _switch(action, value))
            else:
                if action.dest in cols.paths:
                    value = _resolve_option(action.dest, value, folder)
                flag = f"--{key}"
                tokens = ([flag, *value.split()] if action.nargs in ("+", "*")
                          or isinstance(action.nargs, int) and action.nargs > 1
                          else [f"{flag}={value}"])
                cols.parser.parse_args(tokens, namespace=options)
        except _ParseError as err:
            problems.append(f"{where}: column {column}: {err}")
            continue
        given[action.dest] = column
    # A cell of a mutually exclusive pair (--global-scale, --global-scale-from) replaces the
    # other's value from the command line; both in one row is refused.
    for group in cols.exclusive:
        here = [d for d in group if d in given]
        if len(here) > 1:
            problems.append(f"{where}: columns {' and '.join(given[d] for d in here)} exclude "
                            "each other; fill one of them")
        elif here:
            for action in cols.parser._actions:
                if action.dest in group and action.dest != here[0]:
                    setattr(options, action.dest, action.default)
    return problems


def _switch(action: argparse.Action, value: str) -> Any:
    word = value.lower()
    if word in _TRUE:
        return action.const
    if word in _FALSE:
        return action.default
    raise _ParseError(f"{value!r} is not true or false (a switch: true/false, yes/no, 1/0)")


def _folder(path: str) -> str:
    if is_url(path):
        return path.rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(os.path.expanduser(path)))


def _resolve_option(dest: str, value: str, folder: str | None) -> str:
    """A path cell taken from the sheet's folder; ``jaspar...`` (a database name) and the
    ``:PERCENTILE`` of ``--global-scale-from`` kept."""
    if dest in ("annotate", "database") and (value.lower() == "jaspar"
                                             or value.lower().startswith("jaspar:")):
        return value
    if dest == "global_scale_from":
        from ..regions.scale import parse_scale_from

        store, _ = parse_scale_from(value)
        return resolve_path(store, folder) + value[len(store):]
    return resolve_path(value, folder)


def resolve_path(value: str, folder: str | None) -> str:
    """``value`` relative to ``folder`` (a local folder or a URL's); URLs, absolute paths and
    ``~/...`` stay as they are; without a folder, relative to the current directory."""
    if url_scheme(value) is not None:
        return value
    expanded = os.path.expanduser(value)
    if os.path.isabs(expanded) or folder is None:
        return expanded
    if is_url(folder):
        return posixpath.join(folder, value)
    return os.path.join(folder, expanded)


__all__ = ("SheetError", "SheetRow", "columns", "read_sheet", "resolve_path")
