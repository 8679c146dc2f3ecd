"""The report's seqlets line up with the regions, or the report says they do not.

tfmodisco-lite records the window it ran on (``window_size``); an H5 made with ``-w 500`` must
give the same seqlet recall as one made with the default 400 over the same seqlets, and an H5
whose example indices refer to another region list must stop with a clear error rather than
report every recall as 0.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import polars as pl
import pytest

from nemo_dask.errors import InputError
from nemo_dask.finemo.importing import import_finemo
from nemo_dask.regions.source import open_regions
from nemo_dask.report import report_tables
from nemo_dask.report.seqlets import check_seqlets_line_up, recorded_window


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    import_finemo(data_dir / "finemo_out", out, regions_per_partition=100)
    return out


def _rewindow(src: Path, dst: Path, window: int | None, shift: int) -> Path:
    """A copy of ``src`` as if modisco had run on ``window`` bp: seqlet starts shift by
    ``shift`` so that they stay on the same bases; ``window`` None drops the attribute."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as h5:
        if window is None:
            del h5.attrs["window_size"]
        else:
            h5.attrs["window_size"] = np.int64(window)
        for group in ("pos_patterns", "neg_patterns"):
            for name in h5.get(group, {}):
                s = h5[group][name]["seqlets"]
                s["start"][...] = s["start"][:] + shift
                s["end"][...] = s["end"][:] + shift
    return dst


#: Columns that depend on the seqlets only (hits restricted to modisco's window depend on W).
SEQLET_COLS = ["motif_name", "num_hits_total", "num_seqlets", "num_overlaps", "num_seqlets_only",
               "seqlet_recall", "cwm_similarity"]


def _report(regions, run_dir, h5, **kw) -> pl.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return report_tables(regions, run_dir, h5, **kw).motif_report


def test_window_is_taken_from_the_h5(tmp_path, data_dir, run_dir, modisco_h5) -> None:
    assert recorded_window(modisco_h5) == 400
    base = _report(data_dir / "regions.npz", run_dir, modisco_h5)
    assert (base["seqlet_recall"] > 0.9).all()
    h5 = _rewindow(modisco_h5, tmp_path / "w500.h5", 500, 50)
    assert recorded_window(h5) == 500
    w500 = _report(data_dir / "regions.npz", run_dir, h5)
    assert w500.select(SEQLET_COLS).equals(base.select(SEQLET_COLS))
    # the wider window holds more hits
    assert (w500["num_hits_restricted"] > base["num_hits_restricted"]).all()
    # a -W that contradicts the H5 is overridden, with a warning
    with pytest.warns(UserWarning, match=r"window_size 500.*instead of -W 400"):
        got = report_tables(data_dir / "regions.npz", run_dir, h5,
                            modisco_region_width=400).motif_report
    assert got.equals(w500)
    # without the attribute, -W is used: right -W works, the default is caught
    bare = _rewindow(modisco_h5, tmp_path / "bare.h5", None, 50)
    assert _report(data_dir / "regions.npz", run_dir, bare, modisco_region_width=500).equals(w500)
    with pytest.raises(InputError, match=r"seqlets lie on the regions.*-W 400"):
        _report(data_dir / "regions.npz", run_dir, bare)


def test_seqlets_of_another_region_list_stop_the_report(tmp_path, data_dir, run_dir,
                                                        modisco_h5) -> None:
    with np.load(data_dir / "regions.npz") as d:
        arrays = {k: d[k] for k in d.files}
    # the same regions in another order, renumbered as an extractor numbers them
    order = np.random.default_rng(0).permutation(len(arrays["sequences"]))
    shuffled = {k: v[order] for k, v in arrays.items()}
    shuffled["peak_id"] = np.arange(len(order), dtype=arrays["peak_id"].dtype)
    np.savez(tmp_path / "shuffled.npz", **shuffled)
    with pytest.raises(InputError, match=r"only \d+ of \d+ sampled seqlets.*another order"):
        _report(tmp_path / "shuffled.npz", run_dir, modisco_h5)
    regions = open_regions(data_dir / "regions.npz")
    assert check_seqlets_line_up(modisco_h5, regions, 400) == 1.0
    # the same order with peak_id kept is fine: seqlets are placed by peak_id
    kept = {k: v[order] for k, v in arrays.items()}
    np.savez(tmp_path / "kept.npz", **kept)
    assert check_seqlets_line_up(modisco_h5, open_regions(tmp_path / "kept.npz"),
                                 400) == 1.0


def test_subset_of_modisco_regions_is_refused_clearly(tmp_path, data_dir, modisco_h5) -> None:
    """Seqlets of regions the input does not have (a subset of modisco's regions) cannot lie on
    it: the same clear refusal, not an index error."""
    with np.load(data_dir / "regions.npz") as d:
        np.savez(tmp_path / "first40.npz", **{k: d[k][:40] for k in d.files})
    with pytest.raises(InputError, match=r"only \d+ of \d+ sampled seqlets.*subset"):
        check_seqlets_line_up(modisco_h5, open_regions(tmp_path / "first40.npz"), 400)
