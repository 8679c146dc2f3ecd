"""Sequence logos of contribution weight matrices, drawn with matplotlib paths.

Each letter is a glyph outline stretched to the box it occupies: at each position the positive
contributions are stacked upwards from zero, smallest first, and the negative ones downwards.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from matplotlib.axes import Axes
from matplotlib.font_manager import FontProperties
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath
from matplotlib.textpath import TextPath
from matplotlib.transforms import Affine2D

ALPHABET = "ACGT"
#: Conventional nucleotide colours (green A, blue C, amber G, red T).
COLORS = {"A": "#109648", "C": "#255C99", "G": "#F7B32B", "T": "#D62839"}
_FONT = FontProperties(family="DejaVu Sans", weight="bold")


@cache
def _unit_glyph(letter: str) -> MplPath:
    """The outline of ``letter`` scaled to fill the unit square."""
    path = TextPath((0, 0), letter, size=1, prop=_FONT)
    box = path.get_extents()
    to_unit = Affine2D().translate(-box.x0, -box.y0).scale(1 / box.width, 1 / box.height)
    return to_unit.transform_path(path)


def draw_logo(
    ax: Axes,
    cwm: np.ndarray,
    shade: tuple[int, int] | None = None,
    letter_width: float = 0.9,
) -> None:
    """Draw ``cwm`` (shape=(4, W), rows A, C, G, T) as a sequence logo on ``ax``.

    Parameters
    ----------
    ax : Axes
        Target axes; limits are set to fit the logo.
    cwm : ndarray, shape=(4, W)
        Heights; negative values are drawn below the axis.
    shade : (start, end), optional
        Positions ``[start, end)`` to shade, e.g. the trimmed core of the motif.
    letter_width : float
        Width of each letter in position units.
    """
    cwm = np.nan_to_num(np.asarray(cwm, dtype=np.float64))
    width = cwm.shape[1]
    top = bottom = 0.0
    # One compound path per letter: a handful of patches per logo renders far faster than one
    # patch per letter and position.
    glyphs: dict[str, list[MplPath]] = {b: [] for b in ALPHABET}
    for pos in range(width):
        col = cwm[:, pos]
        up = down = 0.0
        for b in np.argsort(np.abs(col)):  # smallest nearest the axis
            h = col[b]
            if h == 0:
                continue
            y0 = up if h > 0 else down + h
            transform = Affine2D().scale(letter_width, abs(h)).translate(pos - letter_width / 2, y0)
            glyphs[ALPHABET[b]].append(transform.transform_path(_unit_glyph(ALPHABET[b])))
            if h > 0:
                up += h
            else:
                down += h
        top, bottom = max(top, up), min(bottom, down)
    for letter, paths in glyphs.items():
        if paths:
            compound = MplPath.make_compound_path(*paths)
            # add_artist: limits are set below, so matplotlib need not scan every vertex.
            ax.add_artist(PathPatch(compound, facecolor=COLORS[letter], edgecolor="none", lw=0))
    if shade is not None:
        ax.axvspan(shade[0] - 0.5, shade[1] - 0.5, color="0.92", zorder=-2, lw=0)
    ax.axhline(0, color="black", lw=0.5, zorder=-1)
    pad = 0.05 * ((top - bottom) or 1.0)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(bottom - pad if bottom < 0 else 0, top + pad)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
