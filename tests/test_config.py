import pytest

from gligen_eval.config import RunConfig, config_from_dict, load_config, parse_override
from gligen_eval.errors import ConfigError


def test_demo_config_loads_and_is_small():
    cfg = load_config(None)
    assert cfg.model.name == "tiny"
    assert cfg.layouts.source == "sample"
    assert cfg.sampler.height == 64 and cfg.sampler.steps <= 20
    assert cfg.detector.weights.endswith(".yaml")


def test_defaults_follow_paper_protocol():
    cfg = RunConfig()
    assert (cfg.sampler.height, cfg.sampler.width, cfg.sampler.steps) == (512, 512, 50)
    assert cfg.sampler.alpha is None  # the modality's official schedule, resolved at run time
    assert cfg.layouts.max_objects == 30


def test_overrides_are_typed_yaml_values():
    cfg = config_from_dict({}, ["sampler.steps=20", "sampler.alpha=[0.5, 0.0, 0.5]", "model.name=foo/bar", "layouts.limit=null"])
    assert cfg.sampler.steps == 20
    assert cfg.sampler.alpha == [0.5, 0.0, 0.5]
    assert cfg.model.name == "foo/bar"
    assert cfg.layouts.limit is None
    assert parse_override("name=a=b") == ("name", "a=b")


@pytest.mark.parametrize(
    "data, overrides, needle",
    [
        ({"sampler": {"stepz": 3}}, [], "sampler.stepz"),
        ({}, ["detector.foo=1"], "detector.foo"),
        ({"sampler": {"steps": "ten"}}, [], "sampler.steps"),
        ({"sampler": {"schedule": "gamma"}}, [], "sampler.schedule"),
        ({"scoring": {"backend": "lvis"}}, [], "scoring.backend"),
        ({"sampler": {"alpha": [0.5, 0.1]}}, [], "sampler.alpha"),
        ({"layouts": {"skip_crowd": "yes"}}, [], "layouts.skip_crowd"),
        ({"sampler": 3}, [], "sampler"),
        ({}, ["novalue"], "key=value"),
    ],
)
def test_bad_config_names_the_key(data, overrides, needle):
    with pytest.raises(ConfigError) as e:
        config_from_dict(data, overrides)
    assert needle in str(e.value)


def test_config_file_errors_name_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("sampler:\n  steps: [1\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(p)
    p.write_text("sampler:\n  unknown_key: 1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*sampler.unknown_key"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_override_errors_name_the_override_not_the_file(tmp_path):
    p = tmp_path / "good.yaml"
    p.write_text("sampler:\n  steps: 4\n")
    for override, needle in (("sampler.steps=abc", "expected an integer"), ("nope.x=1", "unknown config key"),
                             ("sampler.steps=0", "must be >= 1"), ("sampler=3", "sampler")):  # fmt: skip
        with pytest.raises(ConfigError) as e:
            load_config(p, ["layouts.limit=2", override])
        msg = str(e.value)
        assert msg.startswith(f"--set {override}: ") and needle in msg and "good.yaml" not in msg, msg
    p.write_text("sampler:\n  steps: 0\n")  # the file's own error still names the file ...
    with pytest.raises(ConfigError, match=r"^.*good\.yaml: config key 'sampler\.steps' must be >= 1"):
        load_config(p, ["layouts.limit=2"])
    assert load_config(p, ["sampler.steps=3"]).sampler.steps == 3  # ... and an override may repair it
    with pytest.raises(ConfigError, match=r"^--set expects key=value, got .novalue."):
        load_config(p, ["novalue"])
