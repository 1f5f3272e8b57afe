"""Imported last by the window workers' fork server (`pool.preload_modules`): importing it
gives the library pages the fork server's imports touched back to the page cache
(`forkserver.release_library_pages`)."""

from pipeline.outputs.forkserver import release_library_pages

release_library_pages()
