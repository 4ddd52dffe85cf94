"""Keypoint grounding: the position net of the official ``gligen-generation-keypoint`` model.

The net turns up to ``max_persons`` people × 17 COCO keypoints into ``max_persons * 17`` grounding
tokens (136 for the released model). Token ``p * 17 + k`` is keypoint ``k`` of person ``p``:

    identity = person_embedding[p] + keypoint_embedding[k]                      (out_dim)
    position = fourier(x, y)                                                     (4 * fourier_freqs)
    masked tokens use null_identity_feature / null_position_feature instead
    token    = MLP(concat(identity, position))    out_dim + 4F -> 512 -> 512 -> out_dim, SiLU

It plugs into diffusers' ``UNet2DConditionModel(attention_type="gated")`` as ``unet.position_net``.
The UNet calls ``unet.position_net(**cross_attention_kwargs["gligen"])`` and hands the result to the
gated fusers as ``objs``, so the grounding kwargs for this modality are::

    cross_attention_kwargs={"gligen": {"points": points, "masks": masks}}

with ``points`` ``(B, max_persons * 17, 2)`` normalized ``(x, y)`` (origin top-left) and ``masks``
``(B, max_persons * 17)`` with 1 for a keypoint that grounds the image and 0 for an empty slot.
``(B, max_persons, 17, 2)`` / ``(B, max_persons, 17)`` are accepted too.

State-dict names are ours; :data:`OFFICIAL_TO_OURS` maps the official checkpoint's
``position_net.*`` names onto them (the conversion in :mod:`gligen_eval.generation.checkpoints`
uses it in both directions).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

NUM_KEYPOINTS = 17

#: official ``position_net.<name>``  ->  ``KeypointPositionNet`` parameter name
OFFICIAL_TO_OURS: dict[str, str] = {
    "person_embeddings": "person_embedding",
    "keypoint_embeddings": "keypoint_embedding",
    "null_person_feature": "null_identity_feature",
    "null_xy_feature": "null_position_feature",
    "linears.0.weight": "linears.0.weight",
    "linears.0.bias": "linears.0.bias",
    "linears.2.weight": "linears.2.weight",
    "linears.2.bias": "linears.2.bias",
    "linears.4.weight": "linears.4.weight",
    "linears.4.bias": "linears.4.bias",
}
OURS_TO_OFFICIAL: dict[str, str] = {v: k for k, v in OFFICIAL_TO_OURS.items()}


def fourier_embed(x: torch.Tensor, num_freqs: int, temperature: float = 100.0) -> torch.Tensor:
    """Fourier features of the last dimension of ``x``, frequency-major.

    For ``x = (..., C)`` the result is ``(..., 2 * num_freqs * C)`` ordered
    ``[sin(f0 x), cos(f0 x), sin(f1 x), cos(f1 x), ...]`` where each entry spans the ``C``
    coordinates and ``f_k = temperature ** (k / num_freqs)``; the official GLIGEN ordering.
    """
    bands = temperature ** (torch.arange(num_freqs) / num_freqs)
    bands = bands.to(device=x.device, dtype=x.dtype)
    angles = x.unsqueeze(-2) * bands.view(-1, 1)  # (..., F, C)
    emb = torch.stack((angles.sin(), angles.cos()), dim=-2)  # (..., F, 2, C)
    return emb.reshape(*x.shape[:-1], 2 * num_freqs * x.shape[-1])


class KeypointPositionNet(nn.Module):
    """Grounding tokens from person keypoints (see the module docstring for the maths).

    Args:
        out_dim: token width; equals the UNet's ``cross_attention_dim`` (768 for SD-1.x).
        max_persons: person slots (8 in the released model).
        num_keypoints: keypoints per person (17, COCO order).
        fourier_freqs: Fourier frequencies for ``(x, y)`` (8 → 32 dims).
        hidden_dim: MLP width (512).
    """

    def __init__(
        self,
        out_dim: int = 768,
        max_persons: int = 8,
        num_keypoints: int = NUM_KEYPOINTS,
        fourier_freqs: int = 8,
        hidden_dim: int = 512,
    ) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.max_persons = max_persons
        self.num_keypoints = num_keypoints
        self.fourier_freqs = fourier_freqs
        self.position_dim = fourier_freqs * 2 * 2  # sin & cos, x & y

        self.person_embedding = nn.Parameter(torch.zeros(max_persons, out_dim))
        self.keypoint_embedding = nn.Parameter(torch.zeros(num_keypoints, out_dim))
        self.null_identity_feature = nn.Parameter(torch.zeros(out_dim))
        self.null_position_feature = nn.Parameter(torch.zeros(self.position_dim))
        self.linears = nn.Sequential(
            nn.Linear(out_dim + self.position_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, out_dim),
        )

    @property
    def num_tokens(self) -> int:
        return self.max_persons * self.num_keypoints

    def config(self) -> dict[str, int]:
        """Constructor arguments (stored in adapter files)."""
        return {
            "out_dim": self.out_dim,
            "max_persons": self.max_persons,
            "num_keypoints": self.num_keypoints,
            "fourier_freqs": self.fourier_freqs,
            "hidden_dim": self.linears[0].out_features,
        }

    def identity_embeddings(self) -> torch.Tensor:
        """``(max_persons * num_keypoints, out_dim)``; row ``p * num_keypoints + k``."""
        emb = self.person_embedding.unsqueeze(1) + self.keypoint_embedding.unsqueeze(0)
        return emb.reshape(self.num_tokens, self.out_dim)

    def forward(self, points: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``points (B, T, 2)``, ``masks (B, T)`` with ``T = max_persons * 17`` → ``objs (B, T, out_dim)``."""
        if points.dim() == 4:
            points = points.flatten(1, 2)
        if masks.dim() == 3:
            masks = masks.flatten(1, 2)
        if points.shape[1:] != (self.num_tokens, 2) or masks.shape != points.shape[:2]:
            raise ValueError(
                f"KeypointPositionNet expects points (B, {self.num_tokens}, 2) and masks (B, {self.num_tokens}); "
                f"got points {tuple(points.shape)} and masks {tuple(masks.shape)}"
            )
        masks = masks.to(points.dtype).unsqueeze(-1)
        batch = points.shape[0]

        identity = self.identity_embeddings().unsqueeze(0).expand(batch, -1, -1)
        position = fourier_embed(points, self.fourier_freqs)

        null_identity = self.null_identity_feature.view(1, 1, -1)
        null_position = self.null_position_feature.view(1, 1, -1)
        identity = identity * masks + (1 - masks) * null_identity
        position = position * masks + (1 - masks) * null_position

        return self.linears(torch.cat([identity, position], dim=-1))


