"""The generator of a run, built only when there is an image to make.

Image keys hold the generator's fingerprint (a hash of every part's weights), which costs a model
build to compute. A finished run records it in its manifest together with a *source stamp*: the
model section of the config, the grounding options, the image size, the versions of the libraries
that build models, a hash of the code that builds them, and the name, size and modification time of
every file the weights come from (the model file or folder, ``model.base``, ``model.adapter``, a hub
id's snapshot in the local cache). When the stamp of a new run equals the recorded one, the recorded
fingerprint and grounding description are used as they are and the model is built only when an
image is missing or damaged (:class:`LazySampler`); then its fingerprint is checked against the
record (:class:`StaleRecord` when they differ: the run starts again from a fresh build). Anything
that cannot be stamped (an unreadable file, a hub id not in the cache) means: build the model.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from gligen_eval.hashing import tree_sha256
from gligen_eval.records import stable_hash

log = logging.getLogger("gligen_eval")

RECORD_KEY = "generator"
"""Key of the record under the manifest's ``resolved`` section: ``{"stamp", "grounding"}``."""

STAMPED_LIBRARIES = ("torch", "diffusers", "transformers", "safetensors")


class StaleRecord(Exception):
    """The built generator does not match the fingerprint recorded for its source stamp; ``built`` is
    that build, for the run to go on with."""

    def __init__(self, message: str, built: "Generator | None" = None) -> None:
        super().__init__(message)
        self.built = built


@dataclass
class Generator:
    """What a run needs to know of its generator; ``components`` and ``grounding_tokenizer`` are ``None``
    until it is built."""

    entry: dict[str, Any]
    """The manifest's ``models.generator`` entry (``describe`` of every part, performance options, fingerprint)."""
    grounding: dict[str, Any]
    """The grounding tokenizer's description (modality and options)."""
    stamp: str | None
    components: Any = None
    grounding_tokenizer: Any = None

    @property
    def fingerprint(self) -> str:
        return self.entry["fingerprint"]

    def record(self) -> dict[str, Any]:
        return {"stamp": self.stamp, "grounding": self.grounding}


# --------------------------------------------------------------------------------------------
# the source stamp


def _code_digest() -> str:
    """sha256 over the sources of the package that builds the models."""
    root = Path(__file__).resolve().parent / "generation"
    return tree_sha256(root, sorted(root.rglob("*.py")))


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for p in STAMPED_LIBRARIES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def _path_stamp(path: Path) -> list[Any]:
    """Resolved path, size and modification time of a file, or of every file under a folder."""
    if path.is_file():
        st = path.stat()
        return [str(path.resolve()), st.st_size, st.st_mtime_ns]
    rows = []
    for f in sorted(path.rglob("*")):
        if f.is_file():
            st = f.stat()  # follows the hub cache's symlinks to the blobs
            rows.append([str(f.relative_to(path)), st.st_size, st.st_mtime_ns])
    return [str(path.resolve()), rows]


def _source_stamp(name: str | None) -> list[Any] | None:
    """Stamp of one model source (``tiny``, a file, a folder, a cached hub id); raises OSError/LookupError
    when it cannot be stamped."""
    if name is None or name == "tiny":
        return [name]
    path = Path(name).expanduser()
    if path.exists():
        return _path_stamp(path)
    from huggingface_hub import snapshot_download

    snapshot = Path(snapshot_download(name, local_files_only=True))
    return [name, _path_stamp(snapshot)]


def generator_stamp(cfg: Any) -> str | None:
    """The source stamp of ``cfg``'s generator (module docstring), or ``None`` when a source cannot be
    stamped (the model is then built)."""
    model = {k: v for k, v in dataclasses.asdict(cfg.model).items() if k != "device"}
    try:
        sources = [_source_stamp(n) for n in (cfg.model.name, cfg.model.base, cfg.model.adapter)]
    except Exception as e:  # noqa: BLE001 - whatever the reason, building the model tells the truth
        log.debug("generator source not stamped (%s): the model is built", e)
        return None
    return stable_hash({"model": model, "sample_size": max(cfg.sampler.height, cfg.sampler.width),
                        "grounding": cfg.grounding.options(), "sources": sources, "versions": _versions(),
                        "code": _code_digest()})  # fmt: skip


