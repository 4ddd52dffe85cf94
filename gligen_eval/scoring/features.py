"""The images-to-features half of FID/KID and the other feature-based quality metrics.

* :class:`ResizePolicy` -- how an image becomes the square network input, with PIL, before any
  tensor is made (resizing alone moves FID by several points, so the policy is part of every cache
  key and every report);
* :class:`FeatureExtractor` -- a network mapping a uint8 batch to ``(N, D)`` features, with a
  fingerprint of its weights and settings: torch-fidelity's FID Inception v3 from a local weights
  file (:func:`inception_extractor`, never downloaded) or any ``nn.Module`` (:func:`custom_extractor`);
* :func:`iter_image_batches` -- images read lazily, batch by batch.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Literal

import numpy as np

from gligen_eval.errors import ConfigError, InputError, MissingWeightsError
from gligen_eval.hashing import file_sha256, tensors_sha256
from gligen_eval.imageio import pil_open
from gligen_eval.records import stable_hash

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_WEIGHTS_FILE

ResizeMode = Literal["center-crop", "resize"]
ResizeFilter = Literal["bicubic", "bilinear", "lanczos", "box", "nearest"]


# --------------------------------------------------------------------------------------------
# resize policy

_FILTERS = ("bicubic", "bilinear", "lanczos", "box", "nearest")
_POLICY_RE = re.compile(r"^(center-crop-then-resize|resize)-(bicubic|bilinear|lanczos|box|nearest)-(\d+)(?: \(PIL\))?$")


@dataclass(frozen=True)
class ResizePolicy:
    """How an image becomes the square network input (with PIL, before any tensor is made).

    ``mode="center-crop"``: crop the largest centred square, then resize it to ``size`` x ``size``.
    ``mode="resize"``: resize the whole image to ``size`` x ``size`` (the aspect ratio changes).
    ``filter``: the PIL resampling filter. Images are converted to RGB first.
    """

    mode: ResizeMode = "center-crop"
    size: int = 299
    filter: ResizeFilter = "bicubic"

    def __post_init__(self) -> None:
        if self.mode not in ("center-crop", "resize"):
            raise ConfigError(f"resize mode must be 'center-crop' or 'resize', got {self.mode!r}")
        if self.filter not in _FILTERS:
            raise ConfigError(f"resize filter must be one of {list(_FILTERS)}, got {self.filter!r}")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 8:
            raise ConfigError(f"resize size must be an integer >= 8, got {self.size!r}")

    @property
    def name(self) -> str:
        """E.g. ``"center-crop-then-resize-bicubic-299 (PIL)"``; :meth:`parse` reads it back."""
        prefix = "center-crop-then-resize" if self.mode == "center-crop" else "resize"
        return f"{prefix}-{self.filter}-{self.size} (PIL)"

    @classmethod
    def parse(cls, text: str) -> "ResizePolicy":
        m = _POLICY_RE.match(text.strip())
        if not m:
            raise ConfigError(
                f"unknown resize policy {text!r}; expected e.g. 'center-crop-then-resize-bicubic-299' "
                "or 'resize-bicubic-299' (filters: " + ", ".join(_FILTERS) + ")"
            )
        mode = "center-crop" if m.group(1) == "center-crop-then-resize" else "resize"
        return cls(mode=mode, size=int(m.group(3)), filter=m.group(2))  # type: ignore[arg-type]

    def apply(self, image: "Image.Image") -> "Image.Image":
        from PIL import Image

        resample = {
            "bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
            "lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX, "nearest": Image.Resampling.NEAREST,
        }[self.filter]  # fmt: skip
        img = image if image.mode == "RGB" else image.convert("RGB")
        if self.mode == "center-crop":
            w, h = img.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            img = img.crop((left, top, left + side, top + side))
        if img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), resample=resample)
        return img


# --------------------------------------------------------------------------------------------
# feature extractors


def module_digest(module: Any) -> str:
    """Hash of a module's class and state (parameters and buffers, names, shapes, dtypes, values)."""
    return tensors_sha256(module.state_dict(), header="{name}|{shape_tuple}|{torch_dtype}",
                          seed=f"{type(module).__module__}.{type(module).__qualname__}", length=16)  # fmt: skip


@dataclass
class FeatureExtractor:
    """A network that maps a uint8 batch ``(N, 3, S, S)`` to float features ``(N, D)``.

    ``fingerprint`` identifies weights and settings; cached statistics are keyed by it.
    """

    module: Any
    name: str
    fingerprint: str
    num_features: int
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.module = self.module.to(self.device).eval()

    def __call__(self, batch: "torch.Tensor") -> "torch.Tensor":
        import torch

        with torch.inference_mode():
            feats = self.module(batch.to(self.device))
        if feats.dim() == 1:
            feats = feats.unsqueeze(0)
        feats = feats.reshape(feats.shape[0], -1)
        if feats.shape != (batch.shape[0], self.num_features):
            raise ValueError(
                f"feature extractor {self.name!r} returned shape {tuple(feats.shape)}, "
                f"expected ({batch.shape[0]}, {self.num_features})"
            )
        return feats.detach().to("cpu", torch.float64)


