"""An unset sampler.alpha means the official schedule of the model's modality."""

import dataclasses

import numpy as np

from gligen_eval.config import SamplerConfig
from gligen_eval.generation.sampler import GroundedSampler
from gligen_eval.generation.tiny import tiny_components
from gligen_eval.records import GroundedObject, Layout


def test_unset_alpha_is_the_modality_default():
    sampler = GroundedSampler(tiny_components(seed=0, sample_size=32))
    assert sampler.default_alpha() == [0.3, 0.0, 0.7]
    layouts = [Layout("a", "a dog", (GroundedObject("dog", (0.1, 0.1, 0.7, 0.9)),))]
    unset = SamplerConfig(steps=4, height=32, width=32, scheduler="ddim")
    assert unset.alpha is None
    official = sampler.generate_arrays(layouts, [3], dataclasses.replace(unset, alpha=[0.3, 0.0, 0.7]))
    other = sampler.generate_arrays(layouts, [3], dataclasses.replace(unset, alpha=[1.0, 0.0, 0.0]))
    default = sampler.generate_arrays(layouts, [3], unset)
    np.testing.assert_array_equal(default, official)
    assert np.abs(default - other).max() > 0
