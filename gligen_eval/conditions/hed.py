"""HED soft edges (Xie & Tu, "Holistically-Nested Edge Detection"), our own PyTorch code.

Two released weight layouts are recognised from their keys (``hed_weights``: a ``.safetensors``
file, or a ``.pth``/``.pt``/``.bin`` state dict read with ``torch.load(weights_only=True)``):

* the original HED network as ported to PyTorch (``network-bsds500.pth``: VGG-16 stages
  ``{net,module}Vgg{One..Fiv}``, side outputs ``Score{One..Fiv}``, a learned 1×1 ``Combine``);
  input BGR × 255 minus the Caffe means, side outputs bilinearly upsampled, combined, sigmoid;
* ControlNet 1.1's re-trained HED (``ControlNetHED.pth``: ``norm``, ``block{1..5}.convs`` /
  ``.projection``); input RGB 0..255 minus a learned ``norm``, side outputs upsampled, averaged, sigmoid.

``hed_weights: tiny`` builds the original layout at tiny widths with seeded random weights (tests).
The output is ``(edge * 255)`` clipped and truncated to uint8, as the annotators write their maps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gligen_eval.errors import InputError, MissingWeightsError

HED_WIDTHS = (64, 128, 256, 512, 512)
TINY_WIDTHS = (4, 8, 8, 8, 8)
_CONVS_PER_STAGE = (2, 2, 3, 3, 3)
_STAGES = ("One", "Two", "Thr", "Fou", "Fiv")
CAFFE_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)
_FETCH = ("fetch `hf download lllyasviel/Annotators ControlNetHED.pth` (or the original HED, `hf download "
          "lllyasviel/ControlNet annotator/ckpts/network-bsds500.pth`) and set grounding.hed_weights to the file")


class OriginalHED(nn.Module):
    """The original HED: five VGG-16 stages, a 1×1 side output per stage, a learned fusion."""

    def __init__(self, widths: Sequence[int] = HED_WIDTHS):
        super().__init__()
        prev = 3
        for i, (name, width, n) in enumerate(zip(_STAGES, widths, _CONVS_PER_STAGE)):
            layers: list[nn.Module] = [nn.MaxPool2d(2, 2)] if i else []
            for _ in range(n):
                layers += [nn.Conv2d(prev, width, 3, 1, 1), nn.ReLU(inplace=False)]
                prev = width
            setattr(self, f"netVgg{name}", nn.Sequential(*layers))
            setattr(self, f"netScore{name}", nn.Conv2d(width, 1, 1, 1, 0))
        self.netCombine = nn.Sequential(nn.Conv2d(5, 1, 1, 1, 0), nn.Sigmoid())
        self.register_buffer("mean_bgr", torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb255: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` RGB in 0..255 → ``(B, H, W)`` edge probability."""
        h, w = rgb255.shape[-2:]
        x = rgb255.flip(1) - self.mean_bgr
        sides = []
        for name in _STAGES:
            x = getattr(self, f"netVgg{name}")(x)
            side = getattr(self, f"netScore{name}")(x)
            sides.append(F.interpolate(side, size=(h, w), mode="bilinear", align_corners=False))
        return self.netCombine(torch.cat(sides, 1))[:, 0]


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, n: int):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1) for i in range(n)])
        self.projection = nn.Conv2d(cout, 1, 1)

    def forward(self, x: torch.Tensor, down: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if down:
            x = F.max_pool2d(x, kernel_size=2, stride=2)
        for conv in self.convs:
            x = F.relu(conv(x))
        return x, self.projection(x)


class ControlNetHED(nn.Module):
    """ControlNet 1.1's HED: five plain conv stages with a side projection each, averaged."""

    def __init__(self, widths: Sequence[int] = HED_WIDTHS):
        super().__init__()
        self.norm = nn.Parameter(torch.zeros(1, 3, 1, 1))
        prev = 3
        for i, (width, n) in enumerate(zip(widths, _CONVS_PER_STAGE)):
            setattr(self, f"block{i + 1}", _Block(prev, width, n))
            prev = width

    def forward(self, rgb255: torch.Tensor) -> torch.Tensor:
        h, w = rgb255.shape[-2:]
        x = rgb255 - self.norm
        sides = []
        for i in range(5):
            x, side = getattr(self, f"block{i + 1}")(x, down=i > 0)
            sides.append(F.interpolate(side, size=(h, w), mode="bilinear", align_corners=False))
        return torch.sigmoid(torch.cat(sides, 1).mean(1))


def tiny_hed(seed: int = 0) -> OriginalHED:
    """The original HED layout at tiny widths, seeded random weights (tests and offline smoke runs)."""
    net = OriginalHED(TINY_WIDTHS)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return net.eval()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weight file without running code from it."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # SafetensorError, OSError
            raise InputError(f"not a readable safetensors file ({' '.join(str(e).split())[:200]})", path=str(path)) from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        reason = " ".join(str(e).split())[:200]
        raise InputError(f"not a plain state dict (read with weights_only=True; re-save it as safetensors): {reason}",
                         path=str(path)) from None  # fmt: skip
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError("expected a state dict of tensors", path=str(path))
    return dict(obj)


def load_hed(ref: str | None) -> nn.Module:
    """The HED network named by ``hed_weights`` (module docstring)."""
    if ref == "tiny":
        return tiny_hed()
    if not ref:
        raise MissingWeightsError(f"HED extraction needs weights: {_FETCH}")
    path = Path(ref).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"HED weights not found: {path}; {_FETCH}")
    state = {k.replace("module", "net", 1) if k.startswith("module") else k: v for k, v in read_state_dict(path).items()}
    net: nn.Module
    if "block1.projection.weight" in state:
        net = ControlNetHED(_widths(state, "block{}.projection.weight", range(1, 6)))
    elif "netScoreOne.weight" in state:
        net = OriginalHED(_widths(state, "netScore{}.weight", _STAGES))
    else:
        raise InputError("not a HED state dict (expected netVggOne.* / netScoreOne.* or block1.* / norm keys)", path=str(path))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise InputError(f"HED weights do not fit the network: {first}", path=str(path)) from None
    return net.eval()


def _widths(state: Mapping[str, torch.Tensor], pattern: str, names: Any) -> tuple[int, ...]:
    return tuple(int(state[pattern.format(n)].shape[1]) for n in names if pattern.format(n) in state)


@torch.no_grad()
def hed_edges(net: nn.Module, images: Sequence[np.ndarray], device: str) -> list[np.ndarray]:
    """Soft edge maps (uint8 ``HxW``) of RGB uint8 images, one forward pass per image (sizes differ)."""
    net = net.to(device)
    out = []
    for rgb in images:
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(device=device, dtype=torch.float32).permute(2, 0, 1)[None]
        edge = net(x)[0].float().cpu().numpy()
        out.append((edge * 255.0).clip(0, 255).astype(np.uint8))
    return out
