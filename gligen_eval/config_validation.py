"""Checks of a built :class:`~gligen_eval.config.RunConfig` across its keys (ranges, names, resize
policies, the compositional options); a bad value is a :class:`ConfigError` naming the key."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gligen_eval.errors import ConfigError

if TYPE_CHECKING:
    from gligen_eval.config import QualityConfig, RunConfig


def validate(cfg: RunConfig) -> None:
    s = cfg.sampler
    if s.steps < 1:
        raise ConfigError(f"config key 'sampler.steps' must be >= 1, got {s.steps}")
    if s.height % 8 or s.width % 8 or s.height <= 0 or s.width <= 0:
        raise ConfigError(f"sampler.height/width must be positive multiples of 8, got {s.height}x{s.width}")
    if s.alpha is not None and (len(s.alpha) != 3 or any(a < 0 for a in s.alpha) or abs(sum(s.alpha) - 1.0) > 1e-6):
        raise ConfigError(f"config key 'sampler.alpha' must be 3 non-negative fractions summing to 1, got {s.alpha}")
    if any(not 0.0 <= t <= 1.0 for t in cfg.sweep.tau) or len(set(cfg.sweep.tau)) != len(cfg.sweep.tau):
        raise ConfigError(f"config key 'sweep.tau' must hold distinct values in [0, 1], got {cfg.sweep.tau}")
    if not 0.0 <= s.beta <= 1.0:
        raise ConfigError(f"config key 'sampler.beta' must be in [0, 1], got {s.beta}")
    if s.batch_size < 1 or s.seeds_per_layout < 1:
        raise ConfigError("sampler.batch_size and sampler.seeds_per_layout must be >= 1")
    if not 1 <= s.max_objects <= 30:
        raise ConfigError(f"config key 'sampler.max_objects' must be in [1, 30], got {s.max_objects}")
    if cfg.layouts.limit is not None and cfg.layouts.limit < 1:
        raise ConfigError(f"config key 'layouts.limit' must be >= 1, got {cfg.layouts.limit}")
    if not 0.0 <= cfg.layouts.min_area < 1.0:
        raise ConfigError(f"config key 'layouts.min_area' must be in [0, 1), got {cfg.layouts.min_area}")
    if not 0.0 < cfg.scoring.success_iou <= 1.0:
        raise ConfigError(f"config key 'scoring.success_iou' must be in (0, 1], got {cfg.scoring.success_iou}")
    _validate_scoring(cfg)


def _validate_scoring(cfg: RunConfig) -> None:
    sc = cfg.scoring
    if sc.bootstrap < 0 or sc.bootstrap_ap < 0:
        raise ConfigError(f"config keys 'scoring.bootstrap' and 'scoring.bootstrap_ap' must be >= 0 (0 disables), "
                          f"got {sc.bootstrap} and {sc.bootstrap_ap}")  # fmt: skip
    if not 0.0 < sc.ci_level < 1.0:
        raise ConfigError(f"config key 'scoring.ci_level' must be in (0, 1), got {sc.ci_level}")
    if not 0.0 <= sc.instance_min_score <= 1.0:
        raise ConfigError(f"config key 'scoring.instance_min_score' must be in [0, 1], got {sc.instance_min_score}")
    detectors = [("detector", cfg.detector)] + [(f"extra_detectors[{i}]", d) for i, d in enumerate(cfg.extra_detectors)]
    if cfg.pose is not None:
        detectors.append(("pose", cfg.pose))
    for where, d in detectors:
        if d.batch_size < 1 or d.max_det < 1:
            raise ConfigError(f"config keys '{where}.batch_size' and '{where}.max_det' must be >= 1")
        if d.name is not None and (not d.name.strip() or "/" in d.name):
            raise ConfigError(f"config key '{where}.name' must be a non-empty name without '/', got {d.name!r}")
    names = [d.name for d in cfg.extra_detectors if d.name is not None]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"config key 'extra_detectors': duplicate name(s) {', '.join(dup)}")
    f = cfg.fid
    if f.batch_size < 1 or f.kid_subsets < 1 or f.kid_subset_size < 2:
        raise ConfigError("config keys 'fid.batch_size' and 'fid.kid_subsets' must be >= 1 and 'fid.kid_subset_size' >= 2")
    if f.enabled:
        from gligen_eval.scoring.quality import ResizePolicy

        try:
            ResizePolicy.parse(f.resize)
        except ConfigError as e:
            raise ConfigError(f"config key 'fid.resize': {e}") from None
    c = cfg.clip
    if not c.weight > 0 or c.batch_size < 1:
        raise ConfigError(f"config keys 'clip.weight' must be > 0 and 'clip.batch_size' >= 1, got {c.weight}, {c.batch_size}")
    if not c.model.strip():
        raise ConfigError("config key 'clip.model' must name a model ('tiny', a local folder or a hub id)")
    _validate_quality(cfg.quality)
    if cfg.comp.enabled:
        try:
            comp_options(cfg)
        except ConfigError as e:
            raise ConfigError(f"config section 'comp': {e}") from None


def _validate_quality(q: QualityConfig) -> None:
    for name in ("fd_dinov2", "cmmd", "prdc", "pickscore"):
        section = getattr(q, name)
        if section.batch_size < 1:
            raise ConfigError(f"config key 'quality.{name}.batch_size' must be >= 1, got {section.batch_size}")
        resize = getattr(section, "resize", None)
        if section.enabled and resize is not None:
            from gligen_eval.scoring.quality import ResizePolicy

            try:
                ResizePolicy.parse(resize)
            except ConfigError as e:
                raise ConfigError(f"config key 'quality.{name}.resize': {e}") from None
    if q.prdc.k < 1:
        raise ConfigError(f"config key 'quality.prdc.k' must be >= 1, got {q.prdc.k}")
    if not q.cmmd.sigma > 0:
        raise ConfigError(f"config key 'quality.cmmd.sigma' must be > 0, got {q.cmmd.sigma}")


def comp_options(cfg: RunConfig) -> Any:
    """The :class:`~gligen_eval.scoring.compositional.CompOptions` of ``cfg.comp``."""
    from gligen_eval.scoring.compositional import CompOptions

    c = cfg.comp
    min_score = cfg.scoring.instance_min_score if c.min_score is None else c.min_score
    return CompOptions(margin=c.margin, min_score=min_score, hsv_min_share=c.hsv_min_share, colors=tuple(c.colors),
                       mig=c.mig, mig_iou=c.mig_iou)  # fmt: skip
