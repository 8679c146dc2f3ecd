"""``python -m nemo_dask`` runs the ``nemo-dask`` command."""

import sys

from .cli import main

sys.exit(main())
