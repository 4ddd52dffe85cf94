"""Grounding schedules: the official α schedule and the diffusers β hard cut, step by step."""

from __future__ import annotations

import numpy as np
import pytest

from gligen_eval.generation.schedule import alpha_schedule, beta_schedule, grounding_schedule


def official_alphas(length: int, p: list[float]) -> list[float]:
    """The official generator's arithmetic, written out with numpy (stage lengths by int())."""
    n1 = int(p[0] * length)
    n2 = int(p[1] * length)
    decay = list(np.arange(start=0, stop=1, step=1 / n2)[::-1]) if n2 else []
    return [1.0] * n1 + [float(v) for v in decay] + [0.0] * (length - n1 - len(decay))


def test_alpha_box_default_50_steps():
    s = alpha_schedule(50, (0.3, 0.0, 0.7))
    assert len(s) == 50
    assert s[:15] == [1.0] * 15
    assert s[15:] == [0.0] * 35


def test_alpha_linear_decay_values():
    assert alpha_schedule(10, (0.3, 0.4, 0.3)) == [1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0, 0.0]
    assert alpha_schedule(4, (0.0, 1.0, 0.0)) == [0.75, 0.5, 0.25, 0.0]


def test_alpha_truncation_goes_to_the_last_stage():
    # int(0.3 * 11) = 3, int(0.2 * 11) = 2 -> 3 ones, decay (0.5, 0), 6 zeros
    assert alpha_schedule(11, (0.3, 0.2, 0.5)) == [1.0, 1.0, 1.0, 0.5, 0.0] + [0.0] * 6


@pytest.mark.parametrize("length", [1, 7, 10, 25, 50, 51])
@pytest.mark.parametrize("p", [[0.3, 0.0, 0.7], [0.8, 0.1, 0.1], [0.2, 0.5, 0.3], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
def test_alpha_matches_official_arithmetic(length, p):
    assert alpha_schedule(length, p) == official_alphas(length, p)


def test_alpha_image_modality_is_always_one():
    assert alpha_schedule(20, (1.0, 0.0, 0.0)) == [1.0] * 20


def test_beta_hard_cut():
    assert beta_schedule(10, 0.3) == [1.0] * 3 + [0.0] * 7
    assert beta_schedule(51, 0.3) == [1.0] * 15 + [0.0] * 36  # PNDM: 50 steps give 51 timesteps
    assert beta_schedule(5, 0.0) == [0.0] * 5
    assert beta_schedule(5, 1.0) == [1.0] * 5


def test_grounding_schedule_dispatch_and_errors():
    assert grounding_schedule(10, "beta", beta=0.5) == beta_schedule(10, 0.5)
    assert grounding_schedule(10, "alpha", alpha=(0.5, 0.5, 0.0)) == alpha_schedule(10, (0.5, 0.5, 0.0))
    with pytest.raises(ValueError, match="schedule"):
        grounding_schedule(10, "gamma")
    with pytest.raises(ValueError, match="sum to 1"):
        alpha_schedule(10, (0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="3 fractions"):
        alpha_schedule(10, (0.5, 0.5))
    with pytest.raises(ValueError, match="beta"):
        beta_schedule(10, 1.5)
    assert alpha_schedule(0) == [] and beta_schedule(0) == []
