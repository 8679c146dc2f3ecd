"""call-hits refuses malformed input before any work: one clear message, nothing in OUT."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from nemo_dask.cli import main


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, regions_npz, data_dir) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    small = {k: v[:8] for k, v in regions_npz.items()}
    paths = {"good": d / "good.npz", "projected": d / "projected.npz"}
    np.savez(paths["good"], **small)
    with np.load(data_dir / "regions_bw.npz") as bw:
        np.savez(paths["projected"], **{k: bw[k][:8] for k in bw.files})

    def variant(name: str, **changes) -> None:
        arrays = dict(small)
        for key, value in changes.items():
            if value is None:
                arrays.pop(key)
            else:
                arrays[key] = value
        paths[name] = d / f"{name}.npz"
        np.savez(paths[name], **arrays)

    variant("no_contribs", contributions=None)
    variant("odd_width", sequences=small["sequences"][:, :, :999],
            contributions=small["contributions"][:, :, :999])
    variant("narrow", sequences=small["sequences"][:, :, :40],
            contributions=small["contributions"][:, :, :40])
    variant("count_mismatch", contributions=small["contributions"][:7])
    seqs = small["sequences"].copy()
    seqs[2, :, 10] = 1
    variant("not_onehot", sequences=seqs)
    paths["truncated_npz"] = d / "truncated.npz"
    paths["truncated_npz"].write_bytes(paths["good"].read_bytes()[:5000])

    rows = [f"{small['chr'][i]}\t{int(small['start'][i]) + 400}\t{int(small['start'][i]) + 700}"
            f"\tp{i}\t1\t.\t1\t1\t1\t100" for i in range(8)]
    paths["short_peaks"] = d / "short.narrowPeak"
    paths["short_peaks"].write_text("\n".join(rows[:5]) + "\n")
    paths["header_peaks"] = d / "header.narrowPeak"
    paths["header_peaks"].write_text("chrom\tstart\tend\tname\tscore\tstrand\tsignal\tp\tq"
                                     "\tsummit\n" + "\n".join(rows) + "\n")
    paths["ragged_peaks"] = d / "ragged.narrowPeak"
    paths["ragged_peaks"].write_text("\n".join(rows[:3] + [rows[3] + "\textra"] + rows[4:]))
    paths["order"] = d / "order.txt"
    paths["order"].write_text("chr1\n")
    paths["h5"] = data_dir / "modisco.h5"
    paths["truncated_h5"] = d / "truncated.h5"
    paths["truncated_h5"].write_bytes(paths["h5"].read_bytes()[:20000])
    paths["empty_h5"] = d / "empty.h5"
    with h5py.File(paths["empty_h5"], "w") as f:
        f.create_group("pos_patterns")
    paths["no_cwm_h5"] = d / "no_cwm.h5"
    shutil.copy(paths["h5"], paths["no_cwm_h5"])
    with h5py.File(paths["no_cwm_h5"], "a") as f:
        del f["pos_patterns/pattern_1/contrib_scores"]
    return paths


CASES = {
    "missing regions": (["-r", "{d}/nope.npz"], "does not exist"),
    "truncated npz": (["-r", "{truncated_npz}"], "truncated"),
    "npz without contributions": (["-r", "{no_contribs}"], "contributions"),
    "odd width": (["-r", "{odd_width}"], "999"),
    "regions narrower than motifs": (["-r", "{narrow}"], "narrower"),
    "region count mismatch": (["-r", "{count_mismatch}"], "7"),
    "non-one-hot sequences": (["-r", "{not_onehot}"], "one-hot"),
    "hypothetical mode on projected": (["-r", "{projected}", "-M", "hh"], "projected"),
    "missing motif file": (["-m", "{d}/nope.h5"], "does not exist"),
    "truncated motif file": (["-m", "{truncated_h5}"], "truncated"),
    "motif file without patterns": (["-m", "{empty_h5}"], "no patterns"),
    "pattern lacking its matrix": (["-m", "{no_cwm_h5}"], "contrib_scores"),
    "lambda zero": (["-l", "0"], "lambda"),
    "trim threshold above 1": (["-t", "1.5"], "trim_threshold"),
    "non-finite step size": (["-s", "nan"], "step_size_max"),
    "non-positive min step": (["-i", "0"], "step_size_min"),
    "non-positive tolerance": (["-c", "0"], "convergence_tol"),
    "batch size zero": (["-b", "0"], "batch_size"),
    "block size zero": (["--block-size", "0"], "block"),
    "worker count zero": (["--workers", "0"], "workers"),
    "missing include list": (["-I", "{d}/nope.txt"], "nope.txt"),
    "missing peaks file": (["-p", "{d}/nope.narrowPeak"], "not found"),
    "fewer peak rows than regions": (["-p", "{short_peaks}"], "5 peak rows but"),
    "peaks with a column header": (["-p", "{header_peaks}"], "header"),
    "peaks with too many columns": (["-p", "{ragged_peaks}"], "line 4 has 11"),
    "chromosome order without peaks": (["-C", "{order}"], "needs a peaks file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_error(case, inputs, tmp_path, capsys):
    extra, expected = CASES[case]
    fmt = {k: str(v) for k, v in inputs.items()} | {"d": str(tmp_path)}
    args = {"-r": str(inputs["good"]), "-m": str(inputs["h5"])}
    rest: list[str] = []
    it = iter(extra)
    for flag in it:
        value = next(it).format(**fmt)
        if flag in args:
            args[flag] = value
        else:
            rest += [flag, value]
    out = tmp_path / "out"
    argv = ["call-hits", "-r", args["-r"], "-m", args["-m"], "-o", str(out), "--no-progress",
            *rest]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert expected.lower() in err.lower(), err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()
    assert not list(tmp_path.glob(".out.regions*")), "temporary conversion left behind"


def test_unknown_mode_is_rejected_by_the_parser(inputs, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["call-hits", "-r", str(inputs["good"]), "-m", str(inputs["h5"]), "-o",
              str(tmp_path / "out"), "-M", "xx"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
