"""Benchmark suites: one pytest file per protocol, each with an offline tiny mode and a real-weight mode.

    pytest benchmarks/                                  # tiny mode (default): offline, random weights, minutes
    GLIGEN_BENCH_MODE=full pytest benchmarks/           # real weights (benchmarks/full/*.yaml), hours on GPUs
    pytest benchmarks/ --gligen-model new-adapter.safetensors --gligen-baseline runs/base   # regression check

Tiny mode checks that every protocol runs end to end and writes its metrics; thresholds on the
numbers apply in full mode only (random weights give meaningless numbers). Every suite is a
``gligen``-marked test, so it runs the candidate, the ``--gligen-set`` overrides and the baseline
gate; a suite of another modality than the candidate's skips.
"""

from __future__ import annotations

import suite_modes  # noqa: F401  (validates GLIGEN_BENCH_MODE early)
