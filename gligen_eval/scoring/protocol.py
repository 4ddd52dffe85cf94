"""The Scorer protocol: what every metric of a run is, declared in one place.

A scorer names the metric keys it writes (:class:`KeySpec`: direction, decimals, report section,
whether it is a headline, a default gate rule, how ``compare`` recomputes it per layout), checks its
weights before any image is generated, does its share of the work on every rank (cached, chunked,
resumable through :func:`gligen_eval.chunks.process_missing`) and turns its rows into metrics on
rank 0. The scoring stage (:mod:`gligen_eval.scoring.pipeline`) only runs the scorers in order;
reports, ``compare``, the gate, the pytest plugin and the headline lists read the key specs.

Built-in scorers live in :mod:`gligen_eval.scoring.scorers`, one module each, found by listing that
package: a new metric is its module and its tests. A user's scorer is a ``"package.module:Class"``
key of the config's ``scorers`` mapping (its value: the scorer's options).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

if TYPE_CHECKING:
    from gligen_eval import distributed, store
    from gligen_eval.config import RunConfig
    from gligen_eval.records import Layout, SampleRecord

# report sections, in report order; keys of one section keep the scorers' declaration order
COCO_BOX, INSTANCE, COCO_KP, QUALITY, CONDITION, COMPOSITION, OTHER = range(7)


@dataclass(frozen=True)
class KeySpec:
    """One metric key, or a family of them: ``{}`` in ``pattern`` stands for one name
    (``box@{}/AP``: every extra detector's AP)."""

    pattern: str
    higher_is_better: bool = True
    decimals: int = 3
    section: int = OTHER
    coco: bool = False
    """A COCO summary value, where -1 means "undefined"."""
    headline: bool = False
    """Printed after a run, shown first by the plugin."""
    gate: tuple[str, float] | None = None
    """The default gate rule, e.g. ``("max_drop", 0.01)`` or ``("max_rise", 0.5)``."""
    paired: str | None = None
    """How ``compare`` recomputes the key per layout for its paired bootstrap: ``coco:bbox``,
    ``coco:keypoints`` (per-image matches re-accumulated), ``pooled`` (the pooled mean of the values
    the scorer's :meth:`Scorer.sample_values` reads back from the run's rows); ``None``: point values only."""

    def matches(self, key: str) -> bool:
        return _regex(self.pattern).fullmatch(key) is not None


@lru_cache(maxsize=None)
def _regex(pattern: str) -> re.Pattern:
    return re.compile("[^/]+".join(re.escape(p) for p in pattern.split("{}")))


@dataclass
class ScoreContext:
    """What a scorer sees: the run, its layouts and samples, and what earlier scorers shared
    (``shared``: e.g. the main detector's box evaluation, a CLIP model another scorer can reuse)."""

    rd: store.RunDir
    cfg: RunConfig
    layouts: Sequence[Layout]
    samples: Sequence[SampleRecord]
    device: str = "cpu"
    dist: distributed.DistInfo | None = None
    progress: bool = True
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def by_id(self) -> dict[str, Layout]:
        return {lay.layout_id: lay for lay in self.layouts}

    @property
    def n_boot(self) -> int:
        return self.cfg.scoring.bootstrap

    @property
    def alpha(self) -> float:
        return 1.0 - self.cfg.scoring.ci_level

    @property
    def seed(self) -> int:
        return self.cfg.scoring.bootstrap_seed


@dataclass
class ScoreOutput:
    """A scorer's part of ``metrics.json`` and ``breakdowns.json``."""

    metrics: dict[str, Any] = field(default_factory=dict)
    breakdowns: dict[str, Any] = field(default_factory=dict)


class Scorer:
    """Base class of every scorer; override what applies. ``order`` places it among the others (run
    and metrics order): a scorer may read what scorers before it put in :attr:`ScoreContext.shared`."""

    name: ClassVar[str] = ""
    order: ClassVar[int] = 100
    keys: ClassVar[tuple[KeySpec, ...]] = ()
    rows: ClassVar[str] = ""
    """The run file :meth:`sample_values` reads (for ``compare``'s method text)."""

    def __init__(self, cfg: RunConfig, options: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.options = dict(options or {})
        self.described: dict[str, Any] = {}
        """What :meth:`describe` returns; filled by :meth:`run` and :meth:`score`."""

    @classmethod
    def configured(cls, cfg: RunConfig) -> bool:
        """Whether ``cfg`` asks for this scorer (by default: its name is a key of ``cfg.scorers``)."""
        return cls.name in cfg.scorers

    def check(self, layouts: Sequence[Layout] | None, *, device: str) -> None:
        """Before generation: every weight file and id exists and is readable, the images it needs are
        there; builds no model."""

    def random_weights(self) -> bool:
        """Whether a model of this scorer has random weights (its numbers mean nothing)."""
        return False

    def run(self, ctx: ScoreContext) -> None:
        """Every rank: score this rank's share of what is not cached yet."""

    def merge(self, ctx: ScoreContext) -> None:
        """Rank 0 after the barrier of a distributed run: fold the ranks' record files."""

    def score(self, ctx: ScoreContext) -> ScoreOutput:
        """Rank 0: the metrics and breakdowns."""
        return ScoreOutput()

    @classmethod
    def sample_values(cls, run: Any, key: str) -> dict[str, list[float]] | None:
        """For a ``paired="pooled"`` key: {sample key: the values whose pooled mean over a set of samples is
        ``key``}, read back from a finished run's rows (``run``: a
        :class:`~gligen_eval.reporting.rundata.RunData`); ``None`` when the run has no such rows."""
        return None

    def describe(self) -> dict[str, Any]:
        """Manifest entries, ``{role: {name, fingerprint, ...}}``, of the models this scorer used so far."""
        return dict(self.described)


def builtin_scorers() -> list[type[Scorer]]:
    """Every scorer class of :mod:`gligen_eval.scoring.scorers`, in ``order``."""
    return list(_builtin_scorers())


@lru_cache(maxsize=1)
def _builtin_scorers() -> tuple[type[Scorer], ...]:
    import importlib
    import pkgutil

    from gligen_eval.scoring import scorers as package

    found: list[type[Scorer]] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Scorer) and obj.name and obj.__module__ == module.__name__:
                found.append(obj)
    return tuple(sorted(found, key=lambda c: (c.order, c.name)))


def user_scorer(target: str) -> type[Scorer]:
    """The scorer class of a ``"package.module:Class"`` key of ``cfg.scorers``."""
    from gligen_eval.errors import ConfigError

    module, _, attr = target.partition(":")
    if not module or not attr:
        raise ConfigError(f"scorers: {target!r} is neither a built-in scorer ({', '.join(scorer_names())}) "
                          "nor 'package.module:Class'")  # fmt: skip
    import importlib

    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"scorers: cannot load {target} ({e})") from None
    if not (isinstance(cls, type) and issubclass(cls, Scorer)):
        raise ConfigError(f"scorers: {target} is not a gligen_eval.scoring.protocol.Scorer")
    if cls not in _USER_SCORERS:  # its keys become known to reports and compare
        _USER_SCORERS.append(cls)
        _key_spec.cache_clear()
    return cls


