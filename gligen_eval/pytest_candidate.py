"""What the gligen pytest plugin runs: the candidate of ``--gligen-model``, where runs go, and which code made them.

Kept apart from :mod:`gligen_eval.pytest_plugin` (the hooks and fixtures) and light: reading an
adapter's metadata parses the safetensors JSON header only (no tensor, no code), and nothing here
imports torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gligen_eval.hashing import tree_sha256

ADAPTER_FORMAT = "gligen-eval-adapter"  # the ``format`` metadata of files written by save_adapter


@dataclass(frozen=True)
class Candidate:
    """What ``--gligen-model`` (with ``--gligen-base``/``--gligen-modality``) puts into every config."""

    model: str
    overrides: dict[str, Any]
    """``model.*`` keys set in every resolved config (before ``--gligen-set``)."""
    modality: str | None
    kind: str
    """``adapter``, ``checkpoint`` (an official GLIGEN file) or ``model`` (folder, hub id, tiny)."""


def default_out_root() -> Path:
    """``$XDG_CACHE_HOME/gligen-eval/runs`` (``~/.cache/...``): run directories stay out of the source tree."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "gligen-eval" / "runs"


def read_safetensors_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors header (8-byte length + JSON); reads no tensor, runs no code."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("shorter than a safetensors header")
        n = int.from_bytes(head, "little")
        if not 2 <= n <= 100_000_000:
            raise ValueError(f"header length {n} is not that of a safetensors file")
        raw = f.read(n)
    if len(raw) != n:
        raise ValueError("the header is cut short")
    header = json.loads(raw.decode("utf-8"))
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def _local_or_name(value: str) -> str:
    p = Path(value).expanduser()
    return str(p.resolve()) if p.exists() else value


def resolve_candidate(model: str | None, base: str | None = None, modality: str | None = None) -> Candidate | None:
    """The candidate of ``--gligen-model MODEL [--gligen-base BASE] [--gligen-modality M]``.

    An adapter file plugs into ``base``, else into the base it records (``metadata={"base": ...}`` at
    :func:`~gligen_eval.generation.adapters.save_adapter`); without either, and for bad combinations,
    a one-line :class:`pytest.UsageError` names the option to set.
    """
    if model is None:
        if base is not None or modality is not None:
            raise pytest.UsageError("--gligen-base and --gligen-modality describe a candidate: give it with --gligen-model")
        return None
    path = Path(model).expanduser()
    meta: dict[str, str] = {}
    if path.is_file() and path.suffix == ".safetensors":
        try:
            meta = read_safetensors_metadata(path)
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise pytest.UsageError(f"--gligen-model {model}: not a readable safetensors file ({e})") from None
    if meta.get("format") == ADAPTER_FORMAT:
        recorded = meta.get("modality") or None
        if modality is not None and recorded is not None and modality != recorded:
            raise pytest.UsageError(f"--gligen-modality {modality}: the adapter {model} records modality {recorded}")
        base = base or meta.get("base") or None
        if base is None:
            raise pytest.UsageError(
                f"--gligen-model {model} is an adapter file ({recorded or 'unknown'} modality) that records no base "
                "model: name the model it plugs into with --gligen-base (a diffusers folder, a cached hub id, or "
                "'tiny'), or save it with save_adapter(..., metadata={'base': ...})"
            )
        overrides = {"model.name": _local_or_name(base), "model.adapter": str(path.resolve())}
        return Candidate(model, overrides, modality or recorded, "adapter")
    if path.is_file():
        overrides = {"model.name": str(path.resolve()), "model.adapter": None}
        if base is not None:
            overrides["model.base"] = _local_or_name(base)
        return Candidate(model, overrides, modality, "checkpoint")
    if base is not None:
        raise pytest.UsageError(f"--gligen-base applies to adapter files and official checkpoints; {model} is neither")
    return Candidate(model, {"model.name": _local_or_name(model), "model.adapter": None}, modality, "model")


def code_identity() -> dict[str, Any]:
    """The gligen-eval version, git commit and a digest of the package's files (code and bundled data)."""
    import gligen_eval
    from gligen_eval.runner import _git_info

    pkg = Path(gligen_eval.__file__).resolve().parent
    files = [f for f in sorted(pkg.rglob("*")) if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".pyc", ".pyo")]
    digest = tree_sha256(pkg, files, separator=b"\0")
    git = _git_info()
    return {"gligen_eval": gligen_eval.__version__, "git": git.get("hash"), "git_dirty": git.get("dirty"),
            "files": "sha256:" + digest[:16]}  # fmt: skip
