"""The generalisation probe's steps (benchmarks/generalisation_probe.py, issue 40), one module per concept."""