def pack_keypoints(
    persons: Sequence[Sequence[Sequence[float]]],
    areas: Sequence[float] | None = None,
    *,
    max_persons: int = 8,
    min_visibility: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's people → ``points (max_persons * 17, 2)`` and ``masks (max_persons * 17,)``.

    ``persons`` holds, per person, 17 ``(x, y, v)`` with normalized ``x, y``. People are ordered by
    ``areas`` (largest first; input order is kept for ties or when ``areas`` is None) and the first
    ``max_persons`` are kept. A keypoint grounds the image only when ``v >= min_visibility``
    (the official rule is ``v == 2``); other slots get point ``(0, 0)`` and mask 0.
    """
    order = list(range(len(persons)))
    if areas is not None:
        if len(areas) != len(persons):
            raise ValueError(f"pack_keypoints: {len(persons)} persons but {len(areas)} areas")
        order.sort(key=lambda i: -float(areas[i]))
    points = torch.zeros(max_persons * NUM_KEYPOINTS, 2)
    masks = torch.zeros(max_persons * NUM_KEYPOINTS)
    for slot, i in enumerate(order[:max_persons]):
        kps = persons[i]
        if len(kps) != NUM_KEYPOINTS:
            raise ValueError(f"pack_keypoints: person {i} has {len(kps)} keypoints, expected {NUM_KEYPOINTS}")
        for k, (x, y, v) in enumerate(kps):
            if v >= min_visibility:
                points[slot * NUM_KEYPOINTS + k] = torch.tensor([float(x), float(y)])
                masks[slot * NUM_KEYPOINTS + k] = 1.0
    return points, masks
