"""onc-pipeline: an unattended harvester of Ocean Networks Canada data."""

__version__ = "0.1.0"
