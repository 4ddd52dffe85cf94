"""Benchmark suites: one pytest file per protocol, each with an offline tiny mode and a real-weight mode.

    pytest benchmarks/                                  # tiny mode (default): offline, random weights, minutes
    GLIGEN_BENCH_MODE=full pytest benchmarks/           # real weights (benchmarks/full/*.yaml), hours on GPUs
    pytest benchmarks/ --gligen-model path/to/new-adapter --gligen-baseline runs/baseline   # regression check

Tiny mode checks that every protocol runs end to end and writes its metrics; thresholds on the
numbers apply in full mode only (random weights give meaningless numbers).
"""

from __future__ import annotations

import suite_modes  # noqa: F401  (validates GLIGEN_BENCH_MODE early)
