"""DiffEdit rendering of latent counterfactuals, on a tiny Stable Diffusion pipeline with
random weights built here (no network, no checkpoint)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from helpers import TINY, BrightSquare, bright_square_images, tiny_autoencoder_kl
from torch.utils.data import DataLoader, TensorDataset

from captum_cfx import FitWarning, LatentCounterfactualExplainer
from captum_cfx.latent.diffedit import edit_mask, load_diffedit_pipeline, render_diffedit

WORDS = ("horse", "zebra")


def test_edit_mask_is_where_the_latent_moved():
    z = torch.zeros(2, 4, 8, 8)
    z_bar = z.clone()
    z_bar[0, :, 2:4, 5:7] = 1.0  # image 0: one 2x2 patch moved
    z_bar[0, :, 6, 0] = 0.01  # a small change, below DiffEdit's threshold
    mask = edit_mask(z, z_bar)
    assert mask.shape == (2, 1, 8, 8)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    expected = torch.zeros(8, 8)
    expected[2:4, 5:7] = 1.0
    assert torch.equal(mask[0, 0], expected)
    assert mask[1].sum() == 0  # image 1 did not move
    with pytest.raises(ValueError, match="must both be"):
        edit_mask(z, z_bar[:, :3])


def test_load_diffedit_pipeline_names_a_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        load_diffedit_pipeline(tmp_path)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tokenizer")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for token in sorted(set("".join(WORDS))) + [w + "</w>" for w in WORDS]:
        vocab.setdefault(token, len(vocab))
        vocab.setdefault(token[0] + "</w>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16
    )
    torch.manual_seed(0)
    text_encoder = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=len(vocab),
            max_position_embeddings=16,
        )
    )
    unet = diffusers.UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = tiny_autoencoder_kl()
    scheduler = diffusers.DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = diffusers.StableDiffusionDiffEditPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        inverse_scheduler=diffusers.DDIMInverseScheduler.from_config(scheduler.config),
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def latent_pair():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 8, 8, generator=g)
    z_bar = z.clone()
    z_bar[:, :, :4, :4] += 2.0  # the top-left quarter edited
    return z, z_bar


def test_render_diffedit_keeps_what_the_mask_leaves_out(pipeline):
    z, z_bar = latent_pair()
    steps = {"num_inference_steps": 4, "guidance_scale": 2.0}
    images, masks = render_diffedit(pipeline, z, z_bar, "zebra", **steps)
    assert images.shape == (2, 3, 16, 16) and masks.shape == (2, 1, 8, 8)
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert torch.equal(masks, edit_mask(z, z_bar))
    assert masks[:, :, :4, :4].all() and not masks[:, :, 4:, 4:].any()
    # Deterministic: the same call, the same images.
    again, _ = render_diffedit(pipeline, z, z_bar, "zebra", **steps)
    torch.testing.assert_close(again, images)
    # The normal-class prompt guides the masked part: another prompt renders it otherwise ...
    other, _ = render_diffedit(pipeline, z, z_bar, "horse", **steps)
    assert not torch.allclose(other, images)
    # ... and nothing else: where the latent did not move, the input's inversion is kept.
    kept, empty = render_diffedit(pipeline, z, z.clone(), "zebra", **steps)
    kept_too, _ = render_diffedit(pipeline, z, z.clone(), "horse", **steps)
    assert not empty.any()
    torch.testing.assert_close(kept, kept_too)


def test_render_diffedit_with_the_inputs_prompt_adds_diffedits_noise_mask(pipeline):
    z, z_bar = latent_pair()
    steps = {"num_inference_steps": 4, "guidance_scale": 2.0}
    kwargs = {"source_prompt": "horse", "seed": 3, **steps}
    images, masks = render_diffedit(pipeline, z, z_bar, "zebra", **kwargs)
    assert images.shape == (2, 3, 16, 16) and masks.shape == (2, 1, 8, 8)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    assert (masks >= edit_mask(z, z_bar)).all()  # the union of both masks
    again, masks_again = render_diffedit(pipeline, z, z_bar, "zebra", **kwargs)
    torch.testing.assert_close(again, images)
    assert torch.equal(masks_again, masks)
    with pytest.raises(ValueError, match=r"\(N, 4, h, w\)"):
        render_diffedit(pipeline, z[:, :3], z_bar[:, :3], "zebra", **steps)


def test_an_explainer_on_the_pipelines_vae_renders_through_diffedit(pipeline):
    normal = bright_square_images(48, False, channels=3, size=16, seed=1)
    explainer = LatentCounterfactualExplainer(config=TINY, autoencoder=pipeline.vae)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        explainer.fit(BrightSquare(), DataLoader(TensorDataset(normal)), steps=2, progress=False)
    x = bright_square_images(2, True, channels=3, size=16, seed=2)
    z, z_bar = explainer.counterfactual_latents(x, concept=1)
    images, masks = render_diffedit(
        pipeline, z, z_bar, "zebra", num_inference_steps=4, guidance_scale=2.0
    )
    assert images.shape == x.shape and masks.shape == (2, 1, 8, 8)
    assert torch.equal(masks, edit_mask(z, z_bar))
