"""Confidence intervals by bootstrapping over layouts.

The unit of resampling is the **layout**: every number that a layout contributes (its images, its
objects, its detections) is drawn together, so that correlated values inside one layout do not
make an interval look tighter than it is.

* :func:`bootstrap_ci` -- percentile interval of a statistic of one run.
* :func:`paired_bootstrap_diff` -- difference between two runs over the same layouts, with the
  same draws applied to both (the interval a regression gate needs).
* :func:`ci_keys` / :func:`with_ci` -- ``"<key>/lo"`` and ``"<key>/hi"`` entries for ``metrics.json``.

A statistic is either a name or a callable:

* ``"mean"``: each layout holds one number; the statistic is their mean.
* ``"pooled_mean"``: each layout holds a sequence of numbers (for example the CLIP score of each of
  its objects, or the IoU of each instance); the statistic is the mean over all numbers of the
  drawn layouts (a layout drawn twice counts twice). Layouts with no numbers still take part.
* a callable ``stat_fn(items) -> float``: ``items`` is the list of per-layout values of one draw,
  in draw order, duplicates included. For AP, the callable rebuilds the ground truth and the
  detections of the drawn layouts, giving each draw its own image id, and evaluates them.
  A callable may also offer ``stat_fn.for_items(items) -> (draw -> float)``: given all layouts'
  values once, a function of one draw's layout indices (an int array into ``items``, draw order).
  The bootstrap then calls that per draw instead of building each draw's list, which is what
  lets AP re-accumulate per-image matches without touching Python objects per layout.

The intervals are percentile intervals (``alpha/2`` and ``1 - alpha/2`` quantiles of the bootstrap
distribution, NumPy's default linear interpolation). Draws whose statistic is NaN (for example a
draw with no objects at all) are left out of the quantiles. Everything is seeded through
``numpy.random.default_rng(seed)``: the same inputs and seed give the same interval.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, Mapping, Sequence, Union

import numpy as np

StatFn = Union[Literal["mean", "pooled_mean"], Callable[[list[Any]], float]]
"""A named statistic or ``callable(items_of_one_draw) -> float``."""

_NAMED = ("mean", "pooled_mean")


def _as_items(values_by_layout: Mapping[str, Any] | Sequence[Any]) -> tuple[list[str], list[Any]]:
    if isinstance(values_by_layout, Mapping):
        keys = [str(k) for k in values_by_layout]
        return keys, list(values_by_layout.values())
    items = list(values_by_layout)
    return [str(i) for i in range(len(items))], items


def _check_common(n_boot: int, alpha: float) -> None:
    if not isinstance(n_boot, int) or isinstance(n_boot, bool) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def _check_stat(stat_fn: StatFn) -> None:
    if isinstance(stat_fn, str):
        if stat_fn not in _NAMED:
            raise ValueError(f"stat_fn must be one of {list(_NAMED)} or a callable, got {stat_fn!r}")
    elif not callable(stat_fn):
        raise TypeError(f"stat_fn must be one of {list(_NAMED)} or a callable, got {type(stat_fn).__name__}")


def _sums_counts(items: list[Any], stat_fn: str, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-layout sum and count of the numbers behind a named statistic."""
    sums = np.empty(len(items), dtype=np.float64)
    counts = np.empty(len(items), dtype=np.float64)
    for i, v in enumerate(items):
        if stat_fn == "mean":
            if isinstance(v, (Sequence, np.ndarray)) and not isinstance(v, str):
                raise ValueError(f"layout {keys[i]!r}: stat 'mean' needs one number per layout, got a sequence "
                                 "(use 'pooled_mean' for several numbers per layout)")  # fmt: skip
            x = float(v)
            if math.isnan(x):
                raise ValueError(f"layout {keys[i]!r}: value is NaN")
            sums[i], counts[i] = x, 1.0
        else:
            if not isinstance(v, (Sequence, np.ndarray)) or isinstance(v, str):
                raise ValueError(f"layout {keys[i]!r}: stat 'pooled_mean' needs a sequence of numbers per layout, got {v!r}")
            arr = np.asarray(v, dtype=np.float64).reshape(-1)
            if np.isnan(arr).any():
                raise ValueError(f"layout {keys[i]!r}: values contain NaN")
            sums[i], counts[i] = float(arr.sum()), float(arr.size)
    return sums, counts


def _named_stat(sums: np.ndarray, counts: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray | float:
    """Mean of the drawn layouts' numbers: ``sum(sums[idx]) / sum(counts[idx])`` (NaN when empty)."""
    if idx is None:
        total = counts.sum()
        return float(sums.sum() / total) if total > 0 else float("nan")
    s = sums[idx].sum(axis=-1)
    c = counts[idx].sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / np.where(c > 0, c, 1.0), np.nan)


