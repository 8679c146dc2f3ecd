"""Verified reads: a chunk missing from any array of a store, or damaged, is an error naming the
store, the array, the chunk and its regions -- never the fill value (zarr's zeros) -- and a store
written before checksums still opens (read unverified)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nemo_dask.errors import CorruptDataError
from nemo_dask.regions.checksums import CHECKSUM_ATTR, CHECKSUM_GROUP
from nemo_dask.regions.convert import convert_bigwig, convert_npz
from nemo_dask.regions.store import ATTRS_KEY, open_store

CONVERT = Path(__file__).parents[1] / "data" / "convert"
N, CHUNK = 24, 8


@pytest.fixture(scope="module")
def store(tmp_path_factory, regions_npz) -> Path:
    """24 regions of the fixture in chunks of 8; chunk 1's chr_id and null masks are all
    zero/False (their fill values) in chunk 0 and 1 too."""
    where = tmp_path_factory.mktemp("ck")
    arrays = {k: v[:N] for k, v in regions_npz.items()}
    np.savez(where / "r.npz", **arrays)
    out = where / "r.zarr"
    convert_npz(where / "r.npz", out, chunk_size=CHUNK, progress=False)
    return out


def _copy(store: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy.zarr"
    shutil.copytree(store, dst)
    return dst


def _read_all(path: Path):
    regions = open_store(path)
    regions.read_block(0, N)
    return regions.peaks


ARRAYS = ["sequences/c/1/0/0", "contributions/c/2/0/0", "peaks/chr/c/1", "peaks/chr_id/c/0",
          "peaks/peak_region_start/c/2", "peaks/peak_name/c/0", "peaks/peak_id/c/1",
          "peaks/chr_isnull/c/2", "peaks/peak_name_isnull/c/0"]


@pytest.mark.parametrize("key", ARRAYS)
def test_a_missing_chunk_of_any_array_is_named(store, tmp_path, key):
    path = _copy(store, tmp_path)
    (path / key).unlink()
    array, chunk = key.split("/c/")[0], int(key.split("/c/")[1].split("/")[0])
    first, last = chunk * CHUNK, chunk * CHUNK + CHUNK - 1
    with pytest.raises(CorruptDataError) as err:
        _read_all(path)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: array '{array}' chunk {chunk} ({key}, regions "
                           f"{first}-{last}) is missing"), text
    assert "convert the inputs again" in text


def test_all_zero_chunks_are_written(store):
    """The null masks are all False and chr_id of chunk 0 all 0: their chunks exist anyway."""
    for key in ("peaks/chr_isnull/c/0", "peaks/chr_isnull/c/1", "peaks/chr_isnull/c/2",
                "peaks/peak_name_isnull/c/2"):
        assert (store / key).is_file(), key
    assert not np.asarray(open_store(store).group["peaks/chr_isnull"][:]).any()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other chunk", "flipped byte"])
def test_a_damaged_chunk_is_named(store, tmp_path, damage):
    path = _copy(store, tmp_path)
    target = path / "contributions" / "c" / "1" / "0" / "0"
    data = bytearray(target.read_bytes())
    if damage == "garbage":
        data[40:80] = b"x" * 40
    elif damage == "truncated":
        data = data[:50]
    elif damage == "other chunk":
        data = bytearray((path / "contributions" / "c" / "0" / "0" / "0").read_bytes())
    else:
        data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match=r"array 'contributions' chunk 1 "
                       r"\(contributions/c/1/0/0, regions 8-15\) is damaged"):
        open_store(path).read_block(5, 12)  # a block across chunks 0 and 1
    # The undamaged chunks still read.
    assert open_store(path).read_block(16, 24).sequences.shape == (8, 4, 1000)


def test_a_lost_checksum_record_is_named(store, tmp_path):
    path = _copy(store, tmp_path)
    shutil.rmtree(path / CHECKSUM_GROUP / "sequences")
    with pytest.raises(CorruptDataError, match="checksums of array 'sequences'"):
        open_store(path).read_block(0, 4)


def test_verified_reads_return_what_was_converted(store, regions_npz):
    regions = open_store(store)
    assert regions.verified
    for start, stop in ((0, 24), (3, 5), (7, 9), (8, 16), (20, 24), (3, 5)):  # repeats: kept
        block = regions.read_block(start, stop)
        np.testing.assert_array_equal(block.sequences, regions_npz["sequences"][start:stop])
        np.testing.assert_array_equal(block.contributions.view(np.uint16),
                                      regions_npz["contributions"][start:stop].view(np.uint16))
        assert block.peaks["chr_id"].to_list() == regions_npz["chr_id"][start:stop].tolist()
        block.sequences[:] = 7  # a caller's copy: the next read must not see it
    np.testing.assert_array_equal(regions.read_block(3, 5).sequences,
                                  regions_npz["sequences"][3:5])
    dask_seq = regions.sequences
    assert dask_seq.chunks[0] == (8, 8, 8)
    np.testing.assert_array_equal(dask_seq[2:20].compute(), regions_npz["sequences"][2:20])


def test_a_missing_chunk_through_the_dask_arrays(store, tmp_path):
    path = _copy(store, tmp_path)
    (path / "sequences" / "c" / "2" / "0" / "0").unlink()
    with pytest.raises(CorruptDataError, match="'sequences' chunk 2"):
        open_store(path).sequences.sum().compute(scheduler="sync")


def test_a_tiled_store_checks_its_tiling_arrays(tmp_path):
    from nemo_dask.calling.seams import owned_spans

    (tmp_path / "i.bed").write_text("chrA\t100\t2600\n")
    out = tmp_path / "t.zarr"
    from nemo_dask.regions.convert import convert_intervals

    convert_intervals(CONVERT / "genome.fa", [CONVERT / "contribs.bw"], out,
                      intervals=tmp_path / "i.bed", region_width=1000, chunk_size=2, progress=False)
    regions = open_store(out)
    owned_spans(regions, 0, regions.n_regions)
    (out / "tiling" / "own_end" / "c" / "1").unlink()
    with pytest.raises(CorruptDataError, match=r"'tiling/own_end' chunk 1 .* is missing"):
        owned_spans(open_store(out), 0, regions.n_regions)


def test_a_store_without_checksums_opens_and_reads_unverified(store, tmp_path):
    """Stores converted before checksums existed: same reads as before, and call-hits warns."""
    path = _copy(store, tmp_path)
    shutil.rmtree(path / CHECKSUM_GROUP)
    meta = json.loads((path / "zarr.json").read_text())
    del meta["attributes"][ATTRS_KEY][CHECKSUM_ATTR]
    (path / "zarr.json").write_text(json.dumps(meta))
    regions = open_store(path)
    assert not regions.verified
    assert regions.read_block(0, N).sequences.shape == (N, 4, 1000)


def test_bigwig_conversion_records_checksums(tmp_path):
    out = tmp_path / "bw.zarr"
    convert_bigwig(CONVERT / "peaks_bw.narrowPeak", CONVERT / "genome.fa",
                   [CONVERT / "contribs.bw"], out, chunk_size=8, progress=False)
    regions = open_store(out)
    assert regions.verified
    (out / "contributions" / "c" / "0" / "0").unlink()
    with pytest.raises(CorruptDataError, match="'contributions' chunk 0"):
        open_store(out).read_block(0, 3)
