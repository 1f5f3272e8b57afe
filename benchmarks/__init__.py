"""The onc-pipeline benchmark suite: `python -m benchmarks` runs every workload of issue 10."""
