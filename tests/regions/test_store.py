"""The regions store: opening by path and URL, block reads, dask arrays, pickling, refusals."""

from __future__ import annotations

import pickle
import uuid
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import zarr

from nemo_dask.errors import InputError
from nemo_dask.regions.convert import convert_npz
from nemo_dask.regions.convert._writer import StoreWriter
from nemo_dask.regions.source import open_regions
from nemo_dask.regions.store import ATTRS_KEY, default_chunk_size, open_store
from nemo_dask.schema import PEAKS_DTYPES

CONVERT = Path(__file__).parents[1] / "data" / "convert"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("store") / "regions.zarr"
    convert_npz(data_dir / "regions.npz", out, chunk_size=64, progress=False)
    return out


def _check_against_npz(regions, ref: dict[str, np.ndarray]) -> None:
    assert regions.n_regions == 350 and regions.width == 1000 and regions.chunk_size == 64
    assert regions.contrib_kind == "hypothetical" and regions.has_peaks
    block = regions.read_block(100, 230)  # crosses chunk boundaries
    np.testing.assert_array_equal(block.sequences, ref["sequences"][100:230])
    assert block.contributions.dtype == np.float16
    np.testing.assert_array_equal(block.contributions.view(np.uint16),
                                  ref["contributions"][100:230].view(np.uint16))
    assert block.peaks.schema == pl.Schema(PEAKS_DTYPES)
    assert block.peaks["peak_id"].to_list() == ref["peak_id"][100:230].tolist()
    assert block.peaks["peak_name"].to_list() == ref["peak_name"][100:230].tolist()


def test_open_by_path_and_file_url(store_path: Path, regions_npz: dict[str, np.ndarray]) -> None:
    for location in (store_path, str(store_path), store_path.as_uri()):
        regions = open_regions(location)
        _check_against_npz(regions, regions_npz)
        assert regions.url == str(store_path)


def test_open_memory_url(data_dir: Path, regions_npz: dict[str, np.ndarray]) -> None:
    url = f"memory://nemo-dask-test-{uuid.uuid4().hex}/regions.zarr"
    made = convert_npz(data_dir / "regions.npz", url, chunk_size=64, progress=False)
    assert made.url == url
    _check_against_npz(open_regions(url), regions_npz)


def test_peak_table_and_dask_arrays(store_path: Path, regions_npz: dict[str, np.ndarray]) -> None:
    regions = open_regions(store_path)
    peaks = regions.peaks
    assert peaks.schema == pl.Schema(PEAKS_DTYPES) and peaks.height == 350
    for column, key in [("chr", "chr"), ("chr_id", "chr_id"), ("peak_region_start", "start"),
                        ("peak_id", "peak_id"), ("peak_name", "peak_name")]:
        np.testing.assert_array_equal(peaks[column].to_numpy(), regions_npz[key])
    seqs, contribs = regions.sequences, regions.contributions
    assert seqs.shape == (350, 4, 1000) and seqs.dtype == np.int8
    assert seqs.chunks[0] == (64, 64, 64, 64, 64, 30)
    assert contribs.dtype == np.float16 and contribs.chunks[0] == seqs.chunks[0]
    np.testing.assert_array_equal(contribs[290:300].compute(), regions_npz["contributions"][290:300])
    assert regions.attrs["source"]["format"] == "npz" and regions.attrs["format_version"] == 1


def test_pickles_as_location(store_path: Path) -> None:
    regions = open_regions(store_path)
    _ = regions.peaks
    blob = pickle.dumps(regions)
    assert len(blob) < 4096  # no arrays, no peak table
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again.read_block(0, 3).sequences,
                                  regions.read_block(0, 3).sequences)


def test_block_bounds(store_path: Path) -> None:
    regions = open_regions(store_path)
    assert regions.read_block(350, 350).sequences.shape == (0, 4, 1000)
    with pytest.raises(InputError, match="outside"):
        regions.read_block(300, 351)


