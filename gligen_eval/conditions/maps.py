"""Where the condition map of a layout comes from, and :func:`load_condition` itself.

A given map is found, in this order, in ``map_dir`` (keyed by the layout id, then by the file name
or stem of the layout's ``condition_map`` and ``image_path``; any image extension) and at the
layout's own ``condition_map`` path. Two files for the same key (``x.png`` and ``x.jpg``) are an
error rather than a guess. A ``.npy`` map is a uint8 ``HxW``/``HxWx3`` array, or for normals a
float ``HxWx3`` array of unit normals in [-1, 1] as DIODE ships them (0 where there is none),
stored as ``(n * 0.5 + 0.5) * 255``; it is read without pickles. Every problem is one
:class:`~gligen_eval.errors.InputError` line that names the layout and the file.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from gligen_eval.conditions.options import check_modality, condition_options
from gligen_eval.conditions.preprocess import MAX_SEM_LABEL, array_to_image, labels_to_input, map_to_input, map_to_rgb
from gligen_eval.errors import ConfigError, InputError
from gligen_eval.records import Layout

MAP_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".npy")

SYNTHETIC_SOURCES: tuple[str, ...] = ("sample", "sample-kp")
"""Layout sources without photos whose layouts get drawn maps under ``map: auto``."""


def _record(layout: Layout) -> str:
    return f"layout {layout.layout_id}"


def _keys(layout: Layout) -> list[str]:
    keys = [layout.layout_id]
    for p in (layout.condition_map, layout.image_path):
        if p:
            keys += [Path(p).name, Path(p).stem]
    return list(dict.fromkeys(k for k in keys if k))


def find_in_map_dir(layout: Layout, map_dir: str | Path) -> Path | None:
    """The file of ``layout`` in ``map_dir``: ``<key>`` itself if it is an image file, else ``<key>.<ext>``."""
    d = Path(map_dir).expanduser()
    if not d.is_dir():
        raise InputError("grounding.map_dir is not a folder", path=str(map_dir), record=_record(layout))
    for key in _keys(layout):
        hits = []
        exact = d / key
        if exact.suffix.lower() in MAP_EXTENSIONS and exact.is_file():
            hits.append(exact)
        hits += [d / (key + ext) for ext in MAP_EXTENSIONS if (d / (key + ext)).is_file()]
        hits = list(dict.fromkeys(hits))
        if len(hits) > 1:
            raise InputError(f"more than one map for this layout: {', '.join(h.name for h in hits)}; keep one",
                             path=str(d), record=_record(layout))  # fmt: skip
        if hits:
            return hits[0]
    return None


def given_map_path(layout: Layout, map_dir: str | None) -> Path | None:
    """The given map of ``layout`` (module docstring), or None when it has none."""
    if map_dir:
        hit = find_in_map_dir(layout, map_dir)
        if hit is not None:
            return hit
    if layout.condition_map:
        p = Path(layout.condition_map).expanduser()
        if not p.is_file():
            raise InputError("condition map not found", path=str(p), record=_record(layout))
        return p
    return None


def read_image(path: Path | str, layout: Layout, what: str) -> Any:
    """A PIL image, fully decoded; an unreadable file is an InputError naming it and the layout."""
    from gligen_eval.imageio import pil_open

    try:
        img = pil_open(path)
        img.load()
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError ...
        reason = " ".join(str(e).split()) or type(e).__name__
        raise InputError(f"cannot read {what} ({reason})", path=str(path), record=_record(layout)) from None
    return img


def read_npy_map(path: Path | str, layout: Layout, modality: str) -> Any:
    """A ``.npy`` map (module docstring) as a PIL image."""
    where = {"path": str(path), "record": _record(layout)}
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as e:
        raise InputError(f"cannot read {modality} map ({' '.join(str(e).split())})", **where) from None
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[2] != 3:
        a = a.transpose(1, 2, 0)  # channels first
    if a.dtype.kind == "f" and modality == "normal" and a.ndim == 3 and a.shape[2] == 3:
        if not np.isfinite(a).all() or np.abs(a).max() > 1.0 + 1e-3:
            raise InputError("a float normal map holds unit normals in [-1, 1]", **where)
        a = np.round((np.clip(a, -1.0, 1.0) * 0.5 + 0.5) * 255.0).astype(np.uint8)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        also = " (or float unit normals)" if modality == "normal" else ""
        raise InputError(f"a .npy {modality} map is a uint8 HxW or HxWx3 array{also}, got {a.dtype} {a.shape}", **where)
    return array_to_image(np.ascontiguousarray(a))


def _check_labels(img: Any, path: Path | str | None, layout: Layout) -> None:
    where = {"path": str(path) if path is not None else None, "record": _record(layout)}
    if img.mode in ("RGB", "RGBA"):
        a = np.asarray(img.convert("RGB"))
        if not ((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()):
            raise InputError("a sem map is a one-channel ADE20K label PNG (values 0-150), this one is in color "
                             "(a colored visualisation?)", **where)  # fmt: skip
    top = int(np.asarray(img.convert("L")).max())
    if top > MAX_SEM_LABEL:
        raise InputError(f"sem label {top} is outside 0..{MAX_SEM_LABEL} (ADE20K labels: 0 other, 1-150)", **where)


_EXTRACT_KEYS = {"canny": ("canny_low", "canny_high"), "hed": ("hed_weights",), "depth": ("depth_model",),
                 "normal": ("normal_model",), "sem": ("sem_model",)}  # fmt: skip


def extracted_map(layout: Layout, modality: str, opts: dict[str, Any]) -> np.ndarray:
    """The map extracted from the layout's real image; remembered per file state and extractor, so the
    batches of one layout's seeds do not extract it again."""
    p = Path(layout.image_path or "")
    try:
        st = p.stat()
    except OSError:
        raise InputError("real image not found", path=str(p), record=_record(layout)) from None
    settings = tuple(opts[k] for k in _EXTRACT_KEYS[modality])
    return _extract_cached(str(p), st.st_mtime_ns, st.st_size, modality, settings, opts["extract_device"], layout)


