"""A run's identity is what determines its hits: the same run resumes however its inputs are
spelled, copied or touched, and on nodes with another default block size; a real change is
refused with a message naming the input that changed and how. Also finemo's call-time
coordinates (call-hits -p/-C)."""

from __future__ import annotations

import gzip
import os
import shutil
import warnings

import numpy as np
import polars as pl
import pytest

from nemo_dask.calling import plan as run_module
from nemo_dask.calling.api import call_hits
from nemo_dask.dataset import scan_hits
from nemo_dask.errors import InputError, OutputExistsError
from nemo_dask.regions.convert import convert_npz

distributed = pytest.importorskip("distributed")

N = 24


@pytest.fixture()
def inputs(tmp_path, regions_npz):
    """regions.npz with and without coordinates, and a narrowPeak file giving the same ones."""
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    arrays = {k: v[:N] for k, v in regions_npz.items()}
    np.savez(d / "coords.npz", **arrays)
    np.savez(d / "bare.npz", sequences=arrays["sequences"],
             contributions=arrays["contributions"])
    width = arrays["sequences"].shape[2]
    rows = []
    for i in range(N):
        start = int(arrays["start"][i]) + width // 2 - 120
        rows.append(f"{arrays['chr'][i]}\t{start}\t{start + 300}\tp{i}\t10\t.\t1.0\t2.0\t3.0\t120")
    (d / "peaks.narrowPeak").write_text("\n".join(rows) + "\n")
    return d


def _run(regions, modisco_h5, out, client1, **kw):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = call_hits(regions, modisco_h5, out, client=client1, progress=False, **kw)
    return result, [str(w.message) for w in record]


