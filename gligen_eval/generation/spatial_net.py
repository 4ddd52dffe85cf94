"""The spatial-map grounding networks: a ConvNeXt position net and the map downsamplers.

A spatial GLIGEN model (hed, canny, depth, normal, sem) grounds on one whole-image condition map:

* **Position net** (:class:`SpatialPositionNet`, the UNet's ``position_net``): the map is resized to
  ``resize_input`` (nearest, as the official ``F.interpolate`` default; sem explicitly nearest), a sem
  map first goes through ``in_conv`` (152 one-hot channels -> 3), then a ConvNeXt backbone without its
  final norm and head gives ``(resize_input / 32)²`` feature tokens, row-major. Each sample has one
  mask scalar: ``tokens * mask + null_feature * (1 - mask)``; then ``+ pos_embedding`` and an MLP
  (``feature -> 512 -> 512 -> out_dim``, SiLU).
* **Downsampler** (:class:`SpatialDownsampler`, the UNet's ``downsample_net``): the map at latent
  size, concatenated after the latents as extra UNet input channels. canny/depth use channel 0, normal
  all 3, sem the one-hot; bicubic (sem nearest) to ``resize_input`` then two stride-2 convolutions with
  a SiLU between (8 channels). HED has no parameters: channel 0, bicubic, straight to the latent size
  (1 channel).

Parameter names follow the official modules (``convnext_tiny_backbone.downsample_layers.*``,
``stages.*``, ``pos_embedding``, ``null_feature``, ``linears.*``, ``in_conv.*``, ``layers.*``), so an
official state dict loads under its own names. The official sizes (ConvNeXt-T depths 3/3/9/3, widths
96/192/384/768) are the defaults; tiny test models use narrower ones (read back from the shapes).

A sem map may be given as the official float one-hot ``(B, 152, H, W)`` or, to save memory, as integer
labels ``(B, H, W)``: nearest resizing commutes with one-hot encoding, so both give the same result.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

CONVNEXT_T_DEPTHS = (3, 3, 9, 3)
CONVNEXT_T_DIMS = (96, 192, 384, 768)


def _spatial_spec(modality: str):
    from gligen_eval.generation.modalities import MODALITIES, SPATIAL_MODALITIES

    s = MODALITIES.get(modality)
    if s is None or not s.spatial:
        raise ValueError(f"no spatial grounding net for {modality!r} (known: {', '.join(SPATIAL_MODALITIES)})")
    return s


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) tensor (ConvNeXt's stem and downsampling norms)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvNeXtBlock(nn.Module):
    """Depthwise 7×7 conv -> LayerNorm -> Linear ×4 -> GELU -> Linear, scaled by ``gamma``, residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x).permute(0, 2, 3, 1)
        h = self.pwconv2(self.act(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).permute(0, 3, 1, 2)


class ConvNeXtBackbone(nn.Module):
    """ConvNeXt features (stride 32) without the final norm and the classifier head."""

    def __init__(self, depths: Sequence[int] = CONVNEXT_T_DEPTHS, dims: Sequence[int] = CONVNEXT_T_DIMS, in_chans: int = 3):
        super().__init__()
        if len(depths) != 4 or len(dims) != 4:
            raise ValueError(f"ConvNeXt has 4 stages, got depths {list(depths)} and dims {list(dims)}")
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4), ChannelsFirstLayerNorm(dims[0]))]
        )
        for i in range(3):
            self.downsample_layers.append(
                nn.Sequential(ChannelsFirstLayerNorm(dims[i]), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2))
            )
        self.stages = nn.ModuleList(nn.Sequential(*[ConvNeXtBlock(dims[i]) for _ in range(depths[i])]) for i in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return x


def one_hot_labels(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, H, W) integer labels -> (B, num_classes, H, W) one-hot, as the official sem inference builds it."""
    out = torch.zeros(labels.shape[0], num_classes, *labels.shape[1:], dtype=dtype, device=labels.device)
    return out.scatter_(1, labels[:, None].long(), 1.0)


def _resize_nearest(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):  # labels: exact in float32 up to 2**24
        return F.interpolate(x[:, None].float(), size).squeeze(1).long()
    return F.interpolate(x, size)


class SpatialPositionNet(nn.Module):
    """Grounding tokens from a whole-image condition map (see the module docstring).

    ``forward(mask=..., <input_name>=map)`` takes the official keyword names (``canny_edge``,
    ``hed_edge``, ``depth``, ``normal``, ``sem``); ``mask`` is (B,) with 1 = grounded, 0 = null tokens.
    """

    def __init__(
        self,
        modality: str,
        *,
        resize_input: int = 448,
        out_dim: int = 768,
        in_dim: int | None = None,
        depths: Sequence[int] = CONVNEXT_T_DEPTHS,
        dims: Sequence[int] = CONVNEXT_T_DIMS,
        hidden_dim: int = 512,
    ):
        super().__init__()
        spec = _spatial_spec(modality)
        if resize_input % 32:
            raise ValueError(f"resize_input must be a multiple of 32 (the ConvNeXt stride), got {resize_input}")
        self.modality = modality
        self.input_name = spec.map_input
        self.resize_input = int(resize_input)
        self.out_dim = int(out_dim)
        self.in_dim = in_dim
        self.num_tokens = (self.resize_input // 32) ** 2
        feature_dim = int(dims[-1])
        if in_dim is not None:
            self.in_conv = nn.Conv2d(in_dim, 3, 3, 1, 1)
        self.convnext_tiny_backbone = ConvNeXtBackbone(depths, dims)
        self.pos_embedding = nn.Parameter(torch.empty(1, self.num_tokens, feature_dim).normal_(std=0.02))
        self.linears = nn.Sequential(
            nn.Linear(feature_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, out_dim),
        )
        self.null_feature = nn.Parameter(torch.zeros(feature_dim))

    def forward(self, mask: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        if set(inputs) != {self.input_name}:
            raise TypeError(f"the {self.modality} position net takes mask= and {self.input_name}=, got {sorted(inputs)}")
        x = inputs[self.input_name]
        b = x.shape[0]
        x = _resize_nearest(x, self.resize_input)
        if self.in_dim is not None:
            if not x.is_floating_point():
                x = one_hot_labels(x, self.in_dim, self.pos_embedding.dtype)
            x = self.in_conv(x)
        feats = self.convnext_tiny_backbone(x.to(self.pos_embedding.dtype))
        objs = feats.reshape(b, feats.shape[1], -1).permute(0, 2, 1)
        m = mask.to(objs.dtype).view(-1, 1, 1)
        objs = objs * m + self.null_feature.view(1, 1, -1) * (1 - m)
        return self.linears(objs + self.pos_embedding)

    def extra_repr(self) -> str:
        return f"modality={self.modality}, resize_input={self.resize_input}, tokens={self.num_tokens}"


class SpatialDownsampler(nn.Module):
    """The condition map at latent size, as extra UNet input channels (see the module docstring).

    ``forward(map, latent_size=None)``: the official output size is ``resize_input / 4`` (HED: 64);
    ``latent_size`` asks for another latent size (images not at the model's native size) by resizing
    to ``4 * latent_size`` (HED: ``latent_size``) instead.
    """

    def __init__(
        self, modality: str, *, resize_input: int = 256, out_dim: int = 8,
        in_dim: int | None = None, hidden_dim: int | None = None,
    ):  # fmt: skip
        super().__init__()
        spec = _spatial_spec(modality)
        self.modality = modality
        self.classes = spec.map_classes
        """One-hot width of a label map (sem), else ``None``."""
        self.first_channel = spec.downsampler_in in (None, 1)
        """canny/depth/HED use channel 0 of the (grey, stored as RGB) map; normal all three."""
        if spec.downsampler_in is None:  # HED: no parameters, channel 0 straight to the latent size
            self.resize_input, self.out_dim, self.factor, self.layers = 64, 1, 1, None
            return
        self.factor = 4
        self.resize_input = int(resize_input)
        self.out_dim = int(out_dim)
        self.in_dim = int(in_dim if in_dim is not None else spec.downsampler_in)
        hidden = hidden_dim if hidden_dim is not None else (16 if self.classes else 4)
        self.layers = nn.Sequential(
            nn.Conv2d(self.in_dim, hidden, 4, 2, 1), nn.SiLU(), nn.Conv2d(hidden, self.out_dim, 4, 2, 1)
        )

    def forward(self, x: torch.Tensor, latent_size: int | None = None) -> torch.Tensor:
        size = self.resize_input if latent_size is None else int(latent_size) * self.factor
        if self.classes:  # a label map: nearest (on labels, then one-hot: the same as nearest on the one-hot)
            if not x.is_floating_point():
                x = one_hot_labels(_resize_nearest(x, size), self.in_dim, self.layers[0].weight.dtype)
            else:
                x = F.interpolate(x, (size, size), mode="nearest")
            return self.layers(x)
        if self.first_channel:
            x = x[:, :1]
        x = F.interpolate(x, (size, size), mode="bicubic")
        return x if self.layers is None else self.layers(x)

    def extra_repr(self) -> str:
        return f"modality={self.modality}, resize_input={self.resize_input}, out_dim={self.out_dim}"


# --------------------------------------------------------------------------------------------
# building from shapes


def position_net_params(state: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments of :class:`SpatialPositionNet` read from its weights (no prefix)."""
    pre = "convnext_tiny_backbone."
    dims = [int(state[f"{pre}downsample_layers.0.0.weight"].shape[0])]
    dims += [int(state[f"{pre}downsample_layers.{i}.1.weight"].shape[0]) for i in (1, 2, 3)]
    depths = [len({k.split(".")[3] for k in state if k.startswith(f"{pre}stages.{i}.")}) for i in range(4)]
    tokens = int(state["pos_embedding"].shape[1])
    side = int(round(tokens**0.5))
    params: dict[str, Any] = {
        "resize_input": side * 32,
        "out_dim": int(state["linears.4.weight"].shape[0]),
        "hidden_dim": int(state["linears.0.weight"].shape[0]),
        "depths": depths,
        "dims": dims,
    }
    if "in_conv.weight" in state:
        params["in_dim"] = int(state["in_conv.weight"].shape[1])
    return params


def downsampler_params(state: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments of :class:`SpatialDownsampler` read from its weights (no prefix; {} for HED)."""
    if "layers.0.weight" not in state:
        return {}
    w0, w2 = state["layers.0.weight"], state["layers.2.weight"]
    return {"in_dim": int(w0.shape[1]), "hidden_dim": int(w0.shape[0]), "out_dim": int(w2.shape[0])}


def build_spatial_parts(
    modality: str,
    position_state: Mapping[str, Any],
    downsampler_state: Mapping[str, Any],
    *,
    position_resize: int | None = None,
    downsampler_resize: int = 256,
) -> tuple[SpatialPositionNet, SpatialDownsampler]:
    """Empty position net and downsampler shaped like the given weights (our keys, prefixes removed)."""
    params = position_net_params(position_state)
    if position_resize is not None and position_resize // 32 != params["resize_input"] // 32:
        raise ValueError(
            f"resize_input {position_resize} gives {(position_resize // 32) ** 2} tokens, "
            f"but the weights have {(params['resize_input'] // 32) ** 2}"
        )
    if position_resize is not None:
        params["resize_input"] = int(position_resize)
    net = SpatialPositionNet(modality, **params)
    down = SpatialDownsampler(modality, resize_input=downsampler_resize, **downsampler_params(downsampler_state))
    return net, down
