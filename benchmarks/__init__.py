"""Benchmark scripts of the SimCSE toolkit, run from the repository root as modules::

    python -m benchmarks.bench_train_cpu --threads 2
    python -m benchmarks.bench_gpu --cpu-smoke

``common`` holds the timing/printing helpers, ``harness`` the one way every script builds a SimCSE model and
runs a timed training step. Figures and methods: ``benchmarks/README.md``.
"""
