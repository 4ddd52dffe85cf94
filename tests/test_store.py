import json

import pytest

from gligen_eval import store
from gligen_eval.errors import InputError


def test_append_and_read_tolerates_partial_tail(tmp_path):
    p = tmp_path / "rows.jsonl"
    store.append_jsonl(p, [{"a": 1}, {"a": 2}])
    with open(p, "a") as f:
        f.write('{"a": 3')  # a write cut by kill -9
    with pytest.warns(store.TruncatedRowWarning):
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
    assert store.png_problem(good) is None
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:40])
    assert store.png_problem(bad) == "truncated"
    assert store.png_problem(tmp_path / "missing.png") == "missing"


def test_broken_image_is_a_clear_error_even_after_ultralytics_patched_pil(tmp_path):
    """ultralytics replaces PIL.Image.open with a wrapper that tries to install a package on unreadable
    files; our readers use PIL's own opener, so a broken file is still just a broken file."""
    from gligen_eval.scoring.detectors import _import_yolo
    from gligen_eval.scoring.quality import ResizePolicy, iter_image_batches

    _import_yolo()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert "not a PNG" in store.png_problem(broken)
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


def _png(path, size=32):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def test_png_damaged_in_the_middle_is_caught_by_the_full_check(tmp_path):
    """Bytes damaged inside the image data keep the signature and the IEND chunk: the cheap check
    passes, the full check (chunk checksums, then decoding) does not."""
    good = _png(tmp_path / "good.png")
    data = bytearray(good.read_bytes())
    for where, flip in ((len(data) // 2, 64), (40, 1)):  # inside IDAT; a single byte
        bad = tmp_path / f"bad{where}.png"
        damaged = bytearray(data)
        damaged[where : where + flip] = bytes(b ^ 0xFF for b in damaged[where : where + flip])
        bad.write_bytes(bytes(damaged))
        assert store.is_complete_png(bad)
        assert "damaged" in store.png_problem(bad)
    trailing = tmp_path / "trailing.png"
    trailing.write_bytes(bytes(data) + b"junk")
    assert "after the end" in store.png_problem(trailing)


def test_truncated_last_row_warns_once_per_file_and_says_a_rerun_repairs_it(tmp_path):
    import warnings

    a, b = tmp_path / "instances.jsonl", tmp_path / "samples.jsonl"
    for p in (a, b):
        p.write_text('{"x": 1}\n{"x": 2}\n{"x": ')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert [r["x"] for r in store.iter_jsonl(a)] == [1, 2]
        assert [r["x"] for r in store.iter_jsonl(b)] == [1, 2]
        assert [r["x"] for r in store.iter_jsonl(b, partial_tail="skip")] == [1, 2]
    msgs = [str(w.message) for w in caught if issubclass(w.category, store.TruncatedRowWarning)]
    assert len(msgs) == 2, msgs
    assert str(a) in msgs[0] and str(b) in msgs[1]
    assert all("rerun" in m and "\n" not in m for m in msgs)


def test_truncated_multibyte_character_at_the_tail_is_a_cut_row(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_bytes('{"phrase": "café"}\n{"phrase": "caf'.encode() + "é".encode()[:1])
    with pytest.warns(store.TruncatedRowWarning):
        assert list(store.iter_jsonl(p)) == [{"phrase": "café"}]
    p.write_bytes(b'{"a": 1}\n\xff\xfe\n{"a": 2}\n')
    with pytest.raises(InputError, match=r"rows.jsonl \[line 2\]: not UTF-8"):
        list(store.iter_jsonl(p))


def test_bad_record_names_file_and_line(tmp_path):
    from gligen_eval.records import SampleRecord

    p = tmp_path / "samples.jsonl"
    p.write_text('{"nope": 1}\n')
    with pytest.raises(InputError, match=r"samples.jsonl \[line 1\]: bad record"):
        list(store.iter_jsonl(p, SampleRecord.from_dict))


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    import os
    import stat

    old = os.umask(umask)
    try:
        store.atomic_write_json(tmp_path / "m.json", {"a": 1})
        store.atomic_write_bytes(tmp_path / "images" / "x.png", b"png")
        store.append_jsonl(tmp_path / "r.jsonl", [{"a": 1}])
        store.write_jsonl(tmp_path / "w.jsonl", [{"a": 1}])
    finally:
        os.umask(old)
    for name in ("m.json", "images/x.png", "r.jsonl", "w.jsonl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert stat.S_IMODE((tmp_path / "images").stat().st_mode) == 0o777 & ~umask


@pytest.mark.parametrize("err", [28, 13, 30])  # ENOSPC, EACCES, EROFS
def test_os_errors_while_writing_are_one_line_and_keep_the_old_file(tmp_path, monkeypatch, err):
    import errno
    import os

    from gligen_eval.errors import GligenEvalError, RunDirError

    target = tmp_path / "metrics.json"
    store.atomic_write_json(target, {"old": 1})
    rows = tmp_path / "rows.jsonl"
    store.append_jsonl(rows, [{"a": 1}])

    def fail(*args, **kwargs):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(store.os, "fsync", fail)
    with pytest.raises(RunDirError) as e:
        store.atomic_write_json(target, {"new": 2})
    assert isinstance(e.value, GligenEvalError) and e.value.exit_code == 2
    assert e.value.path == str(target) and str(target) in str(e.value) and "\n" not in str(e.value)
    assert os.strerror(err) in str(e.value)
    assert ("free some space" in str(e.value)) == (err == errno.ENOSPC)
    with pytest.raises(RunDirError, match="rows.jsonl"):
        store.append_jsonl(rows, [{"a": 2}])
    monkeypatch.undo()
    assert store.read_json(target) == {"old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "rows.jsonl"]  # no temp file left
    store.append_jsonl(rows, [{"a": 3}])  # what the failed append left is repaired by the next one
    assert [r["a"] for r in store.iter_jsonl(rows)][-1] == 3


def test_rank_parts_fold_into_the_record_file(tmp_path):
    rd = store.RunDir(tmp_path)
    store.append_jsonl(rd.rank_file(store.DETECTIONS, None), [{"sample_key": "a", "detector": "d", "n": 0},
                                                              {"sample_key": "b", "detector": "d", "n": 0}])  # fmt: skip
    store.append_jsonl(rd.rank_file(store.DETECTIONS, 1), [{"sample_key": "a", "detector": "d", "n": 1},
                                                           {"sample_key": "a", "detector": "e", "n": 1}])  # fmt: skip
    merged = rd.merged_rows(store.DETECTIONS, ("sample_key", "detector"))
    assert [(r["sample_key"], r["detector"], r["n"]) for r in merged] == [("a", "d", 1), ("b", "d", 0), ("a", "e", 1)]
    rd.replace_records(store.DETECTIONS, merged)
    assert rd.record_files(store.DETECTIONS) == [rd.path(store.DETECTIONS)]  # the part is gone
    assert rd.rows(store.DETECTIONS) == merged