def test_refuses_missing_and_foreign(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no regions store"):
        open_regions(tmp_path / "nothing.zarr")
    with pytest.raises(InputError, match="is a file, not a regions store"):
        open_store(_a_file(tmp_path))
    zarr.open_group(tmp_path / "other.zarr", mode="w", zarr_format=3)
    with pytest.raises(InputError, match="not a nemo_dask regions store"):
        open_regions(tmp_path / "other.zarr")


def test_refuses_incomplete_store(tmp_path: Path) -> None:
    writer = StoreWriter(f"memory://incomplete-{uuid.uuid4().hex}", n_regions=4, width=10,
                         contrib_kind="projected", chunk_size=2, contrib_dtype="float16",
                         has_peaks=False, attrs={})
    with pytest.raises(InputError, match="incomplete"):
        open_regions(writer.target)
    # a local store is written under a hidden name: the target does not even exist yet
    local = StoreWriter(tmp_path / "s.zarr", n_regions=4, width=10, contrib_kind="projected",
                        chunk_size=2, contrib_dtype="float16", has_peaks=False, attrs={})
    assert not (tmp_path / "s.zarr").exists()
    with pytest.raises(InputError, match="incomplete"):
        open_regions(local.target)
    local.abort()
    assert list(tmp_path.iterdir()) == []


def test_strings_round_trip_nulls_exactly(tmp_path: Path) -> None:
    peaks = pl.DataFrame({"chr": ["chr1", None, "None", ""],
                          "peak_region_start": [5, -3, 0, 7],
                          "peak_name": [None, "None", "NA", "é"],
                          "peak_id": [0, 1, 2, 3], "chr_id": [0, 1, 2, 0]}).cast(PEAKS_DTYPES)
    writer = StoreWriter(tmp_path / "s.zarr", n_regions=4, width=10, contrib_kind="projected",
                         chunk_size=3, contrib_dtype="float32", has_peaks=True, attrs={})
    seqs = np.zeros((4, 4, 10), np.int8)
    contribs = np.arange(40, dtype=np.float32).reshape(4, 10)
    writer.write(0, seqs[:3], contribs[:3], peaks[:3])
    writer.write(3, seqs[3:], contribs[3:], peaks[3:])
    regions = writer.finish({})
    assert regions.peaks.to_dicts() == peaks.to_dicts()
    assert regions.read_block(1, 4).peaks.to_dicts() == peaks[1:4].to_dicts()
    assert regions.contributions.dtype == np.float32 and regions.contrib_kind == "projected"
    assert zarr.open_group(tmp_path / "s.zarr").attrs[ATTRS_KEY]["complete"] is True


def test_placeholder_peaks_without_coordinates(tmp_path: Path) -> None:
    from nemo_dask.regions.convert import convert_bpnet_h5

    with pytest.warns(UserWarning, match="100 NaN"):
        regions = convert_bpnet_h5(CONVERT / "bpnet.h5", tmp_path / "s.zarr", chunk_size=8,
                                   progress=False)
    assert not regions.has_peaks
    peaks = regions.peaks
    assert peaks.schema == pl.Schema(PEAKS_DTYPES)
    assert peaks["chr"].to_list() == ["NA"] * 30 and peaks["peak_name"].to_list() == ["NA"] * 30
    assert peaks["peak_id"].to_list() == list(range(30)) == peaks["chr_id"].to_list()
    assert set(peaks["peak_region_start"].to_list()) == {0}
    assert regions.read_block(10, 12).peaks["peak_id"].to_list() == [10, 11]


def test_default_chunk_size() -> None:
    assert default_chunk_size(1000, "hypothetical") == 256
    assert default_chunk_size(1000, "projected") == 512
    assert default_chunk_size(1000, "hypothetical", 4) == 128
    assert default_chunk_size(10**8, "hypothetical") == 1


def _a_file(tmp_path: Path) -> Path:
    path = tmp_path / "regions.txt"
    path.write_text("not a store")
    return path


def test_open_regions_reads_an_npz_like_a_store(tmp_path: Path, data_dir: Path) -> None:
    """One entry point: an npz (by content, whatever its name) reads as the store made from it."""
    renamed = tmp_path / "regions.data"
    renamed.write_bytes((data_dir / "regions.npz").read_bytes())
    npz = open_regions(renamed)
    store = convert_npz(data_dir / "regions.npz", tmp_path / "s.zarr", progress=False)
    assert (npz.n_regions, npz.width, npz.contrib_kind) == (
        store.n_regions, store.width, store.contrib_kind)
    a, b = npz.read_block(5, 40), store.read_block(5, 40)
    assert type(a) is type(b)  # one RegionBlock
    np.testing.assert_array_equal(a.sequences, b.sequences)
    np.testing.assert_array_equal(a.contributions, b.contributions.astype(a.contributions.dtype))
    assert a.peaks.equals(b.peaks)
    with pytest.raises(InputError, match="truncated"):
        (tmp_path / "cut.npz").write_bytes(renamed.read_bytes()[:5000])
        open_regions(tmp_path / "cut.npz")
