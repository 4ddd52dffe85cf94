"""Shared test fixtures.

``shared_dir`` points at the third-party reference data that sits beside the clone
(``../shared``); tests that use it skip cleanly when it is absent, as it is for users.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GLIGEN_EVAL_SHARED", REPO.parent / "shared"))

# Fully offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"reference data not present ({SHARED}/data); it ships beside the repository, not in it")
    return SHARED


@pytest.fixture(scope="session")
def reference_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "reference"


@pytest.fixture(scope="session")
def official_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "gligen_official"


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(1)  # tiny models: a second thread costs more than it gives
    yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect ``slow`` tests by default. The full set runs with ``GLIGEN_EVAL_FULL=1`` (what
    ``scripts/test.sh`` sets under ``CI=true``), with any ``-m`` expression (``-m ""``: everything), or
    for tests named by node id."""
    args = [str(a) for a in config.invocation_params.args]
    if os.environ.get("GLIGEN_EVAL_FULL") == "1" or any(a == "-m" or a.startswith("-m") for a in args):
        return
    named = {a for a in args if "::" in a}
    keep, slow = [], []
    for item in items:
        explicit = any(item.nodeid == n or item.nodeid.startswith(n + "[") or item.nodeid.endswith(n) for n in named)
        (slow if item.get_closest_marker("slow") is not None and not explicit else keep).append(item)
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = keep
