"""KeypointPositionNet: shapes, token layout, masking, packing, UNet plug-in and official parity."""

from __future__ import annotations

import math

import pytest
import torch

from gligen_eval.generation.keypoint_net import (
    OFFICIAL_TO_OURS,
    OURS_TO_OFFICIAL,
    KeypointPositionNet,
    fourier_embed,
    pack_keypoints,
)


def _random_net(out_dim: int = 32, seed: int = 0, **kw) -> KeypointPositionNet:
    net = KeypointPositionNet(out_dim=out_dim, hidden_dim=48, **kw)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return net.eval()


def _inputs(batch: int, tokens: int = 136, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(batch, tokens, 2, generator=g)
    masks = (torch.rand(batch, tokens, generator=g) > 0.3).float()
    return points, masks


def test_default_shapes_match_the_released_model():
    net = KeypointPositionNet()
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes == {
        "person_embedding": (8, 768),
        "keypoint_embedding": (17, 768),
        "null_identity_feature": (768,),
        "null_position_feature": (32,),
        "linears.0.weight": (512, 800),
        "linears.0.bias": (512,),
        "linears.2.weight": (512, 512),
        "linears.2.bias": (512,),
        "linears.4.weight": (768, 512),
        "linears.4.bias": (768,),
    }
    assert set(OFFICIAL_TO_OURS.values()) == set(shapes)
    assert {OURS_TO_OFFICIAL[k] for k in shapes} == set(OFFICIAL_TO_OURS)
    assert net.num_tokens == 136
    with torch.no_grad():
        out = net(*_inputs(3))
    assert out.shape == (3, 136, 768)


def test_token_index_is_person_major():
    net = _random_net()
    emb = net.identity_embeddings()
    for p, k in [(0, 0), (0, 16), (3, 5), (7, 16)]:
        torch.testing.assert_close(emb[p * 17 + k], net.person_embedding[p] + net.keypoint_embedding[k], rtol=0, atol=0)


def test_fourier_order_is_frequency_major():
    x = torch.tensor([[0.25, 0.75]])
    emb = fourier_embed(x, num_freqs=8)
    assert emb.shape == (1, 32)
    for k in range(8):
        f = 100 ** (k / 8)
        expect = [math.sin(f * 0.25), math.sin(f * 0.75), math.cos(f * 0.25), math.cos(f * 0.75)]
        torch.testing.assert_close(emb[0, 4 * k: 4 * k + 4], torch.tensor(expect), atol=1e-5, rtol=0)


def test_masked_tokens_ignore_their_points_and_use_the_null_features():
    net = _random_net()
    points, masks = _inputs(2)
    masks[0, :17] = 0  # person 0 of sample 0 fully absent
    masks[1, 40] = 0  # a single keypoint absent
    with torch.no_grad():
        out = net(points, masks)
        moved = points.clone()
        moved[0, :17] = torch.rand(17, 2)
        moved[1, 40] = torch.tensor([0.9, 0.1])
        out_moved = net(moved, masks)
    assert torch.equal(out, out_moved)

    # a masked token is MLP(null_identity ‖ null_position), whatever its slot
    with torch.no_grad():
        null = net.linears(torch.cat([net.null_identity_feature, net.null_position_feature]))
    torch.testing.assert_close(out[0, 3], null, atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1, 40], null, atol=1e-6, rtol=0)


def test_unmasked_token_depends_on_its_own_point_only():
    net = _random_net()
    points, masks = _inputs(1)
    masks[:] = 1
    with torch.no_grad():
        out = net(points, masks)
        moved = points.clone()
        moved[0, 20] += 0.2
        out2 = net(moved, masks)
    changed = (out2 - out).abs().amax(-1)[0]
    assert changed[20] > 1e-4
    changed[20] = 0
    assert torch.all(changed == 0)


def test_four_dim_inputs_and_bad_shapes():
    net = _random_net()
    points, masks = _inputs(2)
    with torch.no_grad():
        flat = net(points, masks)
        nested = net(points.view(2, 8, 17, 2), masks.view(2, 8, 17))
    assert torch.equal(flat, nested)
    with pytest.raises(ValueError, match=r"points \(B, 136, 2\)"):
        net(points[:, :100], masks[:, :100])


def test_pack_keypoints_visibility_order_and_truncation():
    def person(x, v=2):
        return [(x, 0.5, v)] * 17

    small = [(0.1, 0.2, 2)] * 5 + [(0.3, 0.4, 1)] * 6 + [(0.0, 0.0, 0)] * 6
    persons = [small, person(0.7), person(0.9)]
    points, masks = pack_keypoints(persons, areas=[0.01, 0.5, 0.2], max_persons=2)
    assert points.shape == (34, 2) and masks.shape == (34,)
    # largest first: person 1 (area 0.5), then person 2 (0.2); the smallest is dropped
    assert torch.allclose(points[0], torch.tensor([0.7, 0.5]))
    assert torch.allclose(points[17], torch.tensor([0.9, 0.5]))
    assert masks.sum() == 34

    points, masks = pack_keypoints([small], max_persons=8)
    assert masks[:5].tolist() == [1.0] * 5  # v == 2 counts
    assert masks[5:].sum() == 0  # v == 1 and v == 0 do not
    assert torch.all(points[5:] == 0)
    _, masks1 = pack_keypoints([small], min_visibility=1)
    assert masks1.sum() == 11
    with pytest.raises(ValueError, match="17"):
        pack_keypoints([[(0.1, 0.1, 2)] * 3])


def test_plugs_into_a_gated_unet_as_position_net():
    from gligen_eval.generation.tiny import TINY_HIDDEN, tiny_components

    unet = tiny_components(seed=0, sample_size=32)["unet"]
    unet.position_net = _random_net(out_dim=TINY_HIDDEN)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 16, 16, generator=g)
    enc = torch.randn(2, 5, TINY_HIDDEN, generator=g)
    points, masks = _inputs(2)
    with torch.no_grad():
        plain = unet(x, 10, enc).sample
        grounded = unet(x, 10, enc, cross_attention_kwargs={"gligen": {"points": points, "masks": masks}}).sample
        moved = unet(
            x, 10, enc, cross_attention_kwargs={"gligen": {"points": points.flip(1), "masks": masks}}
        ).sample
    assert grounded.shape == plain.shape
    assert (grounded - plain).abs().max() > 1e-4
    assert (moved - grounded).abs().max() > 1e-6


def test_official_keypoint_fixture_parity(official_dir):
    from safetensors.torch import load_file

    from gligen_eval.generation.checkpoints import position_net_from_official

    fx = load_file(str(official_dir / "fixtures" / "keypoint_positionnet_A.safetensors"))
    official_state = {"position_net." + k[len("state."):]: v for k, v in fx.items() if k.startswith("state.")}
    net = position_net_from_official(official_state)
    assert isinstance(net, KeypointPositionNet)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            out = net(points=fx["input.points"], masks=fx["input.masks"])
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(out, fx["output.objs"], atol=1e-5, rtol=1e-4)
    # the fixture is sensitive: ignoring the masks moves the output far beyond the tolerance
    with torch.no_grad():
        unmasked = net(points=fx["input.points"], masks=torch.ones_like(fx["input.masks"]))
    assert (unmasked - fx["output.objs"]).abs().max() > 1e-3
