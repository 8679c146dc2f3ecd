"""Motif loading against finemo 0.41's motif_data.tsv / motif_cwms.npy and its loader."""

from __future__ import annotations

import h5py
import numpy as np
import polars as pl
import pytest

from nemo_dask.errors import InputError
from nemo_dask.motifs import (
    load_motifs,
    read_mapping,
    read_names_list,
    read_trim_coords,
    trim_window,
)
from nemo_dask.params import MotifParams


@pytest.mark.parametrize("mode,ref", [("pp", "finemo_out"), ("hh", "finemo_out_hh")])
def test_matches_finemo_outputs(data_dir, modisco_h5, mode, ref):
    motifs = load_motifs(modisco_h5, MotifParams(mode=mode))
    assert np.array_equal(motifs.cwms, np.load(data_dir / ref / "motif_cwms.npy"))
    table = pl.read_csv(data_dir / ref / "motif_data.tsv", separator="\t")
    assert motifs.table.equals(table.cast(motifs.table.schema))
    assert motifs.trim_masks.sum(axis=1).tolist() == (table["motif_end"] - table["motif_start"]).to_list()


def test_reverse_complement_and_masks(modisco_h5):
    m = load_motifs(modisco_h5)
    w = m.width
    for k in range(0, m.n_motifs, 2):
        assert np.array_equal(m.cwms[k + 1], m.cwms[k][::-1, ::-1])
        s, e = m.table.row(k, named=True)["motif_start"], m.table.row(k, named=True)["motif_end"]
        assert m.table.row(k + 1, named=True)["motif_start"] == w - e
        assert np.flatnonzero(m.trim_masks[k]).tolist() == list(range(s, e))


def test_trim_window():
    cwm = np.zeros((4, 10))
    cwm[0, 2] = 0.2  # below 0.3 x max: trimmed
    cwm[1, 3] = 1.0
    cwm[2, 5] = -0.5  # counts by absolute value
    cwm[3, 7] = 0.3
    assert trim_window(cwm, 0.3) == (3, 8)
    assert trim_window(cwm, 0.0) == (0, 10)
    assert trim_window(cwm, 1.0) == (3, 4)


def test_options_match_finemo_loader(tmp_path, modisco_h5):
    finemo_io = pytest.importorskip("finemo.data_io")
    include = ["pos_patterns.pattern_2", "neg_patterns.pattern_0", "pos_patterns.pattern_0"]
    names = {"pos_patterns.pattern_0": "CTCF", "neg_patterns.pattern_0": "REST"}
    lambdas = {"pos_patterns.pattern_0": 0.9, "pos_patterns.pattern_2": 0.5}
    thresholds = {"CTCF": 0.5}
    coords = {"REST": (10, 40)}
    params = MotifParams(mode="hp", trim_threshold=0.2, lambda_default=0.6,
                         motifs_include=tuple(include), motif_names=names, motif_lambdas=lambdas,
                         trim_thresholds=thresholds, trim_coords=coords)
    ours = load_motifs(modisco_h5, params)
    df, cwms, masks, _ = finemo_io.load_modisco_motifs(
        str(modisco_h5), coords, thresholds, 0.2, "hcwm", include, names, lambdas, 0.6, True)
    assert np.array_equal(ours.cwms, cwms)
    assert np.array_equal(ours.trim_masks, masks)
    assert ours.table.equals(df.cast(ours.table.schema))
    assert ours.table["motif_name"].unique(maintain_order=True).to_list() == [
        "CTCF", "pos_patterns.pattern_2", "REST"]


def test_option_files(tmp_path):
    (tmp_path / "inc.txt").write_text("a\nb\textra\n")
    (tmp_path / "map.tsv").write_text("a\t0.5\nb\t1\n")
    (tmp_path / "coords.tsv").write_text("a\t3\t9\n")
    assert read_names_list(tmp_path / "inc.txt") == ("a", "b")
    assert read_mapping(tmp_path / "map.tsv", float) == {"a": 0.5, "b": 1.0}
    assert read_trim_coords(tmp_path / "coords.tsv") == {"a": (3, 9)}
    (tmp_path / "bad.tsv").write_text("a\tx\n")
    with pytest.raises(InputError, match="line 1"):
        read_mapping(tmp_path / "bad.tsv", float)


def test_bad_inputs(tmp_path, modisco_h5):
    with pytest.raises(InputError, match="does not exist"):
        load_motifs(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="not a readable HDF5"):
        load_motifs(tmp_path / "junk.h5")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(modisco_h5.read_bytes()[:4096])
    with pytest.raises(InputError):
        load_motifs(truncated)
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f.create_group("pos_patterns")
    with pytest.raises(InputError, match="no patterns"):
        load_motifs(tmp_path / "empty.h5")
    with h5py.File(tmp_path / "nocwm.h5", "w") as f:
        f.create_group("pos_patterns/pattern_0").create_dataset("sequence", data=np.ones((30, 4)))
    with pytest.raises(InputError, match="contrib_scores"):
        load_motifs(tmp_path / "nocwm.h5")
    with pytest.raises(InputError, match="unique"):
        load_motifs(modisco_h5, MotifParams(motif_names={"pos_patterns.pattern_0": "X",
                                                         "pos_patterns.pattern_1": "X"}))
    with pytest.raises(InputError, match="absent"):
        load_motifs(modisco_h5, MotifParams(motifs_include=("pos_patterns.pattern_99",)))
    for bad in (dict(mode="xx"), dict(lambda_default=0.0), dict(trim_threshold=1.5),
                dict(motif_lambdas={"a": -1.0})):
        with pytest.raises(InputError):
            MotifParams(**bad)


def test_motifs_trimmed_to_width_zero_are_refused_in_one_line(modisco_h5):
    """A motif whose trim mask is empty is all zero once trimmed: it can never be called, and
    with every motif so the solver crashed (IndexError) where finemo returns no hits. Such a
    set is refused where it is made, naming the motifs and the options that trim them."""
    from nemo_dask.motifs import Motifs

    motifs = load_motifs(modisco_h5)
    masks = motifs.trim_masks.copy()
    masks[[2, 3]] = 0
    with pytest.raises(InputError) as err:
        Motifs(motifs.cwms, masks, motifs.lambdas, motifs.table)
    text = str(err.value)
    assert len(text.splitlines()) == 1
    assert text.startswith("2 of 12 motifs are trimmed to width 0")
    assert "pos_patterns.pattern_1+" in text and "pos_patterns.pattern_1-" in text
    assert "-t/--cwm-trim-threshold" in text and "-R/--cwm-trim-coords" in text
    with pytest.raises(InputError, match="^every motif is trimmed to width 0"):
        Motifs(motifs.cwms, np.zeros_like(masks), motifs.lambdas, motifs.table)