_USER_SCORERS: list[type[Scorer]] = []
"""The user scorer classes loaded in this process (:func:`user_scorer`)."""
_RECORDED_SPECS: list[KeySpec] = []
"""Key specs read from run manifests (a user scorer's, recorded by the run that used it)."""


def spec_record(spec: KeySpec) -> dict[str, Any]:
    """A key spec as JSON data (what a run's manifest records for a user scorer's keys)."""
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}


def remember_specs(records: Sequence[Any]) -> None:
    """Make recorded key specs (:func:`spec_record`) known to reports and compare -- data only: no
    module of a run directory is ever imported. Malformed records are ignored."""
    known = {s.pattern for s in all_key_specs()}
    for r in records:
        if not isinstance(r, dict) or not isinstance(r.get("pattern"), str) or r["pattern"] in known:
            continue
        try:
            gate = tuple(r["gate"]) if r.get("gate") else None
            spec = KeySpec(**{**r, "gate": gate, "paired": None})  # no rows to recompute from: point values
        except (TypeError, ValueError):
            continue
        if not (isinstance(spec.decimals, int) and 0 <= spec.decimals <= 12 and isinstance(spec.section, int)
                and all(isinstance(v, bool) for v in (spec.higher_is_better, spec.coco, spec.headline))):
            continue
        _RECORDED_SPECS.append(spec)
        known.add(spec.pattern)
    _key_spec.cache_clear()


def scorer_names() -> list[str]:
    return [c.name for c in builtin_scorers()]


def configured_scorers(cfg: RunConfig) -> list[Scorer]:
    """The scorers ``cfg`` asks for, built (no models yet), in order."""
    from gligen_eval.errors import ConfigError

    known = {c.name for c in builtin_scorers()}
    chosen = [(c, cfg.scorers.get(c.name)) for c in builtin_scorers() if c.configured(cfg)]
    for key, options in cfg.scorers.items():
        if options is not None and not isinstance(options, dict):
            raise ConfigError(f"scorers: the options of {key!r} must be a mapping (or null), got {options!r}")
        if key not in known:
            chosen.append((user_scorer(key), options))
        elif not any(c.name == key for c, _ in chosen):
            raise ConfigError(f"scorers: {key!r} is configured by its own section, not by 'scorers'")
    chosen.sort(key=lambda pair: (pair[0].order, pair[0].name))
    return [cls(cfg, options) for cls, options in chosen]


def all_key_specs() -> list[KeySpec]:
    """The key specs of every built-in scorer and every user scorer loaded so far, in declaration order."""
    return [*(k for c in [*builtin_scorers(), *_USER_SCORERS] for k in c.keys), *_RECORDED_SPECS]


def key_spec(key: str) -> KeySpec | None:
    """The spec of ``key`` (without a ``/lo`` ``/hi`` suffix); ``None`` for a key no scorer declares."""
    return _key_spec(key)


@lru_cache(maxsize=4096)
def _key_spec(key: str) -> KeySpec | None:
    specs = all_key_specs()
    exact = next((s for s in specs if "{}" not in s.pattern and s.pattern == key), None)
    return exact or next((s for s in specs if s.matches(key)), None)


def key_owner(key: str) -> type[Scorer] | None:
    """The scorer class that declares ``key``."""
    spec = key_spec(key)
    return next((c for c in [*builtin_scorers(), *_USER_SCORERS] if spec in c.keys), None) if spec else None


def headline_keys() -> list[str]:
    """The keys printed after a run and shown first (exact patterns only)."""
    return [s.pattern for s in all_key_specs() if s.headline and "{}" not in s.pattern]
