"""The benchmark suite: throughput and memory of ernie-cpt, measured beside baselines in the same run.

Run it from the repository root with ``python -m benchmarks.run [--quick] [--json PATH]``
(``make bench``). Every figure is a ratio against a baseline run side by side in the same
process (or, for memory, in sibling subprocesses), because absolute times on a shared machine
are noise. See ``benchmarks/run.py`` for the list of measures.
"""
