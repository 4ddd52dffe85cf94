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


@pytest.fixture(scope="session")
def toy_runs(tmp_path_factory):
    """The standard toy run directories of ``report_runs`` (scored by the real scoring stage), each made
    once per session on first use: ``toy_runs("good", "drifted")``. Tests only read them."""
    import report_runs

    return report_runs.StandardRuns(tmp_path_factory.mktemp("toy-runs"))


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


# --------------------------------------------------------------------------------------------
# no network: every test runs with sockets limited to AF_UNIX and loopback


class NetworkBlocked(ConnectionRefusedError):
    """A test tried to reach a host other than this machine (tests must run offline)."""


def _local_host(host: object) -> bool:
    import ipaddress

    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    name = str(host).strip("[]").split("%", 1)[0]
    if name.lower() in ("localhost", "localhost.localdomain", "ip6-localhost", ""):
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def _guard_address(sock: object, address: object) -> None:
    import socket

    family = getattr(sock, "family", None)
    if family == getattr(socket, "AF_UNIX", object()):
        return
    host = address[0] if isinstance(address, tuple) and address else address
    if family in (socket.AF_INET, socket.AF_INET6) and _local_host(host):
        return
    raise NetworkBlocked(f"network access blocked in tests: {family!r} {address!r}")


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    """Refuse connections and datagrams to anything but AF_UNIX and loopback; name lookups of other
    hosts fail too. Subprocesses (torchrun, the browser) are not patched; they talk over loopback."""
    import socket

    real_connect, real_connect_ex, real_sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
    real_getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        _guard_address(self, address)
        return real_connect(self, address)

    def connect_ex(self, address):
        _guard_address(self, address)
        return real_connect_ex(self, address)

    def sendto(self, data, *args):
        _guard_address(self, args[-1])
        return real_sendto(self, data, *args)

    def getaddrinfo(host, *args, **kwargs):
        if not _local_host(host):
            raise NetworkBlocked(f"network access blocked in tests: name lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(socket.socket, "connect", connect)
    mp.setattr(socket.socket, "connect_ex", connect_ex)
    mp.setattr(socket.socket, "sendto", sendto)
    mp.setattr(socket, "getaddrinfo", getaddrinfo)
    yield
    mp.undo()
