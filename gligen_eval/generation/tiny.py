"""Tiny randomly initialised GLIGEN components, built in code.

Used by the tests, the benchmarks and the offline demo: no file and no network is needed.
The components have the same kinds and interfaces as a real SD-1.4 based GLIGEN model
(a gated ``UNet2DConditionModel`` with its position net, an ``AutoencoderKL``, a CLIP text
encoder and tokenizer, a PNDM scheduler), only with very small widths.

Three details make the tiny model useful for tests:

* The gates of the gated self-attention layers (``alpha_attn``/``alpha_dense``) are zero
  when a model is freshly built, which makes grounding a no-op. Here they are set to
  non-zero values drawn from the seed, so grounding changes the images.
* At default initialisation the gated attention is nearly uniform and the object tokens are
  small, so boxes and phrases barely matter. The query/key projections of the gated attention
  and the last layer of the position net are scaled up (x4), so moving a box or changing a
  phrase visibly changes the image.
* The learnable null features of the position net (used for empty object slots) are
  random too, so padding is not accidentally the same as a zero object.

The tokenizer is a byte-level CLIP BPE tokenizer with a vocabulary generated here (the 256
byte symbols, the same with the end-of-word marker, and the two special tokens) and no
merges: every character is a token. It needs no vocabulary file, and a prompt keeps the
CLIP limit of 77 tokens.
"""

from __future__ import annotations

from typing import Any, Literal

AttentionType = Literal["gated", "gated-text-image"]

TINY_HIDDEN = 32
"""Width of the tiny text encoder; also the UNet's cross-attention width and the phrase feature size."""


def _byte_symbols() -> list[str]:
    """The 256 printable symbols that byte-level BPE uses for the 256 byte values (GPT-2 / CLIP order)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(keep)
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            codes.append(256 + extra)
            extra += 1
    table = dict(zip(keep, codes))
    return [chr(table[b]) for b in range(256)]


def tiny_vocab() -> dict[str, int]:
    """Byte-level CLIP vocabulary: 256 symbols, 256 end-of-word symbols, ``<|startoftext|>``, ``<|endoftext|>``."""
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}


def tiny_tokenizer():
    """A CLIP tokenizer over :func:`tiny_vocab` (one token per character, 77 tokens at most)."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=tiny_vocab(), merges=[], model_max_length=77)


def tiny_scheduler():
    """The SD-1.x PNDM scheduler configuration (PLMS steps, as in the official GLIGEN sampler)."""
    from diffusers import PNDMScheduler

    return PNDMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )


VAE_SCALE_FACTOR = 2
"""Pixels per latent cell of the tiny VAE (two resolution levels)."""


def tiny_components(
    seed: int = 0,
    sample_size: int = 64,
    attention_type: AttentionType = "gated",
    in_channels: int = 4,
    *,
    modality: str | None = None,
) -> dict[str, Any]:
    """Tiny random components: ``unet``, ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler``.

    ``sample_size`` is the image size in pixels (the VAE's ``sample_size``; the UNet's is the
    latent size, ``sample_size // 2``). ``attention_type`` is ``"gated"`` (text+box) or
    ``"gated-text-image"`` (text+image+box); the latter adds a tiny CLIP vision encoder:
    ``image_encoder`` (``CLIPVisionModelWithProjection``), ``processor`` (``CLIPImageProcessor``,
    32 px) and ``image_project`` (diffusers' ``CLIPImageProjection``). ``in_channels=9`` builds an
    inpainting UNet (4 latent + 4 masked-image latent + 1 mask channels).

    ``modality`` (any name of :data:`~gligen_eval.generation.modalities.MODALITIES`) builds that
    modality's UNet with the spec's tiny builder (:func:`tiny_unet`): ``keypoint`` gives the gated UNet a
    :class:`~gligen_eval.generation.keypoint_net.KeypointPositionNet` (8 persons x 17 keypoints, tokens
    as wide as the cross-attention, hidden width 64); hed, canny, depth, normal and sem a tiny ConvNeXt
    position net, a map downsampler and the base first conv of the α = 0 steps.

    The same ``seed`` gives the same weights, bit for bit; the global torch random state is left
    untouched.
    """
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    spec = None
    if modality is not None:
        from gligen_eval.generation.modalities import MODALITIES

        if modality not in MODALITIES:
            raise ValueError(f"no tiny model for modality {modality!r} (known: {', '.join(MODALITIES)})")
        spec = MODALITIES[modality]
        attention_type, in_channels = spec.attention_type, spec.in_channels  # type: ignore[assignment]
    if attention_type not in ("gated", "gated-text-image"):
        raise ValueError(f"attention_type must be 'gated' or 'gated-text-image', got {attention_type!r}")
    if spec is None and in_channels not in (4, 9):
        raise ValueError(f"in_channels must be 4 (generation) or 9 (inpainting), got {in_channels}")
    if sample_size % 8 or sample_size <= 0:
        raise ValueError(f"sample_size must be a positive multiple of 8, got {sample_size}")

    tokenizer = tiny_tokenizer()
    vocab_size = len(tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if spec is not None:
            from gligen_eval.registry import import_target

            unet = import_target(spec.tiny, f"tiny builder of {modality}")(spec, seed=seed, sample_size=sample_size)
        else:
            unet = _tiny_gated_unet(sample_size, in_channels, attention_type)
            _randomize_grounding_parameters(unet, seed)

        torch.manual_seed(seed + 1)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            latent_channels=4,
            norm_num_groups=32,
            sample_size=sample_size,
        )

        torch.manual_seed(seed + 2)
        text_config = CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=TINY_HIDDEN,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            layer_norm_eps=1e-5,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        text_encoder = CLIPTextModel(text_config)

    for m in (unet, vae, text_encoder):
        m.eval()
        m.requires_grad_(False)
    parts = {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": tiny_scheduler(),
    }
    if attention_type == "gated-text-image":
        parts.update(tiny_image_parts(seed))
    return parts


