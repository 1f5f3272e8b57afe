"""`python -m pipeline` runs the command-line interface."""

from pipeline.cli import console_main

console_main()
