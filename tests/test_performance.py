"""Speed options keep the images: SDPA vs classic attention, channels-last, torch.compile."""

import numpy as np
import pytest

from gligen_eval.config import SamplerConfig
from gligen_eval.generation.performance import apply_performance_options
from gligen_eval.generation.sampler import GroundedSampler, to_uint8
from gligen_eval.generation.tiny import tiny_components
from gligen_eval.records import GroundedObject, Layout

LAYOUTS = [Layout("a", "a dog on grass", (GroundedObject("dog", (0.1, 0.2, 0.6, 0.9)),)),
           Layout("b", "two cups", (GroundedObject("cup", (0.0, 0.0, 0.4, 0.4)), GroundedObject("cup", (0.5, 0.5, 1, 1))))]
SETTINGS = SamplerConfig(steps=3, height=32, width=32, batch_size=2, scheduler="ddim")


def _images(**options):
    comps = tiny_components(seed=0, sample_size=32)
    applied = apply_performance_options(comps, **options)
    return applied, GroundedSampler(comps).generate_arrays(LAYOUTS, [1, 2], SETTINGS)


def _same_stored_images(a: np.ndarray, b: np.ndarray) -> None:
    """What is stored is uint8: equal within one level (kernels may reorder float sums)."""
    diff = np.abs(to_uint8(a).astype(np.int16) - to_uint8(b).astype(np.int16))
    assert diff.max() <= 1, f"stored images differ by up to {diff.max()} levels"
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_options_keep_images():
    _, ref = _images()
    applied, classic = _images(attention="classic")
    assert applied["attention"] == "classic"
    _same_stored_images(classic, ref)
    _, cl = _images(channels_last=True)
    _same_stored_images(cl, ref)


def test_unknown_attention_is_a_config_error():
    from gligen_eval.errors import ConfigError

    with pytest.raises(ConfigError, match="model.attention"):
        apply_performance_options(tiny_components(sample_size=32), attention="flash9")


@pytest.mark.slow
def test_compile_keeps_images():
    pytest.importorskip("torch._dynamo")
    _, ref = _images()
    applied, compiled = _images(compile=True)
    assert applied["compile"] is True
    np.testing.assert_allclose(compiled, ref, atol=1e-4)
