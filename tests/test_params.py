"""params.py: SolverParams, MotifParams (with the mode), RunOptions, and the API/CLI defaults
read from them."""

from __future__ import annotations

import argparse
import dataclasses
import inspect

import dask
import pytest

from nemo_dask import call_hits
from nemo_dask.cli import build_parser
from nemo_dask.errors import InputError
from nemo_dask.params import (
    DEFAULT_BATCH_SIZE,
    MODES,
    MotifParams,
    RunOptions,
    SolverParams,
)


@pytest.mark.parametrize("mode", list(MODES))
def test_mode_decides_the_contribution_kind(mode):
    """The mode is stated once, in MotifParams; the solver takes its contribution kind."""
    assert MotifParams(mode=mode).use_hypothetical is (mode[1] == "h")
    assert MotifParams(mode=mode).motif_type == ("hcwm" if mode[0] == "h" else "cwm")
    assert "mode" not in {f.name for f in dataclasses.fields(SolverParams)}


@pytest.mark.parametrize("bad", [dict(use_hypothetical="hh"), dict(step_size_max=float("nan")),
                                 dict(step_size_min=5.0), dict(step_adjust=1.0),
                                 dict(max_steps=0), dict(batch_size=0), dict(eps=-1.0)])
def test_solver_params_refuse_bad_values(bad):
    with pytest.raises(InputError, match=next(iter(bad)).split("_")[0]):
        SolverParams(**bad)


def test_batch_size_per_device_and_threads():
    assert SolverParams().batch_size_for("cpu", 3) == 3 * DEFAULT_BATCH_SIZE["cpu"]
    assert SolverParams().batch_size_for("cuda", 8) == DEFAULT_BATCH_SIZE["cuda"]
    assert SolverParams(batch_size=7).batch_size_for("cpu", 4) == 7


def test_run_options_come_from_the_config_unless_given():
    assert RunOptions().resolved() == RunOptions(device="auto", retries=2)
    with dask.config.set({"nemo_dask.call-hits.retries": 5,
                          "nemo_dask.call-hits.device": "cpu"}):
        assert RunOptions().resolved() == RunOptions(device="cpu", retries=5)
        assert RunOptions(retries=0).resolved().retries == 0
    for bad in (dict(block_size=0), dict(retries=-1), dict(device="")):
        with pytest.raises(InputError):
            RunOptions(**bad)


def test_call_hits_keywords_are_the_parameter_objects():
    """Every SolverParams/MotifParams/RunOptions field is a keyword of call_hits, with the
    dataclass's default (or None: from the configuration); but ``use_hypothetical``, which
    call_hits takes from its ``mode`` (the mode is stated once)."""
    sig = inspect.signature(call_hits).parameters
    assert "use_hypothetical" not in sig
    for cls in (SolverParams, MotifParams):
        for name in (f.name for f in dataclasses.fields(cls) if f.name != "use_hypothetical"):
            assert name in sig, name
            default = getattr(cls(), name)
            assert sig[name].default == (None if isinstance(default, (dict, tuple)) else default)
    for name in (f.name for f in dataclasses.fields(RunOptions)):
        assert sig[name].default == getattr(RunOptions(), name)
    assert not any(p.kind is p.VAR_KEYWORD for p in sig.values())
    doc = call_hits.__doc__ or ""
    assert all(s in doc for s in ("Parameters", "Returns", "Raises"))


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def test_cli_defaults_are_the_api_defaults():
    p = _subparser("call-hits")
    defaults = {a.dest: a.default for a in p._actions}
    sp, mp = SolverParams(), MotifParams()
    assert defaults["step_size_max"] == sp.step_size_max
    assert defaults["max_steps"] == sp.max_steps
    assert defaults["mode"] == mp.mode and defaults["global_lambda"] == mp.lambda_default
    # Run options: None, so that the configuration decides; the help says what it says.
    assert defaults["retries"] is None and defaults["device"] is None
    help_of = {a.dest: a.help for a in p._actions}
    assert f"default {DEFAULT_BATCH_SIZE['cpu']} per torch thread" in help_of["batch_size"]
    assert "computed" in help_of["block_size"] and "chunk size" not in help_of["block_size"]
    assert "(default 2)" in help_of["retries"]
