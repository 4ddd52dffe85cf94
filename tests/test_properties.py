"""Property-based tests: whatever a layout file, a box or a ``--set`` override holds, the result is a
parsed value, a documented warning (:class:`~gligen_eval.layouts.LayoutWarning`) or a one-line
:class:`~gligen_eval.errors.GligenEvalError` -- never a traceback.

Inputs: arbitrary JSON shapes, NaN and infinities, inverted and empty boxes, unknown ids, huge
phrases and numbers, deep nesting and bytes that are not UTF-8. Every property runs
:data:`CASES` generated cases plus the listed examples (inputs that once ended in a traceback);
generation is derandomized, so every run tries the same cases and a failure reproduces.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, event, example, given, settings, strategies as st

from gligen_eval import boxes as bx
from gligen_eval.config import RunConfig, config_from_dict, parse_override
from gligen_eval.errors import ConfigError, GligenEvalError
from gligen_eval.layouts import LayoutWarning, load_layouts
from gligen_eval.records import Layout

CASES = 200
PROPERTY = settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip

# --------------------------------------------------------------------------------------------
# strategies

ALPHABET = "ab Z0_-.,:'\"\\/\n\t\r\x00\x7féß中😀\u2028\ufeff\u0301"
"""Letters, separators, control and combining characters, quotes, non-BMP and byte-order marks."""


def text(**kwargs: Any) -> st.SearchStrategy[str]:
    return st.text(alphabet=ALPHABET, **kwargs)


HUGE = "a hedgehog " * 5000  # a 55 000-character phrase
ODD_NUMBERS = [0, 1, -1, 0.5, -0.0, 1.0000001, 1e-300, 1e308, -1e308, 10**400, 2**63, math.nan, math.inf, -math.inf]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(ODD_NUMBERS), text(max_size=12),
)  # fmt: skip
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text(max_size=8), inner, max_size=4),
                           max_leaves=10)  # fmt: skip
unit = st.floats(min_value=0.0, max_value=1.0)
coord = st.one_of(unit, st.sampled_from(ODD_NUMBERS), scalars)
odd_boxes = st.one_of(
    st.tuples(unit, unit, unit, unit).map(list),  # valid, inverted or empty, at random
    st.tuples(unit, unit).map(lambda p: [p[0], p[1], p[0], p[1]]),  # zero size
    st.lists(coord, max_size=6), json_values,
)  # fmt: skip
odd_values = st.one_of(scalars, json_values, odd_boxes, st.just(HUGE), st.just(""), st.just(" \n "))
sizes = st.one_of(st.integers(min_value=-1, max_value=640), scalars)


@st.composite
def valid_boxes(draw: Any) -> list[float]:
    x0, y0 = draw(st.floats(0.0, 0.9)), draw(st.floats(0.0, 0.9))
    return [x0, y0, x0 + draw(st.floats(0.01, 1.0 - x0)), y0 + draw(st.floats(0.01, 1.0 - y0))]


def _person(cx: float, cy: float, hidden: int) -> list[list[float]]:
    return [[min(1.0, cx + 0.01 * (k % 5)), min(1.0, cy + 0.01 * (k // 5)), 0 if k % 7 == hidden else 2] for k in range(17)]


valid_keypoints = st.builds(_person, unit, unit, st.integers(0, 7))  # 17 points in few draws: cheap to generate
valid_objects = st.fixed_dictionaries(
    {"phrase": st.one_of(text(min_size=1, max_size=20).filter(str.strip), st.just(HUGE)), "box": valid_boxes()},
    optional={"category": text(min_size=1, max_size=10), "category_id": st.integers(1, 2000),
              "keypoints": valid_keypoints, "source_id": text(max_size=5)},
)  # fmt: skip
valid_layouts = st.fixed_dictionaries(
    {"layout_id": text(min_size=1, max_size=10), "caption": text(max_size=30),
     "objects": st.lists(valid_objects, min_size=1, max_size=4)},
    optional={"width": st.integers(1, 4000), "height": st.integers(1, 4000), "source": text(max_size=8)},
)  # fmt: skip
LAYOUT_FIELDS = ["layout_id", "caption", "objects", "width", "height", "source", "image_path", "unknown"]
OBJECT_FIELDS = ["phrase", "box", "category", "category_id", "keypoints", "reference_image", "source_id", "unknown"]


@st.composite
def layout_dicts(draw: Any) -> dict[str, Any]:
    """A valid layout, or one with a field (of the layout, an object, a box coordinate or a keypoint) made odd."""
    d = draw(valid_layouts)
    where = draw(st.sampled_from(["none", "layout", "object", "coordinate", "keypoint", "drop"]))
    obj = d["objects"][draw(st.integers(0, len(d["objects"]) - 1))]
    if where == "layout":
        d[draw(st.sampled_from(LAYOUT_FIELDS))] = draw(odd_values)
    elif where == "object":
        obj[draw(st.sampled_from(OBJECT_FIELDS))] = draw(odd_values)
    elif where == "coordinate":
        obj["box"][draw(st.integers(0, 3))] = draw(coord)
    elif where == "keypoint":
        kps = obj.setdefault("keypoints", draw(valid_keypoints))
        kps[draw(st.integers(0, 16))][draw(st.integers(0, 2))] = draw(coord)
    elif where == "drop":
        d.pop(draw(st.sampled_from(["layout_id", "caption", "objects"])))
    event(f"layout: {where}")
    return d


def _line(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


jsonl_lines = st.one_of(
    layout_dicts().map(_line), layout_dicts().map(_line), json_values.map(_line),
    layout_dicts().map(_line).map(lambda b: b[: len(b) // 2]),  # a truncated line
    st.binary(max_size=40),  # not UTF-8, not JSON
    st.just(b"[" * 5000), st.just(b'{"layout_id": ' + b"9" * 5000 + b"}"),  # deep nesting, a 5000-digit number
)  # fmt: skip

@st.composite
def coco_dicts(draw: Any) -> Any:
    """A valid COCO instances dict, or one with an odd field or an unknown image / category id."""
    n_images, n_cats = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    images = [{"id": i, "width": draw(st.integers(1, 640)), "height": draw(st.integers(1, 640)), "file_name": f"{i}.jpg"}
              for i in range(1, n_images + 1)]  # fmt: skip
    cats = [{"id": c, "name": draw(st.text(min_size=1, max_size=8).filter(str.strip)), "supercategory": "x"}
            for c in range(1, n_cats + 1)]  # fmt: skip
    anns = []
    for a in range(1, draw(st.integers(0, 5)) + 1):
        im = images[draw(st.integers(0, n_images - 1))]
        x, y = draw(st.floats(0, im["width"] - 1)), draw(st.floats(0, im["height"] - 1))
        w, h = draw(st.floats(0.5, im["width"] - x)), draw(st.floats(0.5, im["height"] - y))
        anns.append({"id": a, "image_id": im["id"], "category_id": draw(st.integers(1, n_cats)), "bbox": [x, y, w, h],
                     "area": w * h, "iscrowd": 0})  # fmt: skip
    data: Any = {"images": images, "annotations": anns, "categories": cats}
    where = draw(st.sampled_from(["none", "top", "image", "annotation", "category", "unknown id", "shape"]))
    event(f"coco: {where}")
    if where == "top":
        data[draw(st.sampled_from(["images", "annotations", "categories"]))] = draw(json_values)
    elif where == "image":
        images[0][draw(st.sampled_from(["id", "width", "height", "file_name"]))] = draw(odd_values)
    elif where == "annotation" and anns:
        anns[0][draw(st.sampled_from(["id", "image_id", "category_id", "bbox", "area", "iscrowd"]))] = draw(odd_values)
    elif where == "category":
        cats[0][draw(st.sampled_from(["id", "name"]))] = draw(odd_values)
    elif where == "unknown id" and anns:
        anns[-1][draw(st.sampled_from(["image_id", "category_id"]))] = draw(st.sampled_from([0, 99, -1, "1", 1.5]))
    elif where == "shape":
        data = draw(json_values)
    return data


# --------------------------------------------------------------------------------------------
# the outcome every input must have


def outcome(fn: Callable[[], Any]) -> Any:
    """``fn()``'s value, or the one-line :class:`GligenEvalError` it raised; warnings must be LayoutWarnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = fn()
        except GligenEvalError as e:
            message = str(e)
            assert message and "\n" not in message and "\r" not in message, message
            value = e
    others = [w for w in caught if not issubclass(w.category, LayoutWarning)]
    assert not others, [str(w.message) for w in others]
    return value


