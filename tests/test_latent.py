"""LatentCounterfactualExplainer: G' in an autoencoder's latent space, the library's own
autoencoder or a diffusers AutoencoderKL read from a folder, persistence, and the errors."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from helpers import TINY, BrightSquare, bright_square_images, tiny_autoencoder_kl
from torch.utils.data import DataLoader, TensorDataset

from captum_cfx import CounterfactualAnomalyExplainer, FitWarning, LatentCounterfactualExplainer
from captum_cfx.latent import (
    ConvAutoencoder,
    LatentAutoencoder,
    LatentDetector,
    LatentRange,
    load_autoencoder_kl,
    train_autoencoder,
)


def loader(images: torch.Tensor) -> DataLoader:
    return DataLoader(TensorDataset(images), batch_size=16)


def fit_quietly(explainer, detector, images, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # a fit this short is judged a failure
        return explainer.fit(detector, loader(images), progress=False, **kwargs)


@pytest.fixture(scope="module")
def squares():
    normal = bright_square_images(64, False, size=32, seed=1)
    anomalous = torch.cat([bright_square_images(2, True, size=32, seed=10 + s) for s in range(4)])
    return normal, anomalous


@pytest.fixture(scope="module")
def fitted(squares):
    explainer = LatentCounterfactualExplainer(n_concepts=2, config=TINY, autoencoder_steps=30)
    return fit_quietly(explainer, BrightSquare(), squares[0], steps=6, checkpoint_every=3)


def test_own_autoencoder_fit_explains_images_through_the_latents(fitted, squares):
    x = squares[1]
    assert fitted.latent_shape_ == (4, 16, 16)  # 32 px, the own autoencoder's f = 2
    assert fitted.counterfactuals(x).shape == (8, 2, 1, 32, 32)
    assert fitted.traverse(x, 1, [0.9, 0.0]).shape == (8, 2, 1, 32, 32)
    (attribution,) = fitted.attribute((x,), concept=1)
    counterfactual = fitted.counterfactual(x, concept=1)
    torch.testing.assert_close(attribution, x - counterfactual)
    # G is A_dec(G'(A_enc(x))): the counterfactual is the decoded latent counterfactual.
    z, z_bar = fitted.counterfactual_latents(x, concept=1)
    torch.testing.assert_close(z, fitted.autoencoder_.encode(x))
    torch.testing.assert_close(counterfactual, fitted.autoencoder_.decode(z_bar))
    assert not torch.equal(z_bar, z)
    report = fitted.fit_report_
    assert report["steps"] == 6 and report["n_judged"] > 0
    assert report["autoencoder"]["kind"] == "ConvAutoencoder"
    assert 0 <= report["autoencoder"]["reconstruction_l1"] < 0.2
    assert set(fitted.history_) >= {"loss_phi", "loss_rec", "loss_cyc", "loss_con", "loss_gan"}


def test_phi_reaches_the_latents_through_the_frozen_decoder(fitted, squares):
    phi, autoencoder = fitted.forward_func, fitted.autoencoder_
    z = autoencoder.encode(squares[1])
    latent_range = LatentRange.of(z)
    u = latent_range.to_unit(z).requires_grad_(True)
    logits = LatentDetector(phi, autoencoder, latent_range)(u)
    torch.testing.assert_close(logits, phi.logit(autoencoder.decode(latent_range.from_unit(u))))
    logits.sum().backward()
    assert u.grad is not None and u.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in autoencoder.parameters())


def test_latent_range_maps_the_normal_latents_inside_the_unit_interval():
    scale = torch.tensor([1.0, 5.0, 0.1, 2.0])[None, :, None, None]
    z = torch.randn(16, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * scale + 3
    latent_range = LatentRange.of(z)
    u = latent_range.to_unit(z)
    # Each channel's 0.1% and 99.9% quantiles land at 1/6 and 5/6: a quarter of the span is
    # left on each side for edits beyond the normal range.
    quantiles = u.transpose(0, 1).flatten(1).quantile(torch.tensor([0.001, 0.999]), dim=1)
    torch.testing.assert_close(quantiles[0], torch.full((4,), 1 / 6))
    torch.testing.assert_close(quantiles[1], torch.full((4,), 5 / 6))
    torch.testing.assert_close(latent_range.from_unit(u), z)


def test_save_load_round_trip_needs_no_code_and_keeps_the_counterfactuals(
    fitted, squares, tmp_path
):
    folder = fitted.save(tmp_path / "explainer")
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "captum_cfx.LatentCounterfactualExplainer"
    assert config["autoencoder"]["kind"] == "conv"
    # Plain tensors only: a loader that refuses any pickled object reads them.
    torch.load(folder / "weights.pt", weights_only=True)
    loaded = LatentCounterfactualExplainer.load(folder, detector=BrightSquare())
    x = squares[1]
    torch.testing.assert_close(loaded.counterfactuals(x), fitted.counterfactuals(x))
    assert loaded.fit_report_ == json.loads(json.dumps(fitted.fit_report_))
    assert loaded.latent_shape_ == fitted.latent_shape_
    with pytest.raises(ValueError, match="LatentCounterfactualExplainer.load"):
        CounterfactualAnomalyExplainer.load(folder)


def test_a_given_trained_autoencoder_is_used_as_it_is(squares):
    normal = squares[0]
    autoencoder = train_autoencoder(
        normal,
        steps=5,
        progress=False,
        autoencoder=ConvAutoencoder(1, latent_channels=2, width=4, downsamplings=2),
    )
    before = {k: v.clone() for k, v in autoencoder.state_dict().items()}
    explainer = LatentCounterfactualExplainer(config=TINY, autoencoder=autoencoder)
    fit_quietly(explainer, BrightSquare(), normal, steps=2)
    assert explainer.autoencoder_ is autoencoder and explainer.latent_shape_ == (2, 8, 8)
    assert all(torch.equal(v, autoencoder.state_dict()[k]) for k, v in before.items())


def test_checkpoint_dir_keeps_the_own_autoencoder(squares, tmp_path):
    normal = squares[0]
    first = LatentCounterfactualExplainer(config=TINY, autoencoder_steps=3)
    fit_quietly(first, BrightSquare(), normal, steps=2, checkpoint_dir=tmp_path)
    assert (tmp_path / "autoencoder.pt").is_file()
    resumed = LatentCounterfactualExplainer(config=TINY, autoencoder_steps=3)
    with torch.random.fork_rng():
        torch.manual_seed(123)  # a fresh autoencoder would differ; the saved one is read
        fit_quietly(resumed, BrightSquare(), normal, steps=3, checkpoint_dir=tmp_path)
    for a, b in zip(first.autoencoder_.parameters(), resumed.autoencoder_.parameters()):
        assert torch.equal(a, b)


def test_errors_name_the_problem(squares, tmp_path):
    normal = squares[0]
    small = bright_square_images(16, False, size=8, seed=3)
    with pytest.raises(ValueError, match="4x4 latents"):
        LatentCounterfactualExplainer(config=TINY).fit(BrightSquare(), loader(small), steps=1)
    with pytest.raises(ValueError, match="one process"):
        LatentCounterfactualExplainer(config=TINY).fit(
            BrightSquare(), loader(normal), steps=1, distributed=True
        )
    with pytest.raises(TypeError, match="autoencoder must be"):
        LatentCounterfactualExplainer(config=TINY, autoencoder=3).fit(
            BrightSquare(), loader(normal), steps=1
        )
    rgb = ConvAutoencoder(3)
    with pytest.raises(ValueError, match="3-channel images"):
        LatentCounterfactualExplainer(config=TINY, autoencoder=rgb).fit(
            BrightSquare(), loader(normal), steps=1
        )

    def black_box(x):
        return np.asarray(BrightSquare()(x).detach())

    with pytest.raises(ValueError, match="no gradient"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        LatentCounterfactualExplainer(config=TINY, autoencoder=ConvAutoencoder(1)).fit(
            black_box, loader(normal), steps=1, calibration="identity"
        )
    with pytest.raises(FileNotFoundError, match="no autoencoder folder"):
        load_autoencoder_kl(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_autoencoder_kl(tmp_path / "empty")
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text('{"_class_name": "UNet2DConditionModel"}')
    with pytest.raises(ValueError, match="not an AutoencoderKL"):
        load_autoencoder_kl(tmp_path / "unet")


def test_captum_cfx_imports_without_diffusers_and_says_how_to_install_it(tmp_path):
    (tmp_path / "config.json").write_text('{"_class_name": "AutoencoderKL"}')
    code = (
        "import sys; sys.modules['diffusers'] = None\n"
        "import captum_cfx, captum_cfx.latent, captum_cfx.latent.diffedit\n"
        "from captum_cfx.latent import load_autoencoder_kl\n"
        "try:\n"
        f"    load_autoencoder_kl({str(tmp_path)!r})\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "captum-cfx[diffusion]" in out.stdout


def test_autoencoder_kl_from_a_folder_fits_saves_and_loads(tmp_path):
    tiny_autoencoder_kl().save_pretrained(tmp_path / "vae")
    normal = bright_square_images(48, False, channels=3, size=16, seed=1)
    anomalous = bright_square_images(4, True, channels=3, size=16, seed=2)
    explainer = LatentCounterfactualExplainer(config=TINY, autoencoder=str(tmp_path / "vae"))
    fit_quietly(explainer, BrightSquare(), normal, steps=2)
    assert type(explainer.autoencoder_).__name__ == "KLAutoencoder"
    assert explainer.latent_shape_ == (4, 8, 8)  # two levels: f = 2
    z, z_bar = explainer.counterfactual_latents(anomalous)
    scaling = explainer.autoencoder_.scaling_factor
    expected = explainer.autoencoder_.vae.encode(2 * anomalous - 1).latent_dist.mean * scaling
    torch.testing.assert_close(z, expected)
    folder = explainer.save(tmp_path / "explainer")
    assert (folder / "autoencoder" / "config.json").is_file()
    loaded = LatentCounterfactualExplainer.load(folder, detector=BrightSquare())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # two steps make no normal counterfactuals
        before, after = explainer.counterfactuals(anomalous), loaded.counterfactuals(anomalous)
    torch.testing.assert_close(after, before)
    grey = bright_square_images(48, False, channels=1, size=16, seed=1)
    with pytest.raises(ValueError, match="3-channel images"):
        LatentCounterfactualExplainer(config=TINY, autoencoder=tmp_path / "vae").fit(
            BrightSquare(), loader(grey), steps=1
        )


def test_an_autoencoder_without_encode_and_decode_cannot_be_made():
    class Incomplete(LatentAutoencoder):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()
