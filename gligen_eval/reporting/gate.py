"""The regression gate of ``gligen-eval compare``: a YAML file that sets a rule per metric::

    metrics:
      box/AP:   {max_drop: 0.01, confidence: 0.95}   # AP may not drop by more than 1 point
      box/mIoU: {max_drop: 0.02}
      fid:      {max_rise: 0.5}
      kp/AP:    {min: 0.2}                           # absolute bound on the candidate
    confidence: 0.95                                 # default for the metrics above
    bootstrap: {n_boot: 1000, n_boot_ap: 1000, seed: 0}

A metric *regresses* when the whole interval of its difference lies beyond the allowed change
(``hi < -max_drop``, or ``lo > max_rise``), so noise alone does not fail a gate; without an
interval the point difference is used (:func:`judge`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from gligen_eval.errors import InputError

RULE_KEYS = ("max_drop", "max_rise", "confidence", "min", "max")
GATE_KEYS = ("metrics", "confidence", "bootstrap")
BOOTSTRAP_KEYS = ("n_boot", "n_boot_ap", "seed")


@dataclass
class Rule:
    max_drop: float | None = None
    max_rise: float | None = None
    confidence: float = 0.95
    min: float | None = None
    max: float | None = None

    def text(self, with_confidence: bool = True) -> str:
        parts = []
        if self.max_drop is not None:
            parts.append(f"drop ≤ {self.max_drop:g}")
        if self.max_rise is not None:
            parts.append(f"rise ≤ {self.max_rise:g}")
        if self.min is not None:
            parts.append(f"≥ {self.min:g}")
        if self.max is not None:
            parts.append(f"≤ {self.max:g}")
        relative = self.max_drop is not None or self.max_rise is not None
        return ", ".join(parts) + (f" @{self.confidence:.0%}" if relative and with_confidence else "")


@dataclass
class Gate:
    rules: dict[str, Rule] = field(default_factory=dict)
    n_boot: int = 1000
    n_boot_ap: int = 1000
    seed: int = 0
    confidence: float = 0.95
    source: str | None = None


def _number(value: Any, where: str, *, lo: float | None = None, hi: float | None = None, integer: bool = False) -> Any:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok or (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f" in [{lo}, {hi}]" if lo is not None and hi is not None else (f" >= {lo}" if lo is not None else "")
        raise InputError(f"{where} must be a{'n integer' if integer else ' number'}{rng}, got {value!r}")
    return int(value) if integer else float(value)


def parse_gate(data: Any, source: str | None = None) -> Gate:
    """Check a gate mapping (see the module docstring); errors name the file and the key."""
    where = source or "gate"
    if not isinstance(data, Mapping):
        raise InputError("the gate file must be a mapping with a 'metrics' section", path=source)
    unknown = sorted(set(data) - set(GATE_KEYS))
    if unknown:
        raise InputError(f"unknown gate key(s) {', '.join(map(str, unknown))} (allowed: {', '.join(GATE_KEYS)})", path=source)
    gate = Gate(source=source)
    if "confidence" in data:
        gate.confidence = _number(data["confidence"], f"{where}: confidence", lo=0.5, hi=0.999999)
    boot = data.get("bootstrap") or {}
    if not isinstance(boot, Mapping):
        raise InputError("'bootstrap' must be a mapping", path=source)
    unknown = sorted(set(boot) - set(BOOTSTRAP_KEYS))
    if unknown:
        raise InputError(f"unknown bootstrap key(s) {', '.join(map(str, unknown))} (allowed: {', '.join(BOOTSTRAP_KEYS)})",
                         path=source)  # fmt: skip
    for k in BOOTSTRAP_KEYS:
        if k in boot:
            setattr(gate, k, _number(boot[k], f"{where}: bootstrap.{k}", lo=0 if k == "seed" else 1, integer=True))
    metrics = data.get("metrics")
    if not isinstance(metrics, Mapping) or not metrics:
        raise InputError("'metrics' must map metric names to rules, e.g. {box/AP: {max_drop: 0.01}}", path=source)
    for key, raw in metrics.items():
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise InputError(f"the rule of {key!r} must be a mapping", path=source, record=str(key))
        unknown = sorted(set(raw) - set(RULE_KEYS))
        if unknown:
            raise InputError(f"unknown rule key(s) {', '.join(map(str, unknown))} (allowed: {', '.join(RULE_KEYS)})",
                             path=source, record=str(key))  # fmt: skip
        rule = Rule(confidence=gate.confidence)
        for k in RULE_KEYS:
            if k in raw:
                if k == "confidence":
                    v = _number(raw[k], f"{where} [{key}]: confidence", lo=0.5, hi=0.999999)
                elif k in ("max_drop", "max_rise"):
                    v = _number(raw[k], f"{where} [{key}]: {k}", lo=0.0)
                else:
                    v = _number(raw[k], f"{where} [{key}]: {k}")
                setattr(rule, k, v)
        if all(getattr(rule, k) is None for k in ("max_drop", "max_rise", "min", "max")):
            raise InputError("the rule sets none of max_drop, max_rise, min, max", path=source, record=str(key))
        gate.rules[str(key)] = rule
    return gate


def default_gate(keys: Iterable[str], *, max_drop: float | None = None, max_rise: float | None = None,
                 confidence: float = 0.95) -> Gate:  # fmt: skip
    """A gate for the metrics among ``keys`` (those both runs have) whose scorer declares a default rule
    (:attr:`~gligen_eval.scoring.protocol.KeySpec.gate`): ``box/AP``, ``box/mIoU``, ``box/success`` and
    ``kp/AP`` may not drop by more than 0.01 (one point), ``fid`` may not rise by more than 0.5, at
    ``confidence``; ``max_drop`` / ``max_rise`` replace the declared amounts. The pytest plugin uses it
    when ``--gligen-baseline`` is given without ``--gligen-gate``.
    """
    from gligen_eval.scoring.protocol import key_spec

    rules = {}
    for k in keys:
        spec = key_spec(k)
        if spec is None or spec.gate is None:
            continue
        kind, amount = spec.gate
        given = max_drop if kind == "max_drop" else max_rise
        rules[k] = Rule(**{kind: amount if given is None else given}, confidence=confidence)
    return Gate(rules=rules, confidence=confidence, source="built-in default gate")


def load_gate(path: Path) -> Gate:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError("gate file not found", path=str(p))
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise InputError(f"not valid YAML ({str(e).splitlines()[0]})", path=str(p)) from None
    return parse_gate(data, source=str(p))



def judge(row: Any, rule: Rule | None) -> None:
    """Set ``row``'s rule text, verdict and note (a :class:`~gligen_eval.reporting.compare.MetricRow`)."""
    if rule is None:
        return
    row.rule = rule.text(with_confidence=row.lo is not None)
    if row.diff is None or not math.isfinite(row.diff) or row.candidate is None:
        row.verdict = "n/a"
        row.note = (row.note + "; " if row.note else "") + "undefined in at least one run"
        return
    bad = []
    has_ci = row.lo is not None and row.hi is not None and math.isfinite(row.lo) and math.isfinite(row.hi)
    if rule.max_drop is not None:
        bound = row.hi if has_ci else row.diff
        if bound < -rule.max_drop:
            bad.append(f"dropped by more than {rule.max_drop:g}")
    if rule.max_rise is not None:
        bound = row.lo if has_ci else row.diff
        if bound > rule.max_rise:
            bad.append(f"rose by more than {rule.max_rise:g}")
    if rule.min is not None and row.candidate < rule.min:
        bad.append(f"below {rule.min:g}")
    if rule.max is not None and row.candidate > rule.max:
        bad.append(f"above {rule.max:g}")
    row.verdict = "regression" if bad else "pass"
    if bad:
        row.note = (row.note + "; " if row.note else "") + ", ".join(bad)
