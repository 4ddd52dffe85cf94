"""Which torch device a model runs on.

One rule for every model (generator, detectors, CLIP, extractors): ``"auto"`` is the GPU when there
is one (``cuda``, else Apple ``mps``), else ``cpu``; any other name is used as given once torch
accepts it. Importing this module does not import torch.
"""

from __future__ import annotations

from typing import Any

from gligen_eval.errors import ConfigError


def resolve_device(device: Any = "auto") -> str:
    """``"cuda"``, ``"mps"`` or ``"cpu"`` for ``"auto"``; otherwise ``device`` as a string (``"cuda:1"``).

    A name torch does not know is a one-line :class:`ConfigError`.
    """
    import torch

    name = str(device)
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    try:
        torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    return name
