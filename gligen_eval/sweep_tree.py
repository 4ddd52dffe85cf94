"""A τ sweep generated as a tree: the steps every τ shares run once.

All points of a sweep run the same layouts, seeds and batches; they differ only in the grounding
schedule, so they follow the same trajectory up to the first step where their scales differ. The
sweep still runs one ordinary run per τ (own run directory, request keys, sample rows and scoring);
only the images' generation is shared. Inside the run of one τ, :class:`BranchSampler` stands in for
the sampler: asked for a batch, it generates that batch for this τ *and* for every later τ that still
lacks it (:meth:`~gligen_eval.generation.sampler.GroundedSampler.generate_branches`), returns this τ's
images and keeps the others as PNG files under ``<sweep>/.trunk/tau-<τ>/<sample key>.png`` until the
run of their τ asks for them. Each branch equals an independent run of its τ exactly (identical PNG
bytes on CPU at float32), so a kept image is the image that run would make; a killed sweep resumes
from the images its run directories and the kept files hold.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path
from typing import Any, Sequence

from gligen_eval import store
from gligen_eval.config import RunConfig

TRUNK_DIR = ".trunk"
"""Folder of a sweep that keeps branch images until the run of their τ takes them."""


@dataclasses.dataclass
class _Point:
    tau: float
    cfg: RunConfig
    stash: Path
    run_dir: store.RunDir
    sampler_cfg: Any = None
    settings: dict[str, Any] | None = None
    keys: dict[tuple[str, int], str] = dataclasses.field(default_factory=dict)


class SweepTree:
    """The points of one sweep; :meth:`wrapper` gives the sampler wrapper for the run of point ``k``."""

    def __init__(self, root: Path, points: Sequence[tuple[float, RunConfig]]):
        from gligen_eval.runner import run_dir_for

        self.root = Path(root)
        self.points = [
            _Point(tau, sub, self.root / TRUNK_DIR / f"tau-{tau:g}", store.RunDir(run_dir_for(sub)))
            for tau, sub in points
        ]

    def wrapper(self, k: int):
        """``wrap(sampler, model_fp) -> BranchSampler`` for the run of point ``k``."""
        return lambda sampler, model_fp: BranchSampler(self, k, sampler, model_fp)

    def done_with(self, k: int) -> None:
        """The run of point ``k`` has written its images: drop what was kept for it."""
        shutil.rmtree(self.points[k].stash, ignore_errors=True)
        trunk = self.root / TRUNK_DIR
        if trunk.is_dir() and not any(trunk.iterdir()):
            trunk.rmdir()


class BranchSampler:
    """A sampler for the run of one τ of a :class:`SweepTree` that generates the later τ alongside."""

    def __init__(self, tree: SweepTree, k: int, sampler, model_fp: str):
        from gligen_eval.generation.modalities import default_alpha
        from gligen_eval.runner import settings_for_key

        self.inner, self.tree, self.k, self.model_fp = sampler, tree, k, model_fp
        description = sampler.grounding.describe()
        for p in tree.points:  # as the run of each τ resolves them
            alpha = list(p.cfg.sampler.alpha) if p.cfg.sampler.alpha is not None else default_alpha(description["modality"])
            p.sampler_cfg = dataclasses.replace(p.cfg.sampler, alpha=alpha)
            p.settings = settings_for_key(p.cfg, alpha=alpha, grounding=description)
            p.keys = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _key(self, p: _Point, layout, seed: int) -> str:
        from gligen_eval.runner import make_requests

        if (layout.layout_id, seed) not in p.keys:
            for r in make_requests([layout], p.cfg, self.model_fp, p.settings):
                p.keys[(layout.layout_id, r.seed)] = r.sample_key
        return p.keys[(layout.layout_id, seed)]

    def _has(self, p: _Point, keys: list[str]) -> bool:
        return all(store.is_complete_png(p.stash / f"{key}.png") or store.is_complete_png(p.run_dir.image_path(key))
                   for key in keys)  # fmt: skip

    def generate(self, layouts, seeds, settings, *, progress: bool = False) -> list:
        """One PIL image per (layout, seed), as :meth:`GroundedSampler.generate` makes them."""
        from PIL import Image

        from gligen_eval.generation.sampler import to_uint8

        layouts, seeds = list(layouts), [int(s) for s in seeds]
        me = self.tree.points[self.k]
        if settings != me.sampler_cfg:  # not the settings this sweep resolved: nothing to share
            return self.inner.generate(layouts, seeds, settings, progress=progress)
        mine = [self._key(me, lay, s) for lay, s in zip(layouts, seeds)]
        kept = [me.stash / f"{key}.png" for key in mine]
        if all(store.is_complete_png(f) for f in kept):
            return [_read_png(f) for f in kept]
        later = []
        for p in self.tree.points[self.k + 1 :]:
            keys = [self._key(p, lay, s) for lay, s in zip(layouts, seeds)]
            if not self._has(p, keys):
                later.append((p, keys))
        branches = [me.sampler_cfg] + [p.sampler_cfg for p, _ in later]
        outs = self.inner.generate_branches(layouts, seeds, branches, progress=progress)
        images = [[Image.fromarray(a) for a in to_uint8(t.permute(0, 2, 3, 1).numpy())] for t in outs]
        for (p, keys), imgs in zip(later, images[1:]):
            for key, img in zip(keys, imgs):
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                store.atomic_write_bytes(store.ensure_dir(p.stash) / f"{key}.png", buf.getvalue())
        return images[0]


def _read_png(path: Path):
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return Image.fromarray(np.asarray(im.convert("RGB")))
