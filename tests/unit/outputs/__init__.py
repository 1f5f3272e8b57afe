"""Unit tests of the output formats."""
