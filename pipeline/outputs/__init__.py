"""The output formats. Importing any of them first puts Arrow on malloc
(`pipeline/outputs/arrow.py`): here, before a writer module imports pyarrow."""

from pipeline.outputs.arrow import prefer_malloc

prefer_malloc()
