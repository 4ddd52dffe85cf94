"""Grounding schedules: the scale of the gated layers at each denoising step.

Pure functions over step counts; the sampler multiplies the output of every gated
self-attention layer by ``scale[i]`` at step ``i`` (scale 0 skips the layers entirely).

``alpha_schedule`` is the official GLIGEN scheduled sampling (``alpha_type=[p1, p2, p3]``):

* ``n1 = int(p1 * num_steps)`` steps at scale 1,
* ``n2 = int(p2 * num_steps)`` steps of linear decay with values ``(n2-1)/n2, (n2-2)/n2, ..., 0``
  (the official ``np.arange(0, 1, 1/n2)[::-1]``: the decay starts just below 1 and its last
  step is exactly 0),
* the remaining ``num_steps - n1 - n2`` steps at scale 0.

``int()`` truncates, exactly as in the official code, so e.g. ``p1=0.3`` with 10 steps gives 3
steps at scale 1, and the third stage absorbs what truncation leaves over.

``beta_schedule`` is the hard cut of diffusers' ``StableDiffusionGLIGENPipeline``: scale 1 for
the first ``int(beta * num_steps)`` steps, then 0.

In both, ``num_steps`` is the number of iterations of the denoising loop, i.e.
``len(scheduler.timesteps)`` (for PNDM with ``skip_prk_steps`` that is one more than the
requested number of inference steps, as in the diffusers pipeline).
"""

from __future__ import annotations

from typing import Sequence


def alpha_schedule(num_steps: int, p: Sequence[float] = (0.3, 0.0, 0.7)) -> list[float]:
    """The official GLIGEN α schedule: ``p = (p1, p2, p3)`` fractions of the steps (sum 1)."""
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    if len(p) != 3:
        raise ValueError(f"the alpha schedule needs 3 fractions (p1, p2, p3), got {list(p)}")
    p1, p2, p3 = (float(v) for v in p)
    if min(p1, p2, p3) < 0 or abs(p1 + p2 + p3 - 1.0) > 1e-6:
        raise ValueError(f"the alpha schedule fractions must be >= 0 and sum to 1, got {list(p)}")
    n1 = int(p1 * num_steps)
    n2 = int(p2 * num_steps)
    n3 = num_steps - n1 - n2
    step = 1.0 / n2 if n2 else 0.0
    decay = [k * step for k in range(n2 - 1, -1, -1)]  # = np.arange(0, 1, 1/n2)[::-1], element for element
    return [1.0] * n1 + decay + [0.0] * n3


def beta_schedule(num_steps: int, beta: float = 0.3) -> list[float]:
    """The diffusers hard cut: 1 for the first ``int(beta * num_steps)`` steps, then 0."""
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    n = int(beta * num_steps)
    return [1.0] * n + [0.0] * (num_steps - n)


def grounding_schedule(
    num_steps: int,
    kind: str,
    *,
    alpha: Sequence[float] = (0.3, 0.0, 0.7),
    beta: float = 0.3,
) -> list[float]:
    """``kind="alpha"`` → :func:`alpha_schedule`, ``kind="beta"`` → :func:`beta_schedule`."""
    if kind == "alpha":
        return alpha_schedule(num_steps, alpha)
    if kind == "beta":
        return beta_schedule(num_steps, beta)
    raise ValueError(f"schedule must be 'alpha' or 'beta', got {kind!r}")
