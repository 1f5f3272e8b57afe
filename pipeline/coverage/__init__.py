"""Coverage: what ONC says should exist, what we hold, and each difference classified (issue 22).

`model` is pure time-range logic; `held` reads the state store and the files; `sources` asks
ONC; `check` joins them per stream; `mend` re-harvests `missing` ranges; `page` draws them.
"""