def check_layouts(value: Any) -> None:
    event("error" if isinstance(value, GligenEvalError) else "parsed" if value else "parsed, empty")
    if isinstance(value, GligenEvalError):
        return
    assert isinstance(value, list)
    for lay in value:
        assert isinstance(lay, Layout) and lay.objects
        for o in lay.objects:
            x0, y0, x1, y1 = o.box
            assert all(math.isfinite(v) for v in o.box) and 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
            if o.keypoints is not None:
                assert all(math.isfinite(x) and math.isfinite(y) and v in (0, 1, 2) for x, y, v in o.keypoints)
        assert Layout.from_dict(json.loads(json.dumps(lay.to_dict()))) == lay  # what a run stores reads back


_TMP = Path(tempfile.mkdtemp(prefix="gligen-eval-properties-"))


@pytest.fixture(scope="module", autouse=True)
def _clean_tmp():
    yield
    shutil.rmtree(_TMP, ignore_errors=True)


def _load(name: str, content: bytes, **options: Any) -> Any:
    path = _TMP / name
    path.write_bytes(content)
    return outcome(lambda: load_layouts(str(path), **options))


# --------------------------------------------------------------------------------------------
# layout parsing


# inputs that once ended in a traceback or a message of several lines
@example([b"[" * 5000])  # RecursionError
@example([b'{"layout_id": ' + b"9" * 5000 + b"}"])  # ValueError: integer string too long
@example([b'{"layout_id": "a\\nb", "caption": 1, "objects": []}'])  # the id's newline in the message
@example([b'{"layout_id": "k", "caption": "", "objects": [{"phrase": "p", "box": [0, 0, 1, 1], "keypoints": '
          + json.dumps([[0.5, 0.5, 1e999]] * 17).encode() + b"}]}"])  # OverflowError: int(inf)
