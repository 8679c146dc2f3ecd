"""Malformed inputs: each gives one clear InputError (file, field, fix) and leaves no store."""

from __future__ import annotations

import shutil
import subprocess
import sys
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
    with pytest.warns(UserWarning, match=r"shap\.npy .*10 NaN and 4 infinite") as record:
        regions = convert_modisco(tmp_path / "ohe.npy", tmp_path / "shap.npy",
                                  tmp_path / "s.zarr", chunk_size=2)
    # the note says what finemo really does: its extractors zero NaN, keep inf as a max float
    message = " ".join(str(w.message) for w in record)
    assert "extract-regions" in message and "finemo also turns NaN into 0" not in message
    block = regions.read_block(0, 6)
    np.savez(tmp_path / "r.npz", sequences=block.sequences,
             contributions=np.where(np.arange(1000) == 7, np.nan, block.contributions))
    with pytest.warns(UserWarning, match=r"finemo's call-hits does not.*whole region"):
        convert_npz(tmp_path / "r.npz", tmp_path / "n.zarr")
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
    # the position is given in the kept window and in the file (W = 1040, crop starts at 20)
    expect_error(tmp_path, lambda o: convert_modisco(tmp_path / "ohe_two.npy",
                                                     tmp_path / "shap.npy", o),
                 "position 500 of the 1000 bp window (position 520 in the file)")
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


def test_damaged_bigwig_is_our_one_line_only(tmp_path: Path, capfd) -> None:
    """libBigWig's own stderr lines ([bwHdrRead] ...) do not precede our error."""
    (tmp_path / "cut.bw").write_bytes((D / "contribs.bw").read_bytes()[:300])
    (tmp_path / "junk.bw").write_bytes(b"not a bigWig\n")
    for name in ("cut.bw", "junk.bw"):
        capfd.readouterr()
        expect_error(tmp_path, lambda o, n=name: convert_bigwig(
            D / "peaks_bw.narrowPeak", D / "genome.fa", tmp_path / n, o), name,
            "not a readable bigWig")
        assert capfd.readouterr().err == ""