def default_inception_weights_path() -> Path:
    """``$TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth`` (torch hub's cache)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def inception_weights_file(weights_path: str | os.PathLike[str] | None = None) -> Path:
    """The Inception weights file (default :func:`default_inception_weights_path`); a
    :class:`MissingWeightsError` saying where to put it when absent."""
    path = Path(weights_path).expanduser() if weights_path is not None else default_inception_weights_path()
    if not path.is_file():
        raise MissingWeightsError(
            f"FID/KID need torch-fidelity's Inception weights {INCEPTION_WEIGHTS_FILE}, not found at {path}; "
            f"downloads are disabled. Fetch {INCEPTION_WEIGHTS_URL} and place it at {path} "
            "(that is $TORCH_HOME/hub/checkpoints/; TORCH_HOME defaults to ~/.cache/torch), "
            "or pass its location as the weights path"
        )
    return path


def inception_extractor(
    feature: Literal[64, 192, 768, 2048] = 2048,
    weights_path: str | os.PathLike[str] | None = None,
    *,
    antialias: bool = True,
    device: str = "cpu",
) -> FeatureExtractor:
    """torch-fidelity's FID Inception v3 (through torchmetrics), loaded from a local file only.

    Args:
        feature: which Inception layer; 2048 (the pool features) is standard FID.
        weights_path: the weights file; default :func:`default_inception_weights_path`.
        antialias: torchmetrics' resize inside Inception (to 299); with the default 299 resize
            policy it has nothing to do.
        device: where the network runs.

    Raises :class:`MissingWeightsError` (and downloads nothing) when the file is absent.
    """
    if feature not in (64, 192, 768, 2048):
        raise ConfigError(f"Inception feature must be one of 64, 192, 768, 2048, got {feature!r}")
    path = inception_weights_file(weights_path)
    from torchmetrics.image.fid import NoTrainInceptionV3

    from gligen_eval.safeload import read_state_dict, torch_load_returns

    state = read_state_dict(path)  # torch-fidelity itself would unpickle the file without weights_only
    with torch_load_returns(path, state) as calls:
        module = NoTrainInceptionV3(
            name="inception-v3-compat", features_list=[str(feature)],
            feature_extractor_weights_path=str(path), antialias=antialias,
        )  # fmt: skip
    if len(calls) != 1:
        raise InputError("torch-fidelity did not take the weights read safely; refusing to use them", path=str(path))
    fp = stable_hash({"net": "torch-fidelity inception-v3-compat", "feature": int(feature),
                      "weights_sha256": file_sha256(path), "antialias": bool(antialias)})  # fmt: skip
    return FeatureExtractor(module, name=f"inception-v3-compat/{feature}", fingerprint=fp,
                            num_features=int(feature), device=device)  # fmt: skip


def custom_extractor(module: Any, *, name: str | None = None, num_features: int | None = None,
                     input_size: int = 32, device: str = "cpu") -> FeatureExtractor:  # fmt: skip
    """Wrap any ``nn.Module`` that maps uint8 ``(N, 3, S, S)`` to ``(N, D)``.

    The fingerprint hashes the module's class and state, so changed weights change cache keys.
    ``num_features`` is found with one probe batch of ``input_size`` pixels when not given.
    """
    import torch

    if num_features is None:
        probe = torch.zeros(1, 3, input_size, input_size, dtype=torch.uint8, device=device)
        with torch.inference_mode():
            num_features = int(module.to(device).eval()(probe).reshape(1, -1).shape[1])
    label = name or type(module).__qualname__
    fp = stable_hash({"net": label, "module": module_digest(module), "num_features": int(num_features)})
    return FeatureExtractor(module, name=label, fingerprint=fp, num_features=int(num_features), device=device)


# --------------------------------------------------------------------------------------------
# reading images in batches

def _load(item: Any, policy: ResizePolicy, index: int) -> "Image.Image":
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, Image.Image):
        return policy.apply(item)
    path = Path(item)
    if not path.is_file():
        raise InputError("image file not found", path=str(path), record=f"image {index}")
    try:
        with pil_open(path) as im:
            im.load()
            return policy.apply(im)
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"cannot read image ({e})", path=str(path), record=f"image {index}") from None


def iter_image_batches(images: Iterable[Any], policy: ResizePolicy, batch_size: int = 32) -> Iterator["torch.Tensor"]:
    """Yield uint8 tensors ``(B, 3, S, S)`` with ``B <= batch_size``, reading images lazily."""
    import torch

    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    buf: list[np.ndarray] = []
    for i, item in enumerate(images):
        buf.append(np.asarray(_load(item, policy, i), dtype=np.uint8))
        if len(buf) == batch_size:
            yield torch.from_numpy(np.stack(buf)).permute(0, 3, 1, 2).contiguous()
            buf = []
    if buf:
        yield torch.from_numpy(np.stack(buf)).permute(0, 3, 1, 2).contiguous()
