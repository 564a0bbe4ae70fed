"""The paper's high-resolution path: G' in the latent space of an autoencoder, and DiffEdit
rendering (docs/latent.rst).

``LatentCounterfactualExplainer`` is the explainer; the autoencoder is the library's own
(``ConvAutoencoder``, trained on the normal images) or Stable Diffusion's (``KLAutoencoder``,
a diffusers ``AutoencoderKL`` read from a local folder by ``load_autoencoder_kl``).
``render_diffedit`` renders counterfactual latents with a DiffEdit pipeline
(:mod:`captum_cfx.latent.diffedit`).
Only the Stable Diffusion parts need diffusers (``pip install 'captum-cfx[diffusion]'``),
imported when they are called.
"""

from captum_cfx.latent.autoencoder import ConvAutoencoder, LatentAutoencoder, train_autoencoder
from captum_cfx.latent.bridge import LatentDetector, LatentGenerator, LatentRange
from captum_cfx.latent.diffedit import edit_mask, load_diffedit_pipeline, render_diffedit
from captum_cfx.latent.explainer import LatentCounterfactualExplainer
from captum_cfx.latent.kl import KLAutoencoder, load_autoencoder_kl

__all__ = [
    "ConvAutoencoder",
    "KLAutoencoder",
    "LatentAutoencoder",
    "LatentCounterfactualExplainer",
    "LatentDetector",
    "LatentGenerator",
    "LatentRange",
    "edit_mask",
    "load_autoencoder_kl",
    "load_diffedit_pipeline",
    "render_diffedit",
    "train_autoencoder",
]
