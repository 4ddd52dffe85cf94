"""Building a :class:`~gligen_eval.config.RunConfig` from YAML and ``--set key=value`` overrides:
every value is checked against its section's type hints, and an error names the key and what caused it."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

from gligen_eval.errors import ConfigError

DEMO_CONFIG = Path(__file__).parent / "configs" / "demo.yaml"

if TYPE_CHECKING:
    from gligen_eval.config import RunConfig


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        if len(errors) == 1:  # one real alternative (``X | None``): its own message names the key
            raise ConfigError(errors[0])
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"config key '{key}': must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        inner = args[0] if args else Any
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        inner = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, inner, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return _build(tp, value, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(float(value)):
                raise ConfigError(f"config key '{key}': expected a finite number, got {value!r}")
            return float(value)
        raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    raise ConfigError(f"config key '{key}': unsupported type {_type_name(tp)}")


def _build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in names]
    if unknown:
        shown = (prefix + k if isinstance(k, str) and k.isprintable() else repr(prefix + str(k)) for k in unknown)
        raise ConfigError(
            f"unknown config key(s): {', '.join(shown)} "
            f"(known in {prefix.rstrip('.') or 'top level'}: {', '.join(sorted(names))})"
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {dotted}: '{p}' is not a section")
        node = nxt
    node[parts[-1]] = value


_OVERRIDE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*")
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_override(text: str) -> tuple[str, Any]:
    """``"sampler.steps=20"`` → ``("sampler.steps", 20)``; the value is read as YAML."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    if not _OVERRIDE_KEY.fullmatch(key):
        raise ConfigError(f"--set {key!r}: a key is dotted names (e.g. sampler.steps), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    except (ValueError, RecursionError):  # a number too long to convert, nesting too deep
        raise ConfigError(f"--set {key}: cannot read the value {raw[:40]!r}{'...' if len(raw) > 40 else ''}") from None
    if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-5 as a string
    return key, value


def _config(data: Mapping[str, Any], overrides: list[str] | tuple[str, ...]) -> RunConfig:
    from gligen_eval.config import RunConfig
    from gligen_eval.config_validation import validate

    merged: dict[str, Any] = _deepcopy(dict(data))
    for text in overrides:
        key, value = parse_override(text)
        _set_path(merged, key, value)
    cfg = _build(RunConfig, merged)
    validate(cfg)
    return cfg


def config_from_dict(
    data: Mapping[str, Any], overrides: list[str] | tuple[str, ...] = (), *, source: str | Path | None = None
) -> RunConfig:
    """The validated config of ``data`` (read from ``source``) with ``key=value`` overrides applied.

    An error names what caused it: the ``--set`` override after which the config first fails that
    way, or else ``source``.
    """
    try:
        return _config(data, overrides)
    except ConfigError as e:
        raise _blame(data, tuple(overrides), e, source) from None


def _blame(data: Mapping[str, Any], overrides: tuple[str, ...], error: ConfigError, source: Any) -> ConfigError:
    message = str(error)
    if message.startswith("--set"):
        return error
    for k in range(len(overrides) + 1):
        try:
            _config(data, overrides[:k])
        except ConfigError as e:
            if str(e) != message:
                continue
            if k == 0:
                return ConfigError(f"{source}: {message}") if source is not None else error
            return ConfigError(f"--set {overrides[k - 1]}: {message}")
    return ConfigError(f"--set {' '.join(overrides)}: {message}") if overrides else error


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Load a YAML config (``None``: the embedded demo config) and apply ``key=value`` overrides."""
    import yaml

    p = Path(path) if path is not None else DEMO_CONFIG
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    return config_from_dict(data, overrides, source=p)