@example([b'{"layout_id": "k", "caption": "", "objects": [{"phrase": "p", "box": [0, 0, ' + b"1" * 400 + b", 1]}]}"])
@PROPERTY
@given(st.lists(jsonl_lines, min_size=1, max_size=4))
def test_jsonl_layouts_parse_or_fail_in_one_line(lines):
    check_layouts(_load("layouts.jsonl", b"\n".join(lines)))


@PROPERTY
@given(st.lists(layout_dicts(), min_size=1, max_size=3))
def test_jsonl_layout_records_parse_or_fail_in_one_line(records):
    value = _load("layouts.jsonl", b"\n".join(_line(r) for r in records))
    check_layouts(value)
    if not isinstance(value, GligenEvalError):
        assert len(value) <= len(records)


@example({"images": [{"id": 1, "width": 10**400, "height": 5}], "annotations": [], "categories": []}, "error")
@example({"images": [{"id": 1, "width": 0.4, "height": 5}], "categories": [{"id": 1, "name": "cat"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 0.4, 2]}]}, "error")
@example({"images": [{"id": 1, "width": 5, "height": 5}], "categories": [{"id": 1, "name": "cat"}],
          "annotations": [{"id": [1], "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]}, "skip")
@example({"images": [{"id": 1, "width": 5, "height": 5}], "categories": [{"id": 1, "name": "cat"}],
          "annotations": [{"id": 1, "image_id": [1], "category_id": 1, "bbox": [0, 0, 1, 1]}]}, "skip")
@example({"images": [{"id": 1, "width": 5, "height": 5}], "categories": [{"id": 1, "name": "cat"}],
          "annotations": [{"id": None, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]},
                          {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]}, "error")
@example({"images": [], "annotations": [], "categories": [{"id": "a\nb", "name": "cat"}]}, "error")
@PROPERTY
@given(coco_dicts(), st.sampled_from(["error", "skip"]))
def test_coco_instances_parse_or_fail_in_one_line(data, on_invalid):
    check_layouts(_load("instances_x.json", json.dumps(data).encode(), on_invalid=on_invalid))


@PROPERTY
@given(json_values, st.sampled_from(["layouts.json", "person_keypoints_x.json", "lvis_x.json", "counting.val.json",
                                     "gpt_generated_box__spatial.json"]))  # fmt: skip
def test_any_json_file_parses_or_fails_in_one_line(data, name):
    check_layouts(_load(name, json.dumps(data).encode()))


@PROPERTY
@given(st.binary(max_size=60), st.sampled_from(["layouts.jsonl", "layouts.json", "instances_x.json", "table.csv"]))
def test_arbitrary_bytes_fail_in_one_line(content, name):
    check_layouts(_load(name, content))


# --------------------------------------------------------------------------------------------
# boxes


CONVERSIONS = [bx.xywh_abs_to_xyxy_norm, bx.xyxy_norm_to_xywh_abs, bx.xyxy_abs_to_xyxy_norm, bx.xyxy_norm_to_xyxy_abs]


@example([0.1, 0.1, 0.5, 0.5], 0, 0)  # ZeroDivisionError
@example([1e308, 0, 1e308, 1], 1e308, 1)  # overflows to infinity
@example(None, 1, 1)
@example([math.nan, 0, 1, 1], 1, 1)  # NaN clipped to 0 without a word
@example([10**400, 0, 1, 1], 1, 1)  # OverflowError
@PROPERTY
@given(st.one_of(odd_boxes, st.tuples(*[st.floats(allow_nan=True, allow_infinity=True)] * 4)),
       st.one_of(sizes, st.floats(allow_nan=True, allow_infinity=True)), st.one_of(sizes, st.floats()))  # fmt: skip
def test_box_conversions_give_finite_numbers_or_a_one_line_error(box, width, height):
    for fn in CONVERSIONS:
        value = outcome(lambda: fn(box, width, height))
        if not isinstance(value, GligenEvalError):
            assert len(value) == 4 and all(isinstance(v, float) and math.isfinite(v) for v in value)
    for fn in (bx.xywh_norm_to_xyxy_norm, bx.clip_xyxy_norm):
        value = outcome(lambda: fn(box))
        if not isinstance(value, GligenEvalError):
            assert len(value) == 4 and all(math.isfinite(v) for v in value)
    problem = bx.validate_xyxy_norm(box)  # a reason or None, never an exception
    assert problem is None or (isinstance(problem, str) and "\n" not in problem)
    if problem is None:
        x0, y0, x1, y1 = (float(v) for v in box)
        assert x0 < x1 and y0 < y1 and bx.area_xyxy(box) > 0 and bx.iou_xyxy(box, box) == pytest.approx(1.0)
    clipped = outcome(lambda: bx.clip_xyxy_norm(box))
    if not isinstance(clipped, GligenEvalError):
        assert all(0.0 <= v <= 1.0 for v in clipped)


@PROPERTY
@given(st.tuples(unit, unit, unit, unit), st.integers(min_value=1, max_value=8192), st.integers(min_value=1, max_value=8192))
def test_box_conversions_round_trip(box, width, height):
    back = bx.xywh_abs_to_xyxy_norm(bx.xyxy_norm_to_xywh_abs(box, width, height), width, height)
    assert back == pytest.approx(box, abs=1e-12)
    assert bx.xyxy_abs_to_xyxy_norm(bx.xyxy_norm_to_xyxy_abs(box, width, height), width, height) == pytest.approx(box, abs=1e-12)
    x0, y0, x1, y1 = box
    assert bx.xywh_norm_to_xyxy_norm((x0, y0, x1 - x0, y1 - y0)) == pytest.approx(box, abs=1e-12)
    assert bx.clip_xyxy_norm(box) == tuple(box)
    assert 0.0 <= bx.iou_xyxy(box, (0.2, 0.2, 0.7, 0.9)) <= 1.0


# --------------------------------------------------------------------------------------------
# config overrides


def _dotted_keys(cls: type = RunConfig, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            out += _dotted_keys(type(default), f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


KEYS = _dotted_keys()


def _numeric_keys(cls: type = RunConfig, prefix: str = "") -> list[str]:
    import typing

    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += _numeric_keys(tp, f"{prefix}{f.name}.")
        elif tp is float or float in typing.get_args(tp):
            out.append(prefix + f.name)
    return out


NUMERIC_KEYS = _numeric_keys()
VALUES = ["", ".nan", ".inf", "-.inf", "NaN", "1e999", "-1", "0", "1", "0.5", "[1, 2]", "[]", "{a: 1}", "{}", "true",
          "null", "~", "2020-01-01", "!!python/object/apply:os.system ['true']", "'x'", "9" * 5000, "[" * 200, "&a [*a]",
          "a: b: c", "\t", "é\x00", "- 1\n- 2", "{{"]  # fmt: skip
overrides = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.one_of(st.sampled_from(VALUES), text(max_size=12),
                                                                       st.floats().map(repr), st.integers().map(str))),
    st.builds(lambda k, v: f"{k}={v}", text(max_size=12), text(max_size=12)),
    text(max_size=20),
)  # fmt: skip


@example(["0\n0="])  # the key's newline in the message
@example(["sampler.steps=" + "9" * 5000])
@example(["scoring.success_iou=.nan"])
@PROPERTY
@given(st.lists(overrides, min_size=1, max_size=3))
def test_overrides_apply_or_fail_in_one_line(texts):
    value = outcome(lambda: config_from_dict({}, texts))
    if isinstance(value, GligenEvalError):
        assert isinstance(value, ConfigError)
        return
    assert isinstance(value, RunConfig)
    for section in dataclasses.asdict(value).values():  # no NaN or infinity gets into a config
        for v in (section.values() if isinstance(section, dict) else [section]):
            assert not (isinstance(v, float) and not math.isfinite(v)), texts


@PROPERTY
@given(st.sampled_from(NUMERIC_KEYS), st.sampled_from([".nan", ".inf", "-.inf", ".NaN", "1e999", "-1e999"]))
def test_non_finite_numbers_are_refused(key, raw):
    value = outcome(lambda: config_from_dict({}, [f"{key}={raw}"]))
    assert isinstance(value, ConfigError), (key, raw)


@PROPERTY
@given(st.integers(min_value=1, max_value=10**6), st.floats(min_value=0.0, max_value=1.0, exclude_min=True))
def test_valid_overrides_set_exactly_that_value(steps, iou):
    cfg = config_from_dict({}, [f"sampler.steps={steps}", f"scoring.success_iou={iou!r}"])  # 5e-324 too
    assert cfg.sampler.steps == steps and cfg.scoring.success_iou == iou
    assert parse_override(f"sampler.steps = {steps}") == ("sampler.steps", steps)
