"""Parley's benchmarks: each module measures one thing and returns a table of figures.

They print figures, never pass or fail on time; `bench/run.py` runs them (`make bench`).
"""
