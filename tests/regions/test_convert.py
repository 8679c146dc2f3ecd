"""Every converter against finemo 0.41's own regions.npz for the same inputs (tests/data/convert).

The expected_*.npz files were written by ``finemo extract-regions-*`` (commands in
tests/data/README.md); the store must hold the same arrays bit for bit.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from nemo_dask.cli import main
from nemo_dask.regions.convert import (
    convert_bigwig,
    convert_bpnet_h5,
    convert_chrombpnet_h5,
    convert_modisco,
    convert_npz,
)
from nemo_dask.regions.source import open_regions

D = Path(__file__).parents[1] / "data" / "convert"
PEAK_KEYS = [("chr", "chr"), ("chr_id", "chr_id"), ("peak_region_start", "start"),
             ("peak_id", "peak_id"), ("peak_name", "peak_name")]


def bigwig_expected() -> dict[str, np.ndarray]:
    """finemo's expected_bigwig.npz with region 0 (which starts at -150) as it must be.

    finemo writes that region all zero (pyfaidx returns nothing for a negative start); the store
    pads the 150 bp before the chromosome and keeps the 850 bp inside it. Those are read here
    straight from genome.fa and contribs.bw (float16 of the bigWig values, missing = 0).
    """
    import pyBigWig
    import pyfaidx

    ref = {k: v.copy() for k, v in np.load(D / "expected_bigwig.npz").items()}
    chrom, begin = str(ref["chr"][0]), int(ref["start"][0])
    assert begin == -150 and not ref["sequences"][0].any()
    with pyfaidx.Fasta(str(D / "genome.fa")) as fa:
        seq = str(fa[chrom][0:1000 + begin]).upper()
    ref["sequences"][0, :, -begin:] = np.array([[c == b for c in seq] for b in "ACGT"],
                                                dtype=np.int8)
    bw = pyBigWig.open(str(D / "contribs.bw"))
    values = np.nan_to_num(np.array(bw.values(chrom, 0, 1000 + begin)))
    bw.close()
    ref["contributions"][0, -begin:] = values.astype(np.float16)
    assert ref["sequences"][0].sum() > 800 and ref["contributions"][0].any()
    return ref


def assert_same_as_npz(regions, npz: Path | dict) -> None:
    if isinstance(npz, Path) and npz.name == "expected_bigwig.npz":
        npz = bigwig_expected()
    ref = npz if isinstance(npz, dict) else dict(np.load(npz))
    block = regions.read_block(0, regions.n_regions)
    np.testing.assert_array_equal(block.sequences, ref["sequences"])
    assert block.sequences.dtype == np.int8
    assert block.contributions.shape == ref["contributions"].shape
    assert block.contributions.dtype == ref["contributions"].dtype
    # bit-exact, NaN-safe
    np.testing.assert_array_equal(block.contributions.view(np.uint16),
                                  ref["contributions"].view(np.uint16))
    assert regions.has_peaks == ("chr" in ref)
    if "chr" in ref:
        for column, key in PEAK_KEYS:
            assert regions.peaks[column].to_list() == ref[key].tolist(), column
        assert block.peaks.equals(regions.peaks)


def _quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


CASES = {
    "modisco": lambda out, cs: convert_modisco(
        D / "ohe.npz", D / "shap.npz", out, peaks=D / "peaks.narrowPeak", chunk_size=cs),
    "modisco-2files-C-w800": lambda out, cs: convert_modisco(
        D / "ohe.npz", [D / "shap.npz", D / "shap2.npy"], out, peaks=D / "peaks.narrowPeak",
        chrom_order=D / "chrom_order.txt", region_width=800, chunk_size=cs),
    "chrombpnet-h5": lambda out, cs: convert_chrombpnet_h5(
        [D / "chrombpnet.h5"], out, peaks=D / "peaks.narrowPeak", chunk_size=cs),
    "bpnet-h5-nopeaks": lambda out, cs: convert_bpnet_h5(D / "bpnet.h5", out, chunk_size=cs),
    "bigwig": lambda out, cs: convert_bigwig(
        D / "peaks_bw.narrowPeak", D / "genome.fa", [D / "contribs.bw"], out, chunk_size=cs),
}
EXPECTED = {"modisco": "expected_modisco.npz", "modisco-2files-C-w800": "expected_modisco2.npz",
            "chrombpnet-h5": "expected_modisco.npz",
            "bpnet-h5-nopeaks": "expected_bpnet_nopeaks.npz", "bigwig": "expected_bigwig.npz"}


@pytest.mark.parametrize("chunk_size", [None, 7])
@pytest.mark.parametrize("case", list(CASES))
def test_equals_finemo(case: str, chunk_size: int | None, tmp_path: Path) -> None:
    regions = _quiet(CASES[case], tmp_path / "s.zarr", chunk_size)
    assert regions.chunk_size == (chunk_size or 30)
    assert_same_as_npz(regions, D / EXPECTED[case])
    assert regions.attrs["source"]["format"] in case


def test_full_fixture_regions_npz(tmp_path: Path, data_dir: Path) -> None:
    for name, kind in [("regions.npz", "hypothetical"), ("regions_bw.npz", "projected")]:
        regions = convert_npz(data_dir / name, tmp_path / name, progress=False)
        assert regions.contrib_kind == kind and regions.n_regions == 350
        assert_same_as_npz(regions, data_dir / name)


def test_npz_without_coordinates_and_float32(tmp_path: Path) -> None:
    regions = convert_npz(D / "expected_bpnet_nopeaks.npz", tmp_path / "a.zarr",
                          contrib_dtype="float32")
    ref = dict(np.load(D / "expected_bpnet_nopeaks.npz"))
    assert not regions.has_peaks and regions.contrib_dtype == np.float32
    block = regions.read_block(0, 30)
    np.testing.assert_array_equal(block.contributions, ref["contributions"].astype(np.float32))


def test_float32_contributions_average_in_float32(tmp_path: Path) -> None:
    regions = _quiet(convert_modisco, D / "ohe.npz", [D / "shap.npz", D / "shap2.npy"],
                     tmp_path / "s.zarr", contrib_dtype="float32", chunk_size=16)
    with np.load(D / "shap.npz") as d:
        a = np.nan_to_num(d["arr_0"][:, :, 20:1020])
    b = np.load(D / "shap2.npy")[:, :, 20:1020]
    got = regions.read_block(0, 30).contributions
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.mean([a, np.nan_to_num(b)], axis=0, dtype=np.float32))


def test_nan_warning_counts(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match=r"100 NaN and 0 infinite .* set to 0"):
        convert_chrombpnet_h5(D / "chrombpnet.h5", tmp_path / "s.zarr")
    regions = open_regions(tmp_path / "s.zarr")
    assert list(regions.attrs["zeroed_contributions"].values()) == [{"nan": 100, "inf": 0}]


def test_bigwig_region_before_start_and_past_end_are_padded(tmp_path: Path) -> None:
    """Region 0 starts at -150 (finemo writes zeros; the store pads the first 150 bp and keeps
    the rest); cutting chrB short makes the last region run past the chromosome end, where
    finemo 0.41 crashes: the store zero-pads it the same way."""
    ref = bigwig_expected()
    assert ref["start"][0] < 0 and not ref["sequences"][0, :, :150].any()
    lines = (D / "genome.fa").read_text().splitlines()
    names = [i for i, line in enumerate(lines) if line.startswith(">")]
    last_start = int(ref["start"][-1])
    keep = last_start + 600  # 400 bp of the last region fall past the new end
    chr_b = "".join(lines[names[1] + 1:])[:keep]
    fasta = tmp_path / "genome.fa"
    fasta.write_text("\n".join(lines[:names[1] + 1]) + "\n"
                     + "\n".join(chr_b[i:i + 60] for i in range(0, keep, 60)) + "\n")
    with pytest.warns(UserWarning) as record:
        regions = convert_bigwig(D / "peaks_bw.narrowPeak", fasta, D / "contribs.bw",
                                 tmp_path / "s.zarr", chunk_size=8)
    messages = " ".join(str(w.message) for w in record)
    assert "1 region(s) run past the end" in messages and "1 region(s) start before" in messages
    expected = {k: v.copy() for k, v in ref.items()}
    expected["sequences"][-1, :, 600:] = 0
    expected["contributions"][-1, 600:] = 0
    assert_same_as_npz(regions, expected)
    assert regions.attrs["notes"] == {"regions_past_chromosome_end": 1,
                                      "regions_before_chromosome_start": 1}


def test_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    _quiet(convert_modisco, D / "ohe.npz", D / "shap.npz", out)
    from nemo_dask.errors import OutputExistsError

    with pytest.raises(OutputExistsError, match="--overwrite"):
        convert_modisco(D / "ohe.npz", D / "shap.npz", out)
    regions = _quiet(convert_modisco, D / "ohe.npz", D / "shap.npz", out,
                     peaks=D / "peaks.narrowPeak", overwrite=True)
    assert regions.has_peaks and sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]
    (tmp_path / "file.txt").write_text("keep me")
    # A file is not a store: refused, with or without --overwrite (issue 20's message).
    with pytest.raises(OutputExistsError, match="is a file, but the regions store must be a "
                       "directory"):
        convert_modisco(D / "ohe.npz", D / "shap.npz", tmp_path / "file.txt", overwrite=True)
    assert (tmp_path / "file.txt").read_text() == "keep me"
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "data.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="not a nemo_dask regions store"):
        convert_modisco(D / "ohe.npz", D / "shap.npz", tmp_path / "foreign", overwrite=True)
    assert (tmp_path / "foreign" / "data.txt").read_text() == "keep me"


def test_interrupted_conversion_leaves_nothing_complete(tmp_path: Path, monkeypatch) -> None:
    from nemo_dask.regions.convert import _writer

    calls = []
    original = _writer.StoreWriter.write

    def failing(self, start, *args):
        calls.append(start)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, start, *args)

    monkeypatch.setattr(_writer.StoreWriter, "write", failing)
    with pytest.raises(KeyboardInterrupt):
        _quiet(convert_modisco, D / "ohe.npz", D / "shap.npz", tmp_path / "s.zarr", chunk_size=4)
    assert list(tmp_path.iterdir()) == []
    # an existing store survives a failed --overwrite untouched
    monkeypatch.setattr(_writer.StoreWriter, "write", original)
    _quiet(convert_modisco, D / "ohe.npz", D / "shap.npz", tmp_path / "s.zarr", chunk_size=4)
    monkeypatch.setattr(_writer.StoreWriter, "write", failing)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        _quiet(convert_bigwig, D / "peaks_bw.narrowPeak", D / "genome.fa", D / "contribs.bw",
               tmp_path / "s.zarr", chunk_size=4, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]
    assert open_regions(tmp_path / "s.zarr").contrib_kind == "hypothetical"


def test_cli_every_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = {
        "npz": ["npz", "-r", D / "expected_modisco.npz"],
        "modisco": ["modisco", "-s", D / "ohe.npz", "-a", D / "shap.npz", D / "shap2.npy",
                    "-p", D / "peaks.narrowPeak", "-C", D / "chrom_order.txt", "-w", "800"],
        "chrombpnet": ["chrombpnet-h5", "-c", D / "chrombpnet.h5", "-p", D / "peaks.narrowPeak"],
        "bpnet": ["bpnet-h5", "-c", D / "bpnet.h5"],
        "bigwig": ["bigwig", "-p", D / "peaks_bw.narrowPeak", "-f", D / "genome.fa",
                   "-b", D / "contribs.bw"],
    }
    expected = {"npz": "expected_modisco.npz", "modisco": "expected_modisco2.npz",
                "chrombpnet": "expected_modisco.npz", "bpnet": "expected_bpnet_nopeaks.npz",
                "bigwig": "expected_bigwig.npz"}
    for name, argv in runs.items():
        out = tmp_path / f"{name}.zarr"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rc = main(["convert", *map(str, argv), "-o", str(out), "--chunk-size", "8",
                       "--no-progress"])
        assert rc == 0, name
        assert_same_as_npz(open_regions(out), D / expected[name])
    assert "wrote" in capsys.readouterr().err
    # an existing store without --overwrite: one line, exit status 2
    rc = main(["convert", "bpnet-h5", "-c", str(D / "bpnet.h5"), "-o", str(tmp_path / "bpnet.zarr")])
    err = capsys.readouterr().err
    assert rc == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1


def test_progress_bar_off_without_terminal(tmp_path: Path) -> None:
    """In a subprocess whose stderr is a pipe there is no bar; --no-progress also silences it."""
    shutil.copy(D / "expected_bigwig.npz", tmp_path / "r.npz")
    cmd = [sys.executable, "-m", "nemo_dask", "convert", "npz", "-r", str(tmp_path / "r.npz"),
           "-o", str(tmp_path / "s.zarr"), "--chunk-size", "4"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "regions/s" not in proc.stderr and "it/s" not in proc.stderr
    from nemo_dask.regions.convert._writer import progress_bar

    with progress_bar(10, True, "x") as bar:
        assert not bar.disable
    with progress_bar(10, False, "x") as bar:
        assert bar.disable
