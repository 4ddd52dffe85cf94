import json

import pytest

from gligen_eval import store
from gligen_eval.errors import InputError


def test_append_and_read_tolerates_partial_tail(tmp_path):
    p = tmp_path / "rows.jsonl"
    store.append_jsonl(p, [{"a": 1}, {"a": 2}])
    with open(p, "a") as f:
        f.write('{"a": 3')  # a write cut by kill -9
    assert [r["a"] for r in store.iter_jsonl(p)] == [1, 2]
    store.append_jsonl(p, [{"a": 4}])
    assert [r["a"] for r in store.iter_jsonl(p)] == [1, 2, 4]


def test_whole_last_line_without_newline_is_kept_when_appending(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text('{"a": 1}\n{"a": 2}')  # killed between the last row and its newline
    assert [r["a"] for r in store.iter_jsonl(p)] == [1, 2]
    store.append_jsonl(p, [{"a": 3}])
    assert [r["a"] for r in store.iter_jsonl(p)] == [1, 2, 3]


def test_bad_line_in_the_middle_names_file_and_line(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(InputError, match=r"rows.jsonl \[line 2\]"):
        list(store.iter_jsonl(p))


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "m.json"
    store.atomic_write_json(p, {"x": 1})
    store.atomic_write_json(p, {"x": 2})
    assert json.loads(p.read_text()) == {"x": 2}
    assert [f.name for f in tmp_path.iterdir()] == ["m.json"]


def test_png_validation(tmp_path):
    from PIL import Image

    good = tmp_path / "good.png"
    Image.new("RGB", (16, 16), (10, 20, 30)).save(good)
    assert store.is_valid_png(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:40])
    assert not store.is_valid_png(bad)


def test_broken_image_is_a_clear_error_even_after_ultralytics_patched_pil(tmp_path):
    """ultralytics replaces PIL.Image.open with a wrapper that tries to install a package on unreadable
    files; our readers use PIL's own opener, so a broken file is still just a broken file."""
    from gligen_eval.scoring.detectors import _import_yolo
    from gligen_eval.scoring.quality import ResizePolicy, iter_image_batches

    _import_yolo()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert not store.is_valid_png(broken)
    with pytest.raises(InputError, match=r"broken\.png \[image 0\]: cannot read image"):
        list(iter_image_batches([broken], ResizePolicy(size=32)))


def test_json_files_are_strict_json(tmp_path):
    """NaN/inf (undefined metrics) are written as null, so strict JSON parsers read every file."""
    p = tmp_path / "m.json"
    store.atomic_write_json(p, {"a": float("nan"), "b": [1.0, float("inf")], "c": 0.5})
    assert json.loads(p.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}")) == {
        "a": None, "b": [1.0, None], "c": 0.5}
    rows = tmp_path / "r.jsonl"
    store.append_jsonl(rows, [{"x": float("-inf")}])
    assert list(store.iter_jsonl(rows)) == [{"x": None}]


def test_complete_png_check_catches_truncation(tmp_path):
    from PIL import Image

    good = tmp_path / "good.png"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(good)
    assert store.is_complete_png(good)
    data = good.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.png"
        bad.write_bytes(data[:cut])
        assert not store.is_complete_png(bad)
    assert not store.is_complete_png(tmp_path / "missing.png")
