"""schema.py is the one home of every column's type; the solver's and finemo's column sets
derive from it."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest

from nemo_dask.finemo import formats
from nemo_dask.schema import (
    HITS_SCHEMA,
    MOTIFS_SCHEMA,
    QC_SCHEMA,
    QC_STATUS,
    SOLVER_HITS_DTYPES,
    SOLVER_QC_DTYPES,
    conform,
    polars_dtypes,
)


def test_derived_column_sets_use_the_stored_types():
    hits, qc = polars_dtypes(HITS_SCHEMA), polars_dtypes(QC_SCHEMA)
    for name, dtype in SOLVER_HITS_DTYPES.items():
        assert name == "region" or hits[name] == dtype
    for name, dtype in SOLVER_QC_DTYPES.items():
        assert name in ("region", "status") or qc[name] == dtype
    assert SOLVER_QC_DTYPES["status"] == pl.UInt8 and len(QC_STATUS) < 256
    for name, dtype in formats.FINEMO_HITS_DTYPES.items():
        assert dtype == hits["hit_similarity" if name == "hit_correlation" else name]
    assert set(formats.FINEMO_QC_DTYPES) <= set(qc)
    assert list(formats.FINEMO_MOTIFS_DTYPES) == MOTIFS_SCHEMA.names


def test_conform_orders_casts_and_decodes_dictionaries():
    table = pl.DataFrame({"peak_id": [1], "nll": [0.5], "dual_gap": [0.1], "num_steps": [3],
                          "step_size": [1.0], "global_scale": [2.0], "status": ["converged"],
                          "chr": ["chr1"], "chr_id": [0], "peak_region_start": [10],
                          "peak_name": ["p"], "extra": [1]})
    arrow = table.to_arrow()
    arrow = arrow.set_column(arrow.schema.get_field_index("chr"), "chr",
                             pa.array(["chr1"]).dictionary_encode())
    out = conform(arrow, QC_SCHEMA)
    assert out.schema == QC_SCHEMA
    with pytest.raises(ValueError, match="lacks columns"):
        conform(table.drop("nll"), QC_SCHEMA)
