"""onc-pipeline: an unattended harvester of Ocean Networks Canada data."""

from pipeline.native import apply_defaults

__version__ = "0.1.0"

# Before numpy or pyarrow can load, in every process that imports the package (native.py).
apply_defaults()
