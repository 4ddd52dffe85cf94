"""The lazy registry: names, registration, user paths, one-line errors; and its users."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gligen_eval.errors import ConfigError
from gligen_eval.registry import Registry, import_target


def test_registry_resolves_builtins_registered_names_and_paths():
    reg = Registry("widget", {"dumps": "json:dumps"})
    assert reg.names() == ["dumps"] and "dumps" in reg and len(reg) == 1
    assert reg.resolve("dumps") is json.dumps
    assert reg.resolve("json.decoder:JSONDecoder.decode") is json.JSONDecoder.decode  # a path, never registered
    reg.register("loads", "json:loads")
    assert reg.names() == ["dumps", "loads"] and list(reg) == ["dumps", "loads"]
    assert reg.target("loads") == "json:loads" and reg.resolve("loads") is json.loads
    with pytest.raises(ConfigError, match=r"^unknown widget 'nope' \(known: dumps, loads, or 'package.module:Class'\)$"):
        reg.resolve("nope")
    with pytest.raises(ConfigError, match="widget target must look like"):
        reg.register("bad", "no_colon")
    with pytest.raises(ConfigError, match="widget 'broken': cannot load json:no_such"):
        reg.register("broken", "json:no_such")
        reg.resolve("broken")
    with pytest.raises(ConfigError, match="cannot load no_such_module_here:X"):
        reg.resolve("no_such_module_here:X")


def test_registry_without_paths_and_with_a_table_read_on_use():
    table = {"a": "json:dumps"}
    reg = Registry("kind", lambda: table, paths=False)
    table["b"] = "json:loads"  # read on every use
    assert reg.names() == ["a", "b"]
    with pytest.raises(ConfigError, match=r"^unknown kind 'json:dumps' \(known: a, b\)$"):
        reg.resolve("json:dumps")
    with pytest.raises(ConfigError, match="expected 'package.module:Attr'"):
        import_target("json.dumps", "thing")


def test_registry_imports_only_on_use():
    code = ("import sys\nfrom gligen_eval.registry import Registry\n"
            "r = Registry('x', {'csv': 'csv:reader'})\nassert r.names() == ['csv'] and 'csv' not in sys.modules\n"
            "r.resolve('csv')\nassert 'csv' in sys.modules\n")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)


def test_layout_source_kinds_take_a_registered_reader(tmp_path):
    from gligen_eval import layouts
    from gligen_eval.records import GroundedObject, Layout

    path = tmp_path / "mine.txt"
    path.write_text("a cat\n")
    layouts.SOURCE_KINDS.register("one-line", f"{__name__}:_read_one_line")
    try:
        got = layouts.load_layouts(f"one-line:{path}", limit=None)
    finally:
        layouts.SOURCE_KINDS._added.pop("one-line")
    assert got == [Layout("mine-0", "a cat", (GroundedObject("a cat", (0.1, 0.1, 0.9, 0.9)),))]
    with pytest.raises(ConfigError, match="does not apply to one-line layouts"):
        layouts.SOURCE_KINDS.register("one-line", f"{__name__}:_read_one_line")
        try:
            layouts.load_layouts(f"one-line:{path}", seed=3)
        finally:
            layouts.SOURCE_KINDS._added.pop("one-line")


def _read_one_line(path, *, limit=None):
    from gligen_eval.records import GroundedObject, Layout

    text = path.read_text().strip()
    return [Layout(f"{path.stem}-0", text, (GroundedObject(text, (0.1, 0.1, 0.9, 0.9)),))]


def test_grounding_tokenizers_come_from_the_modality_table_and_paths():
    from gligen_eval.generation import grounding as G

    assert "text-box" in G.available_groundings()
    cls = G.grounding_class("text-box")
    assert G.grounding_class(f"{cls.__module__}:{cls.__qualname__}") is cls
    with pytest.raises(ConfigError, match="unknown grounding modality 'nope'"):
        G.grounding_class("nope")
