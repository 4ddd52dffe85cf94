"""FID/KID of a run's images against real images: the reference images, the feature extractor, the cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from gligen_eval import store
from gligen_eval.config import FidConfig
from gligen_eval.errors import InputError
from gligen_eval.records import Layout, SampleRecord

FID_CACHE_ENV = "GLIGEN_EVAL_FID_CACHE"
DEFAULT_FID_CACHE = "~/.cache/gligen-eval/fid"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def tiny_fid_extractor(seed: int = 0, *, num_features: int = 32, device: str = "cpu") -> Any:
    """A small seeded random conv net as FID/KID features, for offline smoke runs.

    It is **not** Inception: its FID/KID only show that the scoring path works.
    """
    import torch

    from gligen_eval.scoring.quality import custom_extractor

    class TinyConvFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
                torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                torch.nn.Conv2d(16, num_features, 3, stride=2, padding=1), torch.nn.ReLU(),
                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
            )  # fmt: skip

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            return self.net(x.float() / 127.5 - 1.0)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = TinyConvFeatures()
    return custom_extractor(module, name=f"tiny-conv-{num_features} (random weights, not Inception)",
                            num_features=num_features, device=device)  # fmt: skip


def fid_cache_dir(cfg: FidConfig) -> Path:
    """``fid.cache_dir``, else ``$GLIGEN_EVAL_FID_CACHE``, else ``~/.cache/gligen-eval/fid``."""
    return Path(cfg.cache_dir or os.environ.get(FID_CACHE_ENV) or DEFAULT_FID_CACHE).expanduser()


def fid_reference_images(cfg: FidConfig, layouts: Sequence[Layout]) -> tuple[list[Path], str]:
    """The real images FID compares with, and a description of where they come from."""
    if cfg.reference is not None:
        root = Path(cfg.reference).expanduser()
        if not root.is_dir():
            raise InputError("fid.reference is not a folder of images", path=str(root))
        paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in fid.reference", path=str(root))
        return paths, f"folder {root}"
    seen: dict[Path, None] = {}
    for lay in layouts:
        if not lay.image_path:
            raise InputError("FID needs real images: set fid.reference to a folder of images, or layouts.images_dir "
                             "to the folder of the layouts' images", record=f"layout {lay.layout_id}")  # fmt: skip
        p = Path(lay.image_path)
        if not p.is_file():
            raise InputError("real image not found", path=str(p), record=f"layout {lay.layout_id}")
        seen.setdefault(p, None)
    return list(seen), "the layouts' real images"


def build_fid_scorer(cfg: FidConfig, *, device: str) -> Any:
    from gligen_eval.scoring.quality import FidKidScorer, inception_extractor

    if cfg.feature == "tiny":
        extractor = tiny_fid_extractor(cfg.seed, device=device)
    else:
        extractor = inception_extractor(2048, cfg.inception_weights, device=device)
    return FidKidScorer(extractor, cfg.resize, batch_size=cfg.batch_size, kid=cfg.kid, kid_subsets=cfg.kid_subsets,
                        kid_subset_size=cfg.kid_subset_size, kid_seed=cfg.seed)  # fmt: skip


def score_fid(rd: store.RunDir, cfg: FidConfig, layouts: Sequence[Layout], samples: Sequence[SampleRecord], *,
              device: str) -> tuple[dict[str, float], dict[str, Any]]:  # fmt: skip
    """``fid`` (and ``kid``, ``kid/std``...) of the run's images against the reference images; images are
    read batch by batch. Returns ``(metrics, description for the manifest)``."""
    paths, where = fid_reference_images(cfg, layouts)
    scorer = build_fid_scorer(cfg, device=device)
    cache = fid_cache_dir(cfg)
    stats = scorer.reference_stats(paths, cache_dir=cache)
    scorer.set_reference(stats)
    scorer.update(rd.root / s.image for s in samples)
    out = scorer.compute()
    reference = {"source": where, "images": len(paths), "key": stats.meta.get("key"), "cache_dir": str(cache)}
    info = {"name": scorer.extractor.name, "fingerprint": scorer.fingerprint(),
            "extractor_fingerprint": scorer.extractor.fingerprint, "resize": scorer.resize.name, "reference": reference}  # fmt: skip
    return out, info


# --------------------------------------------------------------------------------------------
# the stage
