"""Imported last by the window workers' fork server (`pool.preload_modules`): importing it
unmaps the library pages the fork server's imports touched (`pipeline/library_pages.py`).
It never raises: the fork server lets only ImportError pass, and would die of anything else."""

from pipeline.library_pages import release_library_pages

release_library_pages()
