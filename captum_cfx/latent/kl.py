"""Stable Diffusion's autoencoder as A: a diffusers ``AutoencoderKL`` read from a local folder.

diffusers is an optional dependency (``pip install 'captum-cfx[diffusion]'``), imported only
here and in :mod:`captum_cfx.latent.diffedit`, and only when called.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Union

from torch import Tensor

from captum_cfx.latent.autoencoder import LatentAutoencoder

INSTALL_HINT = "pip install 'captum-cfx[diffusion]'"


def import_diffusers() -> Any:
    """The ``diffusers`` module, or an ImportError that says how to install it."""
    try:
        import diffusers
    except ImportError as err:
        raise ImportError(
            f"this part of captum_cfx.latent needs diffusers and transformers: {INSTALL_HINT}"
        ) from err
    return diffusers


class KLAutoencoder(LatentAutoencoder):
    """A diffusers ``AutoencoderKL`` (Stable Diffusion's autoencoder) as A.

    ``encode`` takes the mean of the posterior (no sampling: one image, one latent) times the
    VAE's ``scaling_factor``, the latents Stable Diffusion's UNet works on; ``decode`` undoes
    the scaling and maps the decoder's [-1, 1] to [0, 1].

    Args:
        vae (diffusers.AutoencoderKL): the autoencoder; frozen and put in eval mode.
    """

    def __init__(self, vae: Any) -> None:
        super().__init__()
        diffusers = import_diffusers()
        if not isinstance(vae, diffusers.AutoencoderKL):
            raise TypeError(
                f"KLAutoencoder takes a diffusers AutoencoderKL, got {type(vae).__name__}."
            )
        self.vae = vae.eval().requires_grad_(False)
        config = vae.config
        self.image_channels = int(config.in_channels)
        self.latent_channels = int(config.latent_channels)
        self.downscale = 2 ** (len(config.block_out_channels) - 1)
        self.scaling_factor = float(config.scaling_factor)

    def encode(self, x: Tensor) -> Tensor:
        posterior = self.vae.encode(2 * x - 1).latent_dist
        return posterior.mean * self.scaling_factor

    def decode(self, z: Tensor) -> Tensor:
        image = self.vae.decode(z / self.scaling_factor).sample
        return ((image + 1) / 2).clamp(0.0, 1.0)


def load_autoencoder_kl(path: Union[str, Path]) -> KLAutoencoder:
    """Read an ``AutoencoderKL`` from a local folder, never from the network.

    Args:
        path (str or Path): the folder with the VAE's ``config.json`` and weights
            (``diffusion_pytorch_model.safetensors``), e.g. the ``vae`` folder of a Stable
            Diffusion checkpoint on disk.

    Returns:
        The :class:`KLAutoencoder`.

    Raises:
        FileNotFoundError: no such folder, or no ``config.json`` in it.
        ValueError: the folder holds another model class, or weights that do not load.
        ImportError: diffusers is not installed.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no autoencoder folder at {folder}. Give the folder of a diffusers AutoencoderKL "
            "on disk (config.json and diffusion_pytorch_model.safetensors), such as the "
            "'vae' folder of a Stable Diffusion checkpoint, or autoencoder=None to let "
            "captum_cfx train its own."
        )
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{config_file} is missing: {folder} is not a diffusers model folder. Point to the "
            "folder that holds the AutoencoderKL's config.json (a checkpoint's 'vae' folder, "
            "not the checkpoint's root)."
        )
    try:
        class_name = json.loads(config_file.read_text()).get("_class_name")
    except (json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"{config_file} is not a diffusers config (invalid JSON).") from err
    if class_name != "AutoencoderKL":
        raise ValueError(
            f"{folder} holds a {class_name or 'model of unknown class'}, not an "
            "AutoencoderKL; give the checkpoint's 'vae' folder."
        )
    diffusers = import_diffusers()
    try:
        vae = diffusers.AutoencoderKL.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"the AutoencoderKL in {folder} did not load ({type(err).__name__}: {err}); are its "
            "weights complete and of the config's shapes?"
        ) from err
    return KLAutoencoder(vae)