def test_same_run_resumes_however_spelled_copied_or_touched(client1, tmp_path, inputs, modisco_h5,
                                                             monkeypatch):
    out = tmp_path / "out"
    first, _ = _run(inputs / "bare.npz", modisco_h5, out, client1)
    assert first.n_skipped == 0 and first.n_blocks > 1
    hits = scan_hits(out).collect()
    (inputs / "copy").mkdir()
    shutil.copy(inputs / "bare.npz", inputs / "copy" / "bare.npz")
    os.symlink(inputs / "bare.npz", inputs / "link.npz")
    st = (inputs / "bare.npz").stat()
    spellings = [inputs / "sub" / ".." / "bare.npz", inputs / "link.npz",
                 f"file://{inputs / 'bare.npz'}", inputs / "copy" / "bare.npz",
                 os.path.relpath(inputs / "bare.npz")]
    for spelling in spellings:
        os.utime(inputs / "bare.npz", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touch
        again, _ = _run(spelling, modisco_h5, out, client1)
        assert again.n_skipped == again.n_blocks == first.n_blocks, spelling
    # a node whose default block size differs (a GPU node) resumes with OUT's layout
    monkeypatch.setattr(run_module, "default_block_size", lambda *a: 5)
    (out / "hits" / "part-000001.parquet").unlink()
    gpu, _ = _run(inputs / "bare.npz", modisco_h5, out, client1)
    assert gpu.n_blocks == first.n_blocks and gpu.n_skipped == first.n_blocks - 1
    assert scan_hits(out).collect().sort(pl.all()).equals(hits.sort(pl.all()))
    # an explicit other block size is not mixed with OUT's partitions: OUT's layout is kept
    other, messages = _run(inputs / "bare.npz", modisco_h5, out, client1, block_size=7)
    assert other.n_blocks == first.n_blocks and other.n_skipped == first.n_blocks
    assert any("resuming it with that layout" in m for m in messages)


def test_store_resumes_by_content(client1, tmp_path, inputs, modisco_h5):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        convert_npz(inputs / "coords.npz", tmp_path / "s.zarr", chunk_size=8)
    out = tmp_path / "out"
    first, _ = _run(tmp_path / "s.zarr", modisco_h5, out, client1)
    shutil.copytree(tmp_path / "s.zarr", tmp_path / "copy.zarr")
    os.symlink(tmp_path / "s.zarr", tmp_path / "link.zarr")
    (tmp_path / "x").mkdir()
    for spelling in (f"{tmp_path / 's.zarr'}/", f"file://{tmp_path / 's.zarr'}",
                     tmp_path / "copy.zarr", tmp_path / "link.zarr",
                     tmp_path / "x" / ".." / "s.zarr"):
        again, _ = _run(spelling, modisco_h5, out, client1)
        assert again.n_skipped == first.n_blocks, spelling
    # the same regions converted again (another time, another path) are the same input
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        convert_npz(inputs / "coords.npz", tmp_path / "again.zarr", chunk_size=8)
    assert _run(tmp_path / "again.zarr", modisco_h5, out, client1)[0].n_skipped == first.n_blocks


def test_real_changes_are_refused_naming_what_changed(client1, tmp_path, inputs, modisco_h5):
    out = tmp_path / "out"
    _run(inputs / "bare.npz", modisco_h5, out, client1)
    with pytest.raises(OutputExistsError,
                       match=r"parameters differ: lambda_default 0\.7 -> 0\.8"):
        call_hits(inputs / "bare.npz", modisco_h5, out, client=client1, lambda_default=0.8)
    with pytest.raises(OutputExistsError, match=r"parameters differ: convergence_tol"):
        call_hits(inputs / "bare.npz", modisco_h5, out, client=client1, convergence_tol=0.01)
    with np.load(inputs / "bare.npz") as d:
        contribs = d["contributions"].copy()
        seqs = d["sequences"]
    contribs[3] *= 2
    np.savez(inputs / "changed.npz", sequences=seqs, contributions=contribs)
    with pytest.raises(OutputExistsError, match=r"regions differ: content checksum \w+ -> \w+"):
        call_hits(inputs / "changed.npz", modisco_h5, out, client=client1)
    with pytest.raises(OutputExistsError, match=r"peaks \(-p/-C\) differ"):
        call_hits(inputs / "bare.npz", modisco_h5, out, client=client1,
                  peaks=inputs / "peaks.narrowPeak")


def test_call_hits_peaks_give_coordinates_as_finemo(client1, tmp_path, inputs, modisco_h5):
    from finemo.data_io import load_peaks

    (inputs / "order.txt").write_text("chr2\nchr9\n")
    gz = inputs / "peaks.gz"
    gz.write_bytes(gzip.compress(b"track name=x\n" + (inputs / "peaks.narrowPeak").read_bytes()))
    _run(inputs / "coords.npz", modisco_h5, tmp_path / "ref", client1)
    _, messages = _run(inputs / "bare.npz", modisco_h5, tmp_path / "bare", client1)
    assert sum("No peak region data" in m for m in messages) == 1
    assert scan_hits(tmp_path / "bare").collect()["chr"].is_null().all() or \
        (scan_hits(tmp_path / "bare").collect()["chr"] == "NA").all()
    _, messages = _run(inputs / "bare.npz", modisco_h5, tmp_path / "p", client1,
                         peaks=gz, chrom_order=inputs / "order.txt")
    assert not any("No peak region data" in m for m in messages)
    cols = ["peak_id", "chr", "start", "end", "motif_name", "strand"]
    want = scan_hits(tmp_path / "ref").collect().select(cols).sort(cols)
    have = scan_hits(tmp_path / "p").collect()
    assert have.select(cols).sort(cols).equals(want)
    expected = load_peaks(str(inputs / "peaks.narrowPeak"), str(inputs / "order.txt"), 500)
    chr_ids = dict(zip(expected["peak_id"].to_list(), expected["chr_id"].to_list(), strict=True))
    assert all(chr_ids[p] == c for p, c in zip(have["peak_id"], have["chr_id"], strict=True))
    # -p is for a regions.npz, as in finemo; a store gets coordinates when it is made
    with pytest.raises(InputError, match="convert"):
        call_hits(tmp_path / "p" / "regions.zarr", modisco_h5, tmp_path / "q", client=client1,
                  peaks=gz)
    with pytest.raises(InputError, match=r"peak rows but"):
        (inputs / "short.narrowPeak").write_text(
            "".join((inputs / "peaks.narrowPeak").read_text().splitlines(True)[:5]))
        call_hits(inputs / "bare.npz", modisco_h5, tmp_path / "r", client=client1,
                  peaks=inputs / "short.narrowPeak")
    assert not (tmp_path / "r").exists()