def test_bigwig_cut_short_anywhere_in_its_header_is_refused(tmp_path: Path) -> None:
    """libBigWig crashed the process (SIGSEGV, SIGABRT) on a file cut at 64-111 bytes; every
    cut before the end of the main index is now refused in one line. In a child process, so
    that a crash fails this test rather than the whole run."""
    data = (D / "contribs.bw").read_bytes()
    sizes = [0, 63, 64, 80, 100, 111, 112, 300, 5000, 124_910]  # 124910: the main index
    for n in sizes:
        (tmp_path / f"cut{n}.bw").write_bytes(data[:n])
    code = ("import sys, warnings\n"
            "from nemo_dask.errors import InputError\n"
            "from nemo_dask.regions.convert import convert_bigwig\n"
            "warnings.simplefilter('ignore')\n"
            "for path in sys.argv[4:]:\n"
            "    try:\n"
            "        convert_bigwig(sys.argv[1], sys.argv[2], path, sys.argv[3])\n"
            "        print('converted', path)\n"
            "    except InputError as err:\n"
            "        print(err)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(D / "peaks_bw.narrowPeak"),
                           str(D / "genome.fa"), str(tmp_path / "out.zarr"),
                           *(str(tmp_path / f"cut{n}.bw") for n in sizes)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stdout.splitlines()
    assert len(lines) == len(sizes), proc.stdout
    for n, line in zip(sizes, lines, strict=True):
        assert line.startswith(str(tmp_path / f"cut{n}.bw")), line
        assert "not a readable bigWig file" in line, line
    assert proc.stderr == ""


def test_malformed_narrowpeak(tmp_path: Path) -> None:
    def run(edit):
        peaks = _peaks(tmp_path, 30, edit)
        return lambda o: convert_chrombpnet_h5(D / "chrombpnet.h5", o, peaks=peaks)

    expect_error(tmp_path, run(lambda ls: ls[:4] + [""] + ls[5:]), "line 5", "blank")
    # a column header is named as such, before any row-count check (which it would also fail)
    header = "\t".join(["chrom", "start", "end", "name", "score", "strand", "signal", "p",
                        "q", "summit"])
    msg = expect_error(tmp_path, run(lambda ls: [header] + ls[1:]), "line 1", "column 2",
                       "'start'", "header")
    assert "regions" not in msg
    expect_error(tmp_path, run(lambda ls: ls[:2] + [ls[2].replace("\t", "\tx", 1)] + ls[3:]),
                 "peaks.narrowPeak", "line 3", "column 2", "integer")
    expect_error(tmp_path, run(lambda ls: []), "no peak rows")
    # a binary file is named as such, not quoted byte by byte
    (tmp_path / "peaks.narrowPeak").write_bytes(b"\x7fELF\x02\x01\x01\x00" * 40 + b"\n")
    msg = expect_error(tmp_path, lambda o: convert_chrombpnet_h5(
        D / "chrombpnet.h5", o, peaks=tmp_path / "peaks.narrowPeak"), "line 1", "binary")
    assert "ELF" not in msg and len(msg) < 300
    expect_error(tmp_path, run(lambda ls: ["track name=x", "# only comments"]), "no peak rows")
    expect_error(tmp_path, run(lambda ls: ls[:3] + ["\t".join(ls[3].split("\t")[:3])] + ls[4:]),
                 "line 4", "3 tab-separated columns", "expected 10")
    # too many columns: our own words, no polars-only option quoted as if it were ours
    msg = expect_error(tmp_path, run(lambda ls: ls[:6] + [ls[6] + "\textra"] + ls[7:]),
                       "line 7", "11 tab-separated columns", "expected 10")
    assert "truncate_ragged_lines" not in msg and "polars" not in msg.lower()
    expect_error(tmp_path, run(lambda ls: ls[:8] + [ls[8].replace("\t", " ")] + ls[9:]),
                 "line 9", "1 tab-separated columns")
    # a bad value in a column finemo parses as a number is named with its line and column
    msg = expect_error(tmp_path, run(lambda ls: ls[:9] + ["\t".join(
        ls[9].split("\t")[:6] + ["high"] + ls[9].split("\t")[7:])] + ls[10:]),
        "line 10", "column 7", "peak_signal", "'high'")
    assert "truncate_ragged_lines" not in msg
    expect_error(tmp_path, run(lambda ls: ls[:1] + ["\t".join(ls[1].split("\t")[:9] + ["-7"])]
                               + ls[2:]), "line 2", "summit", "-7")


def _write_gz(path: Path, data: bytes, bgzip: bool = False) -> Path:
    import gzip

    if bgzip:  # BGZF: concatenated gzip members, as bgzip writes them
        path.write_bytes(b"".join(gzip.compress(data[i:i + 300]) for i in range(0, len(data),
                                                                              300)))
    else:
        path.write_bytes(gzip.compress(data))
    return path


@pytest.mark.parametrize("name", ["peaks.narrowPeak.gz", "peaks.bgz", "peaks.narrowPeak"])
@pytest.mark.parametrize("bgzip", [False, True])
def test_compressed_peaks_read_as_the_plain_file(tmp_path: Path, name: str, bgzip: bool) -> None:
    """gzip and bgzip files are recognised by content, whatever their name, in every verb."""
    plain = D / "peaks.narrowPeak"
    gz = _write_gz(tmp_path / name, plain.read_bytes(), bgzip)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = convert_chrombpnet_h5(D / "chrombpnet.h5", tmp_path / "a.zarr", peaks=plain)
        got = convert_chrombpnet_h5(D / "chrombpnet.h5", tmp_path / "b.zarr", peaks=gz,
                                    chrom_order=D / "chrom_order.txt")
        ref = convert_chrombpnet_h5(D / "chrombpnet.h5", tmp_path / "c.zarr", peaks=plain,
                                    chrom_order=D / "chrom_order.txt")
        got2 = convert_modisco(D / "ohe.npz", D / "shap.npz", tmp_path / "d.zarr", peaks=gz)
        bw_gz = _write_gz(tmp_path / f"bw-{name}", (D / "peaks_bw.narrowPeak").read_bytes(),
                          bgzip)
        bw = convert_bigwig(bw_gz, D / "genome.fa", D / "contribs.bw", tmp_path / "e.zarr")
        bw_ref = convert_bigwig(D / "peaks_bw.narrowPeak", D / "genome.fa", D / "contribs.bw",
                                tmp_path / "f.zarr")
        nopeaks = convert_bpnet_h5(D / "bpnet.h5", tmp_path / "g.npz.zarr")
        block = nopeaks.read_block(0, nopeaks.n_regions)
        np.savez(tmp_path / "r.npz", sequences=block.sequences,
                 contributions=block.contributions)
        npz = convert_npz(tmp_path / "r.npz", tmp_path / "h.zarr", peaks=gz)
    assert got.peaks.equals(ref.peaks) and got2.peaks.equals(want.peaks)
    assert npz.peaks.equals(want.peaks)
    assert bw.peaks.equals(bw_ref.peaks)
    np.testing.assert_array_equal(bw.read_block(0, 30).contributions,
                                  bw_ref.read_block(0, 30).contributions)


def test_track_browser_and_comment_lines_are_skipped(tmp_path: Path) -> None:
    lines = (D / "peaks.narrowPeak").read_text().splitlines()
    edited = (["browser position chr1:1-1000", "track type=narrowPeak name=\"x\"",
               "#chr\tstart\tend"] + lines[:10] + ["# a comment in the middle"] + lines[10:])
    path = tmp_path / "p.narrowPeak"
    path.write_text("\n".join(edited) + "\n")
    gz = _write_gz(tmp_path / "p.narrowPeak.gz", path.read_bytes(), bgzip=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = convert_chrombpnet_h5(D / "chrombpnet.h5", tmp_path / "a.zarr",
                                     peaks=D / "peaks.narrowPeak")
        got = convert_chrombpnet_h5(D / "chrombpnet.h5", tmp_path / "b.zarr", peaks=path)
        got_gz = convert_chrombpnet_h5(D / "chrombpnet.h5", tmp_path / "c.zarr", peaks=gz)
    assert got.peaks.equals(want.peaks) and got_gz.peaks.equals(want.peaks)
    # a row after the skipped lines is still named by its line in the file
    path.write_text("\n".join(edited[:5] + ["chr1\tx"] + edited[5:]) + "\n")
    expect_error(tmp_path, lambda o: convert_chrombpnet_h5(D / "chrombpnet.h5", o, peaks=path),
                 "line 6", "2 tab-separated columns")


def test_summit_minus_one_centres_on_the_peak_midpoint(tmp_path: Path) -> None:
    lines = [line.split("\t") for line in (D / "peaks.narrowPeak").read_text().splitlines()]
    for i in (2, 7, 11):
        lines[i][9] = "-1"
    path = tmp_path / "p.narrowPeak"
    path.write_text("".join("\t".join(f) + "\n" for f in lines))
    with pytest.warns(UserWarning, match=r"p\.narrowPeak: 3 peak\(s\) have summit -1.*midpoint"):
        got = convert_chrombpnet_h5(D / "chrombpnet.h5", tmp_path / "a.zarr", peaks=path,
                                    region_width=800, chunk_size=4)
    starts = got.peaks["peak_region_start"].to_list()
    for i, f in enumerate(lines):
        start, end, summit = int(f[1]), int(f[2]), int(f[9])
        centre = (start + end) // 2 if summit == -1 else start + summit
        assert starts[i] == centre - 400, i
    assert starts[2] != int(lines[2][1]) - 1 - 400


def test_several_h5_files_must_hold_the_same_sequences(tmp_path: Path) -> None:
    """A fold over re-ordered regions of the same count is refused, naming file and region."""
    src = D / "chrombpnet.h5"
    for name, edit in [("swapped", lambda seq: seq[[0, 1, 2, 4, 3, *range(5, len(seq))]]),
                       ("mutated", None)]:
        target = tmp_path / f"{name}.h5"
        shutil.copy(src, target)
        with h5py.File(target, "r+") as h5:
            seq = h5["raw/seq"][:]
            if edit is None:
                width = seq.shape[2]
                seq[17, :, width // 2] = np.roll(seq[17, :, width // 2], 1)
            else:
                seq = edit(seq)
            del h5["raw/seq"]
            h5["raw/seq"] = seq
        region = 3 if name == "swapped" else 17
        expect_error(tmp_path, lambda o, t=target: convert_chrombpnet_h5([src, t], o,
                                                                          chunk_size=4),
                     f"{name}.h5", "raw/seq", f"region {region}", "same regions")
    bp = tmp_path / "bp.h5"
    shutil.copy(D / "bpnet.h5", bp)
    with h5py.File(bp, "r+") as h5:
        seq = h5["input_seqs"][:]
        seq[[5, 6]] = seq[[6, 5]]
        del h5["input_seqs"]
        h5["input_seqs"] = seq
    expect_error(tmp_path, lambda o: convert_bpnet_h5([D / "bpnet.h5", bp], o), "bp.h5",
                 "region 5")
    # differences outside the kept window are not used, hence not refused
    flank = tmp_path / "flank.h5"
    shutil.copy(src, flank)
    with h5py.File(flank, "r+") as h5:
        seq = h5["raw/seq"][:]
        seq[:, :, :5] = 0
        del h5["raw/seq"]
        h5["raw/seq"] = seq
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        convert_chrombpnet_h5([src, flank], tmp_path / "ok.zarr")


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


def test_cli_convert_npz_takes_peaks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """finemo's call-time coordinates at conversion: `convert npz -p PEAKS.gz -C ORDER`."""
    from finemo.data_io import load_peaks

    with np.load(D / "expected_bpnet_nopeaks.npz") as d:
        assert "chr" not in d.files
    gz = _write_gz(tmp_path / "p.narrowPeak.gz", (D / "peaks.narrowPeak").read_bytes(), True)
    rc = main(["convert", "npz", "-r", str(D / "expected_bpnet_nopeaks.npz"), "-p", str(gz),
               "-C", str(D / "chrom_order.txt"), "-o", str(tmp_path / "s.zarr"),
               "--no-progress"])
    assert rc == 0 and "wrote" in capsys.readouterr().err
    regions = open_regions(tmp_path / "s.zarr")
    ref = load_peaks(str(D / "peaks.narrowPeak"), str(D / "chrom_order.txt"), 500)
    assert regions.has_peaks
    assert regions.peaks["chr_id"].to_list() == ref["chr_id"].to_list()
    assert regions.peaks["peak_region_start"].to_list() == ref["peak_region_start"].to_list()
    rc = main(["convert", "npz", "-r", str(D / "expected_bpnet_nopeaks.npz"), "-C",
               str(D / "chrom_order.txt"), "-o", str(tmp_path / "t.zarr")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "needs a peaks file" in err[0]
