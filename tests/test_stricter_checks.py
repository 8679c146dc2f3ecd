"""Parameters finemo 0.41 accepts and mishandles are refused in one line before any work, and
the README lists each (issue 29, item 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

import nemo_dask
from nemo_dask.cli import main
from nemo_dask.errors import InputError

ROOT = Path(__file__).parents[1]
DATA = ROOT / "tests" / "data"

CASES = [
    (["-i", "5", "-s", "3"], "step_size_min"),
    (["-S", "0"], "max_steps"),
    (["-j", "1.0"], "step_adjust"),
    (["-j", "0"], "step_adjust"),
    (["-c", "0"], "convergence_tol"),
    (["-s", "0"], "step_size_max"),
    (["-t", "1.5"], "trim_threshold"),
    (["-l", "0"], "lambda_default"),
    (["-b", "0"], "batch_size"),
]


@pytest.mark.parametrize(("flags", "name"), CASES)
def test_refused_in_one_line_before_any_work(flags: list[str], name: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["call-hits", "-r", str(DATA / "regions.npz"), "-m", str(DATA / "modisco.h5"),
                 "-o", str(out), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and name in err, err
    assert not out.exists()


def test_eps_refused_by_the_api(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="eps"):
        nemo_dask.call_hits(DATA / "regions.npz", DATA / "modisco.h5", tmp_path / "o", eps=0.0)


def test_readme_lists_every_stricter_check() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Deliberate differences from finemo's checks", 1)[1]
    section = section.split("\n## ", 1)[0]
    for flag in ("-i/--step-size-min", "-S/--max-steps", "-j/--step-adjust",
                 "-c/--convergence-tol", "eps", "-t", "lambda", "-b"):
        assert flag in section, flag
