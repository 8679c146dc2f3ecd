"""Inputs shaped like issue 16's held-out benchmark from the bundled fixture: 3000 regions of
L = 1000 and 10 modisco patterns (20 motifs with reverse complements, W = 50).

The six patterns of ``tests/data/modisco.h5`` are kept and four more are added, each a blend of
two positive patterns (0.65 x one + 0.35 x another shifted by -6..6 positions, drawn for the
CWM and the hypothetical CWM each): distinct motifs whose trimmed windows spread over the
pattern's width, like real ones. The regions are the fixture's 350 repeated, each repeat
circularly shifted along the sequence by its own offset (sequences and contributions together),
so that no two batches see the same data, with ``peak_id`` 0..2999. Deterministic (seed 7)::

    python benchmarks/make_heldout_like.py /tmp/ho
    nemo-dask call-hits -r /tmp/ho/r3000.npz -m /tmp/ho/modisco10.h5 -o /tmp/ho/nd
    finemo call-hits -r /tmp/ho/r3000.npz -m /tmp/ho/modisco10.h5 -o /tmp/ho/fm -b 16
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import h5py
import numpy as np

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
#: (pattern, pattern blended in) for the four added patterns
BLENDS = [(0, 1), (2, 3), (1, 4), (3, 0)]


def make_modisco(out: Path, rng: np.random.Generator) -> Path:
    target = out / "modisco10.h5"
    shutil.copy(DATA / "modisco.h5", target)
    with h5py.File(target, "a") as f:
        pos = f["pos_patterns"]
        names = sorted(pos.keys(), key=lambda s: int(s.split("_")[1]))
        for j, (a, b) in enumerate(BLENDS):
            name = f"pattern_{len(names) + j}"
            f.copy(pos[names[a]], pos, name=name)
            for key in ("contrib_scores", "hypothetical_contribs"):
                shift = int(rng.integers(-6, 7))
                mix = 0.65 * pos[names[a]][key][()] + 0.35 * np.roll(pos[names[b]][key][()],
                                                                     shift, axis=0)
                del pos[name][key]
                pos[name][key] = mix
    return target


def make_regions(out: Path, rng: np.random.Generator, n: int) -> Path:
    src = np.load(DATA / "regions.npz")
    reps = -(-n // len(src["sequences"]))
    shifts = [0] + [int(rng.integers(1, 999)) for _ in range(reps - 1)]
    arrays = {k: np.concatenate([np.roll(src[k], s, axis=2) for s in shifts])[:n]
              for k in ("sequences", "contributions")}
    for key in src.files:
        if key not in arrays:
            arrays[key] = np.concatenate([src[key]] * reps)[:n]
    arrays["peak_id"] = np.arange(n)
    target = out / f"r{n}.npz"
    np.savez(target, **arrays)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory for modisco10.h5 and r<N>.npz")
    parser.add_argument("-n", "--regions", type=int, default=3000)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    print(make_modisco(args.out, rng))
    print(make_regions(args.out, rng, args.regions))


if __name__ == "__main__":
    main()
