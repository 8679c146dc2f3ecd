"""Motif names users recognise: TOMTOM matches of the run's motifs against a motif database.

database (JASPAR releases shipped by pyjaspar, or a MEME file) -> query (each pattern's PPM
from the tfmodisco-lite H5) -> tomtom (memelite's TOMTOM, q-values, best k) -> labels (the
``motif_label`` of every output) -> annotate (the motif table of a run, at call time or after).

Needs the ``names`` extra (``pip install 'nemo_dask[names]'``: memelite and pyjaspar); without it
the annotation stops with one line saying so.
"""
