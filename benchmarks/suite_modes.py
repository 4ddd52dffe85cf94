"""Modes of the benchmark suites (see conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODE = os.environ.get("GLIGEN_BENCH_MODE", "tiny")
if MODE not in ("tiny", "full"):
    raise ValueError(f"GLIGEN_BENCH_MODE must be 'tiny' or 'full', got {MODE!r}")


def suite_config(tiny: str, full: str) -> str:
    """The config of a suite in the current mode (a path relative to benchmarks/)."""
    return tiny if MODE == "tiny" else f"full/{full}"


def thresholds(full: dict[str, float]) -> dict[str, float]:
    """Minimum metric values: the published-protocol sanity floors in full mode, none in tiny mode."""
    return full if MODE == "full" else {}


def modality(name: str) -> list[str]:
    """The marker override that declares the modality a suite evaluates (a candidate of another skips it)."""
    return [f"model.modality={name}"]


def data_path(name: str) -> str:
    return str(HERE / "data" / name)
