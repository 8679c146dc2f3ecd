"""Malformed inputs: each gives one clear InputError (file, field, fix) and leaves no store."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from nemo_dask.cli import main
from nemo_dask.errors import InputError
from nemo_dask.regions.convert import (
    convert_bigwig,
    convert_bpnet_h5,
    convert_chrombpnet_h5,
    convert_modisco,
    convert_npz,
)
from nemo_dask.regions.source import open_regions

D = Path(__file__).parents[1] / "data" / "convert"


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    with np.load(D / "ohe.npz") as o, np.load(D / "shap.npz") as s:
        return {"ohe": o["arr_0"][:6], "shap": s["arr_0"][:6]}


def expect_error(tmp_path: Path, convert: Callable[[Path], object], *needles: str) -> str:
    """``convert(out)`` raises InputError whose message holds every needle; nothing is left."""
    out = tmp_path / "out.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError) as info:
            convert(out)
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    assert "\n" not in message
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.zarr")]
    return message


def _peaks(tmp_path: Path, n: int, edit: Callable[[list[str]], list[str]] | None = None) -> Path:
    lines = (D / "peaks.narrowPeak").read_text().splitlines()[:n]
    path = tmp_path / "peaks.narrowPeak"
    lines = edit(lines) if edit else lines
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_missing_files(tmp_path: Path) -> None:
    expect_error(tmp_path, lambda o: convert_modisco(tmp_path / "no.npz", D / "shap.npz", o),
                 "no.npz", "not found")
    expect_error(tmp_path, lambda o: convert_chrombpnet_h5(tmp_path / "no.h5", o),
                 "no.h5", "not found")
    expect_error(tmp_path, lambda o: convert_npz(tmp_path / "r.npz", o), "r.npz", "not found")
    expect_error(tmp_path, lambda o: convert_modisco(D / "ohe.npz", D / "shap.npz", o,
                                                     peaks=tmp_path / "p.bed"), "p.bed")


def test_missing_keys(tmp_path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.savez(tmp_path / "named.npz", seqs=arrays["ohe"])
    expect_error(tmp_path, lambda o: convert_modisco(tmp_path / "named.npz", D / "shap.npz", o),
                 "named.npz", "'arr_0'", "['seqs']", "numpy.savez")
    np.savez(tmp_path / "r.npz", sequences=arrays["ohe"][:, :, :1000])
    expect_error(tmp_path, lambda o: convert_npz(tmp_path / "r.npz", o),
                 "r.npz", "'contributions' missing")
    ref = dict(np.load(D / "expected_modisco.npz"))
    del ref["peak_name"]
    np.savez(tmp_path / "r2.npz", **ref)
    expect_error(tmp_path, lambda o: convert_npz(tmp_path / "r2.npz", o),
                 "r2.npz", "['peak_name']")
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["raw/seq"] = arrays["ohe"]
    expect_error(tmp_path, lambda o: convert_chrombpnet_h5(tmp_path / "c.h5", o),
                 "c.h5", "'shap/seq' missing", "raw/seq")
    expect_error(tmp_path, lambda o: convert_bpnet_h5(D / "chrombpnet.h5", o),
                 "chrombpnet.h5", "'input_seqs' missing")


def test_shape_mismatches(tmp_path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.save(tmp_path / "ohe.npy", arrays["ohe"])
    np.save(tmp_path / "shap5.npy", arrays["shap"][:5])
    expect_error(tmp_path, lambda o: convert_modisco(tmp_path / "ohe.npy", tmp_path / "shap5.npy",
                                                     o), "shap5.npy", "(5, 4, 1040)",
                 "(6, 4, 1040)")
    np.save(tmp_path / "ohe_t.npy", arrays["ohe"].swapaxes(1, 2))
    expect_error(tmp_path, lambda o: convert_modisco(tmp_path / "ohe_t.npy", tmp_path / "shap5.npy",
                                                     o), "ohe_t.npy", "transpose")
    np.save(tmp_path / "shap.npy", arrays["shap"])
    expect_error(tmp_path, lambda o: convert_modisco(tmp_path / "ohe.npy", tmp_path / "shap.npy",
                                                     o, peaks=_peaks(tmp_path, 7)),
                 "peaks.narrowPeak", "7 peak rows", "6 regions")
    ref = dict(np.load(D / "expected_modisco.npz"))
    np.savez(tmp_path / "r.npz", **{**ref, "contributions": ref["contributions"][:, :, :998]})
    expect_error(tmp_path, lambda o: convert_npz(tmp_path / "r.npz", o), "r.npz",
                 "'contributions' has shape (30, 4, 998)")
    np.savez(tmp_path / "r.npz", **{**ref, "chr_id": ref["chr_id"][:29]})
    expect_error(tmp_path, lambda o: convert_npz(tmp_path / "r.npz", o), "r.npz", "'chr_id'",
                 "(30,)")
    with h5py.File(tmp_path / "c2.h5", "w") as f:
        f["raw/seq"] = arrays["ohe"]
        f["shap/seq"] = arrays["shap"][:, :, :1000]
    expect_error(tmp_path, lambda o: convert_chrombpnet_h5([D / "chrombpnet.h5",
                                                            tmp_path / "c2.h5"], o),
                 "c2.h5", "shap/seq", "same regions")


def test_widths(tmp_path: Path) -> None:
    expect_error(tmp_path, lambda o: convert_modisco(D / "ohe.npz", D / "shap.npz", o,
                                                     region_width=999), "999", "odd", "-w 998")
    expect_error(tmp_path, lambda o: convert_bpnet_h5(D / "bpnet.h5", o, region_width=1100),
                 "bpnet.h5", "1040 bp", "-w 1040")
    expect_error(tmp_path, lambda o: convert_bigwig(D / "peaks_bw.narrowPeak", D / "genome.fa",
                                                    D / "contribs.bw", o, region_width=1001),
                 "odd")
    ref = dict(np.load(D / "expected_modisco.npz"))
    np.savez(tmp_path / "odd.npz", **{**ref, "sequences": ref["sequences"][:, :, :999],
                                      "contributions": ref["contributions"][:, :, :999]})
    expect_error(tmp_path, lambda o: convert_npz(tmp_path / "odd.npz", o), "odd.npz", "odd")


def test_nan_and_inf_are_zeroed_with_a_count(tmp_path: Path, arrays: dict[str, np.ndarray]
                                             ) -> None:
    shap = np.nan_to_num(arrays["shap"])
    shap[0, 0, 100:103] = np.inf
    shap[1, 2, 500] = -np.inf
    shap[2, 1, 600:610] = np.nan
    np.save(tmp_path / "ohe.npy", arrays["ohe"])
    np.save(tmp_path / "shap.npy", shap)
    with pytest.warns(UserWarning, match=r"shap\.npy .*10 NaN and 4 infinite"):
        regions = convert_modisco(tmp_path / "ohe.npy", tmp_path / "shap.npy",
                                  tmp_path / "s.zarr", chunk_size=2)
    got = regions.read_block(0, 6).contributions
    assert np.isfinite(got).all()
    assert not got[0, 0, 80:83].any() and got[1, 2, 480] == 0 and not got[2, 1, 580:590].any()
    expected = shap[:, :, 20:1020].astype(np.float16)
    expected[~np.isfinite(expected)] = 0
    np.testing.assert_array_equal(got, expected)


def test_non_one_hot_sequences(tmp_path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.save(tmp_path / "shap.npy", arrays["shap"])
    for name, edit in [("two", lambda a: a.__setitem__((3, slice(0, 2), 520), 1)),
                       ("value", lambda a: a.__setitem__((4, 0, 530), 2)),
                       ("float", lambda a: a.__setitem__((5, 1, 540), 0.5))]:
        ohe = arrays["ohe"].astype(np.float32 if name == "float" else np.int8)
        edit(ohe)
        np.save(tmp_path / f"ohe_{name}.npy", ohe)
        region = {"two": 3, "value": 4, "float": 5}[name]
        expect_error(tmp_path, lambda o, n=name: convert_modisco(tmp_path / f"ohe_{n}.npy",
                                                                 tmp_path / "shap.npy", o),
                     f"ohe_{name}.npy", f"region {region}", "not one-hot")
    # outside finemo's window the sequences are not used, hence not checked
    ohe = arrays["ohe"].copy()
    ohe[0, :, 5] = 1
    np.save(tmp_path / "ohe_flank.npy", ohe)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        convert_modisco(tmp_path / "ohe_flank.npy", tmp_path / "shap.npy", tmp_path / "ok.zarr")


def test_chromosomes_absent(tmp_path: Path) -> None:
    peaks = tmp_path / "p.narrowPeak"
    peaks.write_text((D / "peaks_bw.narrowPeak").read_text().replace("chrB\t", "chrZ\t", 1))
    expect_error(tmp_path, lambda o: convert_bigwig(peaks, D / "genome.fa", D / "contribs.bw", o),
                 "genome.fa", "['chrZ']", "absent from the FASTA")
    shutil.copy(D / "genome.fa", tmp_path / "g.fa")
    with open(tmp_path / "g.fa", "a") as f:
        f.write(">chrZ\nACGT\n")
    expect_error(tmp_path, lambda o: convert_bigwig(peaks, tmp_path / "g.fa", D / "contribs.bw",
                                                    o), "contribs.bw", "['chrZ']", "bigWig")


def test_unreadable_and_truncated_files(tmp_path: Path, arrays: dict[str, np.ndarray]) -> None:
    data = (D / "shap.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    expect_error(tmp_path, lambda o: convert_modisco(D / "ohe.npz", tmp_path / "cut.npz", o),
                 "cut.npz", "truncated")
    np.save(tmp_path / "shap.npy", arrays["shap"])
    data = (tmp_path / "shap.npy").read_bytes()
    np.save(tmp_path / "ohe.npy", arrays["ohe"])
    (tmp_path / "cut.npy").write_bytes(data[:-1000])
    expect_error(tmp_path, lambda o: convert_modisco(tmp_path / "ohe.npy", tmp_path / "cut.npy",
                                                     o), "cut.npy", "truncated")
    (tmp_path / "junk.npy").write_bytes(b"hello world" * 10)
    expect_error(tmp_path, lambda o: convert_modisco(tmp_path / "ohe.npy", tmp_path / "junk.npy",
                                                     o), "junk.npy", "neither a .npy nor an .npz")
    # damaged deflate stream inside a member: found while streaming, after chunks were written
    raw = bytearray((D / "expected_modisco.npz").read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = bytes(64)
    (tmp_path / "bad.npz").write_bytes(bytes(raw))
    expect_error(tmp_path, lambda o: convert_npz(tmp_path / "bad.npz", o, chunk_size=2),
                 "bad.npz", "damaged or truncated")
    h5 = (D / "bpnet.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(h5[: len(h5) // 2])
    expect_error(tmp_path, lambda o: convert_bpnet_h5(tmp_path / "cut.h5", o), "cut.h5",
                 "cannot open as HDF5")
    (tmp_path / "junk.bw").write_bytes(b"\0" * 4096)
    expect_error(tmp_path, lambda o: convert_bigwig(D / "peaks_bw.narrowPeak", D / "genome.fa",
                                                    tmp_path / "junk.bw", o), "junk.bw",
                 "not a readable bigWig")
    (tmp_path / "junk.fa").write_bytes(b"\x00\x01garbage\n")
    expect_error(tmp_path, lambda o: convert_bigwig(D / "peaks_bw.narrowPeak",
                                                    tmp_path / "junk.fa", D / "contribs.bw", o),
                 "junk.fa")


def test_malformed_narrowpeak(tmp_path: Path) -> None:
    def run(edit):
        peaks = _peaks(tmp_path, 30, edit)
        return lambda o: convert_chrombpnet_h5(D / "chrombpnet.h5", o, peaks=peaks)

    expect_error(tmp_path, run(lambda ls: ls[:4] + [""] + ls[5:]), "line 5", "column 1",
                 "blank")
    expect_error(tmp_path, run(lambda ls: ["track name=x"] + ls[1:]), "line 1", "track")
    expect_error(tmp_path, run(lambda ls: ls[:2] + [ls[2].replace("\t", "\tx", 1)] + ls[3:]),
                 "peaks.narrowPeak", "not valid narrowPeak", "10 tab-separated")
    expect_error(tmp_path, run(lambda ls: [],), "is empty")
    expect_error(tmp_path, run(lambda ls: ls[:3] + ["\t".join(ls[3].split("\t")[:3])] + ls[4:]),
                 "line 4", "column 10")


def test_bad_options(tmp_path: Path) -> None:
    expect_error(tmp_path, lambda o: convert_bpnet_h5(D / "bpnet.h5", o, chunk_size=0),
                 "chunk size")
    expect_error(tmp_path, lambda o: convert_bpnet_h5(D / "bpnet.h5", o, contrib_dtype="int8"),
                 "float16")
    expect_error(tmp_path, lambda o: convert_modisco(D / "ohe.npz", [], o), "-a")


def test_cli_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["convert", "modisco", "-s", str(D / "ohe.npz"), "-a", str(D / "shap.npz"),
               "-w", "999", "-o", str(tmp_path / "s.zarr"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "odd" in err[0]
    assert not (tmp_path / "s.zarr").exists()
    with pytest.raises(InputError):
        open_regions(tmp_path / "s.zarr")