def recorded_generator(manifest: dict[str, Any] | None, stamp: str | None) -> Generator | None:
    """The generator recorded in an earlier run's manifest when its source stamp equals ``stamp``."""
    if stamp is None or not isinstance(manifest, dict):
        return None
    record = (manifest.get("resolved") or {}).get(RECORD_KEY) or {}
    entry = (manifest.get("models") or {}).get("generator")
    if not isinstance(record, dict) or record.get("stamp") != stamp or not isinstance(record.get("grounding"), dict):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("fingerprint"), str):
        return None
    return Generator(entry=entry, grounding=record["grounding"], stamp=stamp)


# --------------------------------------------------------------------------------------------
# building


def load_generator(cfg: Any, *, device: str, stamp: str | None, cache: dict[Any, Any] | None = None) -> Generator:
    """Build the generator of ``cfg`` (or take it from ``cache``, shared by the points of a sweep)."""
    from gligen_eval.generation.grounding import default_grounding
    from gligen_eval.generation.loading import describe, load_components
    from gligen_eval.generation.performance import apply_performance_options

    load_kwargs = dict(
        device=device, dtype=cfg.model.dtype, tiny_seed=cfg.model.tiny_seed,
        sample_size=max(cfg.sampler.height, cfg.sampler.width), base=cfg.model.base, modality=cfg.model.modality,
        adapter=cfg.model.adapter,
    )  # fmt: skip
    cache_key = stable_hash([cfg.model.name, load_kwargs])
    if cache is not None and cache_key in cache:
        components = cache[cache_key]
    else:
        components = load_components(cfg.model.name, **load_kwargs)
        if cache is not None:
            cache[cache_key] = components
    info = describe(components)
    info["performance"] = apply_performance_options(
        components, attention=cfg.model.attention, channels_last=cfg.model.channels_last, compile=cfg.model.compile
    )
    fp = stable_hash({k: v["fingerprint"] for k, v in info.items() if isinstance(v, dict) and "fingerprint" in v})
    grounding = default_grounding(components, **cfg.grounding.options())
    entry = {**info, "name": cfg.model.name, "fingerprint": fp}
    return Generator(entry=entry, grounding=grounding.describe(), stamp=stamp, components=components,
                     grounding_tokenizer=grounding)  # fmt: skip


def ensure_built(gen: Generator, cfg: Any, *, device: str, cache: dict[Any, Any] | None = None) -> Generator:
    """``gen`` with its components; a recorded generator whose build differs raises :class:`StaleRecord`."""
    if gen.components is not None:
        return gen
    built = load_generator(cfg, device=device, stamp=gen.stamp, cache=cache)
    if built.fingerprint != gen.fingerprint or stable_hash(built.grounding) != stable_hash(gen.grounding):
        raise StaleRecord(f"model {cfg.model.name!r} differs from the fingerprint recorded for its files", built)
    gen.components, gen.grounding_tokenizer = built.components, built.grounding_tokenizer
    return gen


class LazySampler:
    """A :class:`~gligen_eval.generation.sampler.GroundedSampler` made on first use of any attribute:
    a pass with nothing to generate never builds the model."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._sampler: Any = None

    @property
    def built(self) -> bool:
        return self._sampler is not None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if self._sampler is None:
            self._sampler = self._make()
        return getattr(self._sampler, name)


def sampler_factory(gen: Generator, cfg: Any, *, device: str, cache: dict[Any, Any] | None = None) -> Callable[[], Any]:
    """What :class:`LazySampler` calls: build ``gen`` when needed, then its sampler."""

    def make() -> Any:
        from gligen_eval.generation.loading import resolve_dtype
        from gligen_eval.generation.sampler import GroundedSampler

        ensure_built(gen, cfg, device=device, cache=cache)
        return GroundedSampler(gen.components, device=device, dtype=resolve_dtype(cfg.model.dtype),
                               grounding=gen.grounding_tokenizer)  # fmt: skip

    return make


__all__: Sequence[str] = ("Generator", "LazySampler", "StaleRecord", "ensure_built", "generator_stamp",
                          "load_generator", "recorded_generator", "sampler_factory")  # fmt: skip
