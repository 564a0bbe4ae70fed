"""DiffEdit rendering of latent counterfactuals (the paper's psi; docs/latent.rst).

G' edits the latent of an image towards normal; a Stable Diffusion DiffEdit pipeline
(diffusers' ``StableDiffusionDiffEditPipeline``) then renders the edit at full resolution:

1. the mask: where the latent moved (:func:`edit_mask`: DiffEdit's thresholding of the
   channel-mean ``|z_bar - z|``), together with, given a prompt for the input's class, where
   the UNet's noise predictions under the normal-class prompt and the input's prompt differ
   (DiffEdit's own ``generate_mask``);
2. DDIM inversion (``invert``) of the input's latent and of the counterfactual's, the
   trajectory taken from the counterfactual inside the mask and from the input outside;
3. DiffEdit's masked denoising (``__call__``) guided by the normal-class prompt: outside the
   mask the input's inverted latents are put back at every step, so the image keeps what the
   mask leaves out (pose, background), and inside it the counterfactual is re-rendered as the
   normal class.

diffusers is imported when a function here is called (``pip install 'captum-cfx[diffusion]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Tuple, Union

import torch
from torch import Tensor

from captum_cfx.latent.kl import import_diffusers

#: DiffEdit's ``mask_thresholding_ratio``: a latent pixel is in the mask when its change is
#: above half this many times the image's mean change.
THRESHOLDING_RATIO = 3.0


def edit_mask(
    latents: Tensor, counterfactual_latents: Tensor, thresholding_ratio: float = THRESHOLDING_RATIO
) -> Tensor:
    """Where G' moved the latent, as a DiffEdit mask.

    The channel-mean absolute change of each latent pixel is clamped at ``thresholding_ratio``
    times its mean over the image, divided by that, and binarised at 1/2, as DiffEdit
    binarises its noise-difference map.

    Args:
        latents (Tensor): z, (N, c, h, w).
        counterfactual_latents (Tensor): z_bar, (N, c, h, w).
        thresholding_ratio (float): DiffEdit's ``mask_thresholding_ratio``. Default: 3.0

    Returns:
        Tensor (N, 1, h, w) of 0.0 and 1.0; all 0 for an image whose latent did not move.
    """
    if latents.shape != counterfactual_latents.shape or latents.dim() != 4:
        raise ValueError(
            "latents and counterfactual_latents must both be (N, c, h, w), got "
            f"{tuple(latents.shape)} and {tuple(counterfactual_latents.shape)}."
        )
    change = (counterfactual_latents - latents).abs().float().mean(1, keepdim=True)
    magnitude = (change.mean((2, 3), keepdim=True) * thresholding_ratio).clamp_min(1e-12)
    return ((change.clamp(max=magnitude) / magnitude) > 0.5).float()


def load_diffedit_pipeline(
    path: Union[str, Path],
    device: Union[str, torch.device, None] = None,
    torch_dtype: Optional[torch.dtype] = None,
) -> Any:
    """A ``StableDiffusionDiffEditPipeline`` read from a Stable Diffusion checkpoint folder on
    disk (``local_files_only=True``), with DiffEdit's DDIM scheduler and its inverse, no
    safety checker, the progress bar off.

    Args:
        path (str or Path): the checkpoint's folder (``model_index.json`` and the ``unet``,
            ``vae``, ``text_encoder``, ``tokenizer`` and ``scheduler`` folders), e.g. a local
            copy of ``stable-diffusion-v1-5``.
        device (str or torch.device, optional): where to put it. Default: None (the CPU)
        torch_dtype (torch.dtype, optional): e.g. ``torch.float16`` on a GPU. Default: None

    Raises:
        FileNotFoundError: no such folder, or no ``model_index.json`` in it.
        ImportError: diffusers or transformers is not installed.
    """
    folder = Path(path)
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(
            f"no Stable Diffusion checkpoint at {folder} (no model_index.json). Give the folder "
            "of a diffusers checkpoint on disk, the one holding model_index.json and the unet, "
            "vae, text_encoder, tokenizer and scheduler folders."
        )
    diffusers = import_diffusers()
    pipeline = diffusers.StableDiffusionDiffEditPipeline.from_pretrained(
        folder,
        local_files_only=True,
        safety_checker=None,
        requires_safety_checker=False,
        torch_dtype=torch_dtype,
    )
    pipeline.scheduler = diffusers.DDIMScheduler.from_config(pipeline.scheduler.config)
    pipeline.inverse_scheduler = diffusers.DDIMInverseScheduler.from_config(
        pipeline.scheduler.config
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device) if device is not None else pipeline


def render_diffedit(
    pipeline: Any,
    latents: Tensor,
    counterfactual_latents: Tensor,
    normal_prompt: str,
    *,
    source_prompt: Optional[str] = None,
    num_inference_steps: int = 50,
    inpaint_strength: float = 0.8,
    guidance_scale: float = 7.5,
    seed: int = 0,
) -> Tuple[Tensor, Tensor]:
    """Render latent counterfactuals with DiffEdit (the module's steps 1 to 3).

    Args:
        pipeline: a diffusers ``StableDiffusionDiffEditPipeline`` (:func:`load_diffedit_pipeline`)
            whose VAE made the latents.
        latents (Tensor): z = A_enc(x), (N, c, h, w), scaled as the pipeline's UNet takes them
            (:meth:`LatentCounterfactualExplainer.counterfactual_latents
            <captum_cfx.latent.LatentCounterfactualExplainer.counterfactual_latents>` with the
            pipeline's VAE as the autoencoder).
        counterfactual_latents (Tensor): z_bar = G'(z, alpha, k), (N, c, h, w).
        normal_prompt (str): t, the text prompt for the normal class ("a photo of a zebra").
        source_prompt (str, optional): the input's class ("a photo of a horse"): the mask
            then also covers where DiffEdit's noise predictions under the two prompts differ,
            the input is inverted under it, and the rendering is guided away from it.
            Default: None (the mask is where the latent moved; inversion unconditional)
        num_inference_steps (int): DDIM steps of the full schedule. Default: 50
        inpaint_strength (float): the share of the schedule inverted and re-rendered
            (DiffEdit's encoding ratio). Default: 0.8
        guidance_scale (float): classifier-free guidance. Default: 7.5
        seed (int): seeds the noise of DiffEdit's mask; the DDIM inversion and rendering are
            deterministic. Default: 0

    Returns:
        (images, masks): the rendered counterfactuals (N, 3, H, W) in [0, 1], H = h times
        the VAE's downscaling, and the masks (N, 1, h, w) of 0.0 and 1.0 they were rendered
        in.
    """
    if latents.dim() != 4 or latents.shape[1] != pipeline.vae.config.latent_channels:
        raise ValueError(
            f"latents must be (N, {pipeline.vae.config.latent_channels}, h, w), the pipeline's "
            f"VAE's latents, got {tuple(latents.shape)}: fit the explainer with that VAE "
            "(autoencoder=<checkpoint>/vae)."
        )
    mask = edit_mask(latents, counterfactual_latents)
    n, device = len(latents), pipeline.device
    z, z_bar = (
        latents.to(device, pipeline.vae.dtype),
        counterfactual_latents.to(device, pipeline.vae.dtype),
    )
    source = "" if source_prompt is None else source_prompt
    steps = {
        "num_inference_steps": num_inference_steps,
        "inpaint_strength": inpaint_strength,
        "guidance_scale": guidance_scale,
    }
    if source_prompt is not None:
        noise_mask = pipeline.generate_mask(
            image=z,
            target_prompt=[normal_prompt] * n,
            source_prompt=[source] * n,
            mask_encode_strength=0.5,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=torch.Generator(device="cpu").manual_seed(seed),
        )
        mask = torch.maximum(mask, torch.as_tensor(noise_mask, dtype=mask.dtype)[:, None])
    inverted = pipeline.invert(prompt=[source] * n, image=z, **steps).latents
    inverted_bar = pipeline.invert(prompt=[normal_prompt] * n, image=z_bar, **steps).latents
    inside = mask[:, None].to(inverted)  # (N, 1, 1, h, w) over the (N, T, c, h, w) trajectory
    trajectory = inside * inverted_bar + (1 - inside) * inverted
    images = pipeline(
        prompt=[normal_prompt] * n,
        mask_image=mask.to(device),
        image_latents=trajectory,
        negative_prompt=None if source_prompt is None else [source] * n,
        output_type="pt",
        **steps,
    ).images
    return images.float().cpu(), mask


__all__ = ["THRESHOLDING_RATIO", "edit_mask", "load_diffedit_pipeline", "render_diffedit"]