def _tiny_gated_unet(sample_size: int, in_channels: int, attention_type: str):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample_size // VAE_SCALE_FACTOR,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TINY_HIDDEN,
        attention_head_dim=2,
        norm_num_groups=32,
        attention_type=attention_type,
    )


TINY_SPATIAL = {"depths": (1, 1, 1, 1), "dims": (8, 16, 32, 64), "hidden_dim": 64}
"""ConvNeXt widths and MLP width of the tiny spatial position nets (the released ones: 3/3/9/3, 96..768, 512)."""


def tiny_unet(spec, *, seed: int, sample_size: int):
    """The tiny random UNet of a modality spec (the table's default tiny builder).

    Seeds the global torch generator with ``seed`` (call it inside ``fork_rng``). Spatial modalities get
    a tiny :class:`~gligen_eval.generation.spatial_net.SpatialPositionNet` (ConvNeXt widths
    :data:`TINY_SPATIAL`, the map resized to twice the image size, ``(2 size / 32)²`` tokens) and downsampler,
    and the base first conv of the α = 0 steps: the tiny text+box UNet's own ``conv_in`` for the same
    seed (the tiny "base" model).
    """
    import torch

    torch.manual_seed(seed)
    unet = _tiny_gated_unet(sample_size, spec.in_channels, spec.attention_type)
    if spec.position_net == "keypoint":
        from gligen_eval.generation.keypoint_net import KeypointPositionNet

        torch.manual_seed(seed + 3)
        unet.position_net = KeypointPositionNet(out_dim=TINY_HIDDEN, hidden_dim=64)
    elif spec.spatial:
        from gligen_eval.generation.spatial_net import SpatialDownsampler, SpatialPositionNet
        from gligen_eval.generation.unet_forward import set_base_conv_in

        torch.manual_seed(seed)  # the first module a tiny UNet builds: the base model's conv_in
        base = torch.nn.Conv2d(4, 32, kernel_size=3, padding=1)
        set_base_conv_in(unet, base.weight, base.bias)
        torch.manual_seed(seed + 3)
        unet.position_net = SpatialPositionNet(
            spec.name, resize_input=max(64, 2 * sample_size // 32 * 32), out_dim=TINY_HIDDEN,
            in_dim=spec.map_classes, **TINY_SPATIAL,
        )  # fmt: skip
        unet.downsample_net = SpatialDownsampler(spec.name, resize_input=4 * (sample_size // VAE_SCALE_FACTOR))
    _randomize_grounding_parameters(unet, seed)
    return unet


TINY_IMAGE_SIZE = 32
"""Input size of the tiny CLIP vision encoder."""


def tiny_image_processor():
    """A CLIP image processor for :data:`TINY_IMAGE_SIZE` px inputs (resize, center crop, CLIP mean/std)."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": TINY_IMAGE_SIZE},
        crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
    )


def tiny_image_parts(seed: int = 0) -> dict[str, Any]:
    """The text+image grounding parts: ``image_encoder``, ``processor``, ``image_project``.

    The vision encoder's ``image_embeds`` and the projection are :data:`TINY_HIDDEN` wide, like the
    phrase features. Seeded by ``seed``; the global torch random state is left untouched.
    """
    import torch
    from diffusers import CLIPImageProjection
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 3)
        config = CLIPVisionConfig(
            hidden_size=TINY_HIDDEN,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=TINY_IMAGE_SIZE,
            patch_size=8,
            projection_dim=TINY_HIDDEN,
            layer_norm_eps=1e-5,
        )
        image_encoder = CLIPVisionModelWithProjection(config)
        torch.manual_seed(seed + 4)
        image_project = CLIPImageProjection(hidden_size=TINY_HIDDEN)
    for m in (image_encoder, image_project):
        m.eval()
        m.requires_grad_(False)
    return {"image_encoder": image_encoder, "processor": tiny_image_processor(), "image_project": image_project}


def _randomize_grounding_parameters(unet, seed: int, sharpen: float = 4.0, amplify: float = 4.0) -> None:
    """Give the gates and the null features of a freshly built gated UNet non-trivial values."""
    import torch
    from diffusers.models.attention import GatedSelfAttentionDense

    g = torch.Generator().manual_seed(10_000 + seed)
    with torch.no_grad():
        for module in unet.modules():
            if isinstance(module, GatedSelfAttentionDense):
                # tanh(0.5 .. 1.5) = 0.46 .. 0.91: grounding clearly changes the features
                module.alpha_attn.copy_(0.5 + torch.rand((), generator=g))
                module.alpha_dense.copy_(0.5 + torch.rand((), generator=g))
                module.attn.to_q.weight.mul_(sharpen)
                module.attn.to_k.weight.mul_(sharpen)
        net = getattr(unet, "position_net", None)
        if net is not None:
            for name, p in net.named_parameters():
                if name.startswith("null_"):
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
                elif name.endswith("_embedding"):  # keypoint: person/keypoint identities; spatial: positions
                    p.copy_(torch.randn(p.shape, generator=g))
                elif name.endswith(".gamma"):  # ConvNeXt layer scale: the blocks do something
                    p.fill_(0.5)
            for mlp_name in ("linears", "linears_text", "linears_image"):
                mlp = getattr(net, mlp_name, None)
                if mlp is not None:
                    mlp[-1].weight.mul_(amplify)
