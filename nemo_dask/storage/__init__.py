"""Where data is read and written: local paths and fsspec URLs.

* :mod:`.outputs`: every user-named output (``-o``) is checked and written here, atomically
  (temporary name, then rename) or as a stream; ``--overwrite`` deletes only our own output.
* :mod:`.urls`: object-store and other fsspec URLs (``s3://...``) as inputs and outputs.
* :mod:`.temporary`: the temporaries' names, which no dataset glob matches.
"""