def _draws(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    return rng.integers(0, n, size=(n_boot, n))


def _quantiles(stats: np.ndarray, alpha: float) -> tuple[float, float]:
    finite = stats[~np.isnan(stats)]
    if finite.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def _on_draw(stat_fn: Callable[[list[Any]], float], items: list[Any]) -> Callable[[np.ndarray], float]:
    """``draw indices -> statistic`` for a callable statistic (its ``for_items`` when it has one)."""
    bind = getattr(stat_fn, "for_items", None)
    if bind is not None:
        fn = bind(items)
        return lambda row: float(fn(row))
    return lambda row: float(stat_fn([items[j] for j in row]))


def point_estimate(values_by_layout: Mapping[str, Any] | Sequence[Any], stat_fn: StatFn = "mean") -> float:
    """The statistic on all layouts, once (the value the interval belongs to)."""
    _check_stat(stat_fn)
    keys, items = _as_items(values_by_layout)
    if not items:
        return float("nan")
    if isinstance(stat_fn, str):
        sums, counts = _sums_counts(items, stat_fn, keys)
        return float(_named_stat(sums, counts))
    return float(stat_fn(items))


def bootstrap_distribution(
    values_by_layout: Mapping[str, Any] | Sequence[Any],
    stat_fn: StatFn = "mean",
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """The ``n_boot`` bootstrap values of the statistic (layouts drawn with replacement)."""
    _check_common(n_boot, 0.05)
    _check_stat(stat_fn)
    keys, items = _as_items(values_by_layout)
    n = len(items)
    if n == 0:
        return np.full(n_boot, np.nan)
    rng = np.random.default_rng(seed)
    idx = _draws(rng, n, n_boot)
    if isinstance(stat_fn, str):
        sums, counts = _sums_counts(items, stat_fn, keys)
        return np.asarray(_named_stat(sums, counts, idx), dtype=np.float64)
    on_draw = _on_draw(stat_fn, items)
    return np.array([on_draw(row) for row in idx], dtype=np.float64)


def bootstrap_ci(
    values_by_layout: Mapping[str, Any] | Sequence[Any],
    stat_fn: StatFn = "mean",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval ``(lo, hi)`` of ``stat_fn`` over layouts.

    Args:
        values_by_layout: ``{layout_id: value}`` (or a sequence, one value per layout). The value is
            a number for ``"mean"``, a sequence of numbers for ``"pooled_mean"``, anything a
            callable ``stat_fn`` understands otherwise.
        stat_fn: ``"mean"``, ``"pooled_mean"`` or ``callable(items_of_one_draw) -> float``.
        n_boot: number of bootstrap draws.
        alpha: 1 - confidence level (0.05 gives a 95% interval).
        seed: seed of the draws.

    Returns ``(nan, nan)`` when there are no layouts; with one layout every draw is that layout.
    """
    _check_common(n_boot, alpha)
    return _quantiles(bootstrap_distribution(values_by_layout, stat_fn, n_boot, seed), alpha)


def paired_bootstrap_diff(
    a_by_layout: Mapping[str, Any],
    b_by_layout: Mapping[str, Any],
    stat_fn: StatFn = "mean",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    *,
    on_mismatch: Literal["error", "intersect"] = "error",
) -> tuple[float, float, float]:
    """``(diff, lo, hi)`` for ``diff = stat(b) - stat(a)`` over the same layouts.

    Each draw picks layouts once and applies the same picks to both runs, so layout difficulty
    cancels out. ``a`` is usually the baseline and ``b`` the candidate: a negative ``hi`` means
    ``b`` is lower than ``a`` with confidence ``1 - alpha``.

    ``on_mismatch="error"`` (default) refuses runs whose layout ids differ and names some of the
    ids that are missing; ``"intersect"`` compares the layouts both runs have.
    """
    _check_common(n_boot, alpha)
    _check_stat(stat_fn)
    if not isinstance(a_by_layout, Mapping) or not isinstance(b_by_layout, Mapping):
        raise TypeError("paired_bootstrap_diff needs {layout_id: value} mappings for both runs")
    if on_mismatch not in ("error", "intersect"):
        raise ValueError(f"on_mismatch must be 'error' or 'intersect', got {on_mismatch!r}")
    a_keys = {str(k): k for k in a_by_layout}
    b_keys = {str(k): k for k in b_by_layout}
    only_a = sorted(set(a_keys) - set(b_keys))
    only_b = sorted(set(b_keys) - set(a_keys))
    if (only_a or only_b) and on_mismatch == "error":
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} layout(s) only in the first run (e.g. {', '.join(only_a[:3])})")
        if only_b:
            parts.append(f"{len(only_b)} layout(s) only in the second run (e.g. {', '.join(only_b[:3])})")
        raise ValueError("paired bootstrap needs the same layouts in both runs: " + "; ".join(parts))
    common = sorted(set(a_keys) & set(b_keys))
    if not common:
        return float("nan"), float("nan"), float("nan")
    a_items = [a_by_layout[a_keys[k]] for k in common]
    b_items = [b_by_layout[b_keys[k]] for k in common]
    n = len(common)
    rng = np.random.default_rng(seed)
    idx = _draws(rng, n, n_boot)
    if isinstance(stat_fn, str):
        sa, ca = _sums_counts(a_items, stat_fn, common)
        sb, cb = _sums_counts(b_items, stat_fn, common)
        diff = float(_named_stat(sb, cb)) - float(_named_stat(sa, ca))
        boots = np.asarray(_named_stat(sb, cb, idx), dtype=np.float64) - np.asarray(_named_stat(sa, ca, idx), dtype=np.float64)
    else:
        diff = float(stat_fn(b_items)) - float(stat_fn(a_items))
        on_a, on_b = _on_draw(stat_fn, a_items), _on_draw(stat_fn, b_items)
        boots = np.array([on_b(row) - on_a(row) for row in idx], dtype=np.float64)
    lo, hi = _quantiles(boots, alpha)
    return diff, lo, hi


def ci_keys(key: str, lo: float, hi: float) -> dict[str, float]:
    """``{"<key>/lo": lo, "<key>/hi": hi}``."""
    return {f"{key}/lo": float(lo), f"{key}/hi": float(hi)}


def with_ci(
    key: str,
    values_by_layout: Mapping[str, Any] | Sequence[Any],
    stat_fn: StatFn = "mean",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, float]:
    """``{key: point, key/lo: lo, key/hi: hi}`` for one metric."""
    lo, hi = bootstrap_ci(values_by_layout, stat_fn, n_boot=n_boot, alpha=alpha, seed=seed)
    return {key: point_estimate(values_by_layout, stat_fn), **ci_keys(key, lo, hi)}