@functools.lru_cache(maxsize=128)
def _extract_cached(path: str, mtime_ns: int, nbytes: int, modality: str, settings: tuple, device: str,
                    layout: Layout) -> np.ndarray:  # fmt: skip
    from gligen_eval.conditions.extract import extract_conditions

    options = dict(zip(_EXTRACT_KEYS[modality], settings), extract_device=device)
    arr = extract_conditions([read_image(path, layout, "real image")], modality, **options)[0]
    arr.setflags(write=False)
    return arr


def source_map(layout: Layout, modality: str, **options: Any) -> tuple[Any, str | None]:
    """The map of ``layout`` before preprocessing, as ``(PIL image, file it came from)`` (``map`` rules in
    :data:`gligen_eval.conditions.MAP_SOURCES`); sem maps are checked to be label images."""
    check_modality(modality)
    opts = condition_options(options)
    source = opts["map"]
    found: tuple[Any, str | None] | None = None
    if source in ("given", "auto"):
        path = given_map_path(layout, opts["map_dir"])
        if path is not None:
            img = read_npy_map(path, layout, modality) if path.suffix.lower() == ".npy" else \
                read_image(path, layout, f"{modality} map")  # fmt: skip
            found = img, str(path)
        elif source == "given":
            where = f"no file for it in {opts['map_dir']} (by layout id, image or map name)" if opts["map_dir"] else \
                "no grounding.map_dir and no condition_map in the layout"  # fmt: skip
            raise InputError(f"grounding.map is 'given' but there is no {modality} map: {where}", record=_record(layout))
    if found is None and source in ("extract", "auto") and layout.image_path:
        found = array_to_image(extracted_map(layout, modality, opts)), layout.image_path
    if found is None and source == "extract":
        raise InputError("grounding.map is 'extract' but the layout has no real image (image_path; set "
                         "layouts.images_dir)", record=_record(layout))  # fmt: skip
    if found is None and (source == "synthetic" or layout.source in SYNTHETIC_SOURCES):
        from gligen_eval.conditions.synthetic import draw_condition

        found = array_to_image(draw_condition(layout, modality)), None
    if found is None:
        raise InputError(f"no {modality} map: no given map (grounding.map_dir or the layout's condition_map) and no "
                         "real image to extract one from (layouts.images_dir)", record=_record(layout))  # fmt: skip
    if modality == "sem":
        _check_labels(found[0], found[1], layout)
    return found


def _check_size(size: Any) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"condition map size must be a positive integer, got {size!r}")


def load_condition(layout: Layout, modality: str, *, size: int, **options: Any) -> np.ndarray:
    """See :func:`gligen_eval.conditions.load_condition`."""
    _check_size(size)
    img, _ = source_map(layout, modality, **options)
    return labels_to_input(img, size) if modality == "sem" else map_to_input(img, size)


def condition_image(layout: Layout, modality: str, *, size: int, **options: Any) -> np.ndarray:
    """See :func:`gligen_eval.conditions.condition_image`."""
    _check_size(size)
    img, _ = source_map(layout, modality, **options)
    if modality == "sem":
        return labels_to_input(img, size).astype(np.uint8)
    rgb = map_to_rgb(img, size)
    return np.ascontiguousarray(rgb if modality == "normal" else rgb[:, :, 0])
