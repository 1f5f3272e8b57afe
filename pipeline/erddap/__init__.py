"""ERDDAP as a consumer of new-data events: the flags that make it reload a dataset.

A sibling of `pipeline.registry` (the IOOS registry's client and notifier), not a part of
`outputs/`: both turn NewDataEvents into calls to another system, and only they open
sessions to it. `outputs/` writes files and nothing else. ERDDAP's configuration snippets
(`outputs/datasets_xml.py`) stay with the outputs: they describe the files, offline.
"""
