"""GPU memory and speed with an atlas-wide motif compendium (issue 24, items 3 and 5).

Writes a tfmodisco-lite H5 of ``--patterns`` patterns (default 150: M = 300 with reverse
complements; :func:`compendium_memory.write_compendium`), then solves the first ``-n`` regions on
the GPU with nemo_dask's default batch (what half the free device memory holds,
:func:`nemo_dask.solver.stream.cuda_batch_size`) and with finemo 0.41's ``fit_contribs`` at its
default batch of 2000, one after the other in this process, both in IEEE float32
(:mod:`nemo_dask.solver.precision`; ``--finemo-tf32``: finemo with torch's default TF32
convolutions). Prints each tool's batch, peak
device memory (``torch.cuda.max_memory_allocated``), regions/s and hit count, and the Jaccard
index of the (region, motif, start) hit sets. Prints; asserts nothing::

    python benchmarks/make_heldout_like.py /tmp/ho
    python benchmarks/gpu_compendium.py /tmp/ho/r3000.npz tests/data/modisco.h5 -n 3000
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compendium_memory import write_compendium  # noqa: E402


def _peak_gib(run) -> tuple[object, float, float]:
    """Run ``run()`` on a clean peak counter; its result, seconds and peak GiB."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = run()
    torch.cuda.synchronize()
    return out, time.perf_counter() - t, torch.cuda.max_memory_allocated() / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("regions", help="finemo regions.npz")
    parser.add_argument("modisco_h5", help="tfmodisco-lite H5 whose patterns seed the set")
    parser.add_argument("--patterns", type=int, default=150)
    parser.add_argument("-n", "--max-regions", type=int, default=3000)
    parser.add_argument("-l", "--lambda", type=float, default=0.7, dest="lam")
    parser.add_argument("--finemo-batch", type=int, default=2000)
    parser.add_argument("--finemo-tf32", action="store_true")
    args = parser.parse_args()

    from finemo.hitcaller import fit_contribs

    from nemo_dask.motifs import load_motifs
    from nemo_dask.params import MotifParams
    from nemo_dask.solver.precision import ieee_float32
    from nemo_dask.solver.stream import cuda_batch_size, fit_block

    dev = torch.device("cuda")
    with tempfile.TemporaryDirectory(prefix="nemo-dask-gpu-compendium-") as tmp:
        h5 = Path(tmp) / "compendium.h5"
        k = write_compendium(Path(args.modisco_h5), h5, args.patterns)
        motifs = load_motifs(h5, MotifParams(lambda_default=args.lam))
    with np.load(args.regions) as src:
        seqs = src["sequences"][:args.max_regions]
        contribs = src["contributions"][:args.max_regions]
    n, length = seqs.shape[0], seqs.shape[-1]
    n_pos = length - motifs.width + 1
    free, total = torch.cuda.mem_get_info(dev)
    batch = cuda_batch_size(free, motifs.n_motifs, n_pos, length)
    print(f"{torch.cuda.get_device_name(dev)}: {total / 2**30:.0f} GiB, {free / 2**30:.0f} free; "
          f"{k} patterns, M = {motifs.n_motifs}, W = {motifs.width}; {n} regions of {length}, "
          f"lambda {args.lam}", flush=True)
    fit_block(seqs[:8], contribs[:8], motifs, device=dev)  # CUDA context and kernels, untimed
    ours, t_ours, peak_ours = _peak_gib(lambda: fit_block(seqs, contribs, motifs, device=dev))
    print(f"nemo_dask default batch {batch}: peak {peak_ours:.2f} GiB, {n / t_ours:.1f} "
          f"regions/s ({t_ours:.2f} s), {ours.hits.height} hits", flush=True)
    def finemo():
        with contextlib.nullcontext() if args.finemo_tf32 else ieee_float32(dev):
            return fit_contribs(motifs.cwms, contribs, seqs, motifs.trim_masks, False,
                                motifs.lambdas, 3.0, 0.08, False, 0.0005, 10000,
                                args.finemo_batch, 0.7, True, dev, False)

    (hits, _qc), t_fm, peak_fm = _peak_gib(finemo)
    print(f"finemo batch {args.finemo_batch}: peak {peak_fm:.2f} GiB, {n / t_fm:.1f} regions/s "
          f"({t_fm:.2f} s), {hits.height} hits", flush=True)
    mine = set(ours.hits.select("region", "motif_id", "hit_start").iter_rows())
    theirs = set(hits.select("peak_id", "motif_id", "hit_start").iter_rows())
    union = mine | theirs
    print(f"ratio {t_fm / t_ours:.2f}x; jaccard {len(mine & theirs) / len(union) if union else 1:.4f}")


if __name__ == "__main__":
    main()
