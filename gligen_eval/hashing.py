"""Content digests: of a file, of a tree of files, of named tensors.

Every digest that keys a cache, a manifest entry or a fingerprint is made here, so that the same
content always gives the same hex string. Callers keep the prefix and truncation their stored
values have (``length``, ``header``), since changing either would invalidate what is on disk.

Importing this module is cheap: torch is imported by :func:`tensors_sha256` only.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

CHUNK = 1 << 20
"""Bytes read at a time; files of any size are hashed in constant memory."""


def file_sha256(path: str | os.PathLike[str], *, length: int | None = None) -> str:
    """SHA-256 hex digest of a file's bytes, cut to its first ``length`` characters when given."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def tree_sha256(root: str | os.PathLike[str], files: Iterable[Path], *, separator: bytes = b"") -> str:
    """SHA-256 hex digest of files under ``root``: for each file in the order given, its path relative
    to ``root`` (POSIX form), ``separator``, its bytes, ``separator``. Renaming a file changes it."""
    base = Path(root)
    h = hashlib.sha256()
    for f in files:
        h.update(Path(f).relative_to(base).as_posix().encode() + separator + Path(f).read_bytes() + separator)
    return h.hexdigest()


def tensors_sha256(
    tensors: Mapping[str, Any], *, header: str, seed: str = "", sort: bool = True, length: int | None = None
) -> str:
    """SHA-256 hex digest of named tensors: ``seed``, then per tensor ``header`` and its raw bytes.

    The bytes are read on the CPU, so the digest does not depend on the device. ``header`` is a
    :meth:`str.format` template over ``name``, ``dtype`` (``float32``), ``torch_dtype``
    (``torch.float32``), ``shape`` (``[2, 3]``) and ``shape_tuple`` (``(2, 3)``); it must name at
    least the name, dtype and shape so that two states with the same bytes differ. ``sort``: by name
    (otherwise the mapping's order). A meta tensor (no data) is a :class:`GligenEvalError`.
    """
    import torch

    from gligen_eval.errors import GligenEvalError

    h = hashlib.sha256(seed.encode())
    for name in sorted(tensors) if sort else tensors:
        t = tensors[name]
        if t.device.type == "meta":
            raise GligenEvalError(f"cannot fingerprint {name!r}: it has no data (meta tensor)")
        t = t.detach().to("cpu").contiguous()
        h.update(header.format(name=name, dtype=str(t.dtype).replace("torch.", ""), torch_dtype=str(t.dtype),
                               shape=list(t.shape), shape_tuple=tuple(t.shape)).encode())  # fmt: skip
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:length]
