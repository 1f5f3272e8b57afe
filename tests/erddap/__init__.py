"""A conformance suite of ERDDAP's dataset-loading rules, applied to `erddap-config` output.

ERDDAP cannot run here (no Maven, and its repository is too large to bring in), so these
modules read the datasets.xml fragment and the files it selects the way ERDDAP's
EDDTableFrom*Files classes do, and apply each rule ERDDAP's code enforces (or its docs state as
MUST) when it loads a dataset. See docs/dev/erddap-rules.md for the list and sources.
"""
