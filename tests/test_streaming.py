"""fit reads a DataLoader over a Dataset a batch at a time: the same explainer as from the
same images in memory, each step reading its own batch, and a resumed fit equal to an
uninterrupted one."""

from __future__ import annotations

import warnings

import pytest
import torch
from helpers import TINY, BrightSquare, bright_square_images, tiny_fitted_explainer
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.utils import save_image

from captum_cfx import CounterfactualAnomalyExplainer, FitWarning, NotFittedError
from captum_cfx.data import load_image_folder
from captum_cfx.data.folder import FolderImages
from captum_cfx.streaming import DatasetImages, read_images

NORMAL = bright_square_images(48, False, seed=1)
OUTLIERS = torch.cat([bright_square_images(4, True, seed=10 + s) for s in range(4)])


class CountedImages(Dataset):
    """The normal images, one (image, label) pair per index, counting the reads."""

    def __init__(self) -> None:
        self.reads = 0

    def __len__(self) -> int:
        return len(NORMAL)

    def __getitem__(self, i: int):
        self.reads += 1
        return NORMAL[i], 0


def _fit(normal_loader, steps: int = 4, **options) -> CounterfactualAnomalyExplainer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # a fit this short is judged a failure
        return CounterfactualAnomalyExplainer(n_concepts=2, config=TINY).fit(
            BrightSquare(),
            normal_loader,
            outlier_loader=[OUTLIERS],
            steps=steps,
            progress=False,
            **options,
        )


def _weights(explainer: CounterfactualAnomalyExplainer) -> dict:
    return {
        **explainer.generator_.state_dict(),
        **{f"R.{k}": v for k, v in explainer.concept_classifier_.state_dict().items()},
    }


def test_a_dataset_is_read_a_batch_per_step_and_fits_as_its_images_in_memory():
    dataset = CountedImages()
    loader = DataLoader(dataset, batch_size=16, shuffle=True)
    streamed = _fit(loader)
    in_memory = _fit([NORMAL])
    for name, value in _weights(in_memory).items():
        torch.testing.assert_close(_weights(streamed)[name], value, rtol=0, atol=0)
    assert streamed.history_ == in_memory.history_
    # Each step reads its own batch: half of TINY's 8 images are normal, half outliers.
    reads_in_4_steps = dataset.reads
    dataset.reads = 0
    _fit(loader, steps=2)
    assert reads_in_4_steps - dataset.reads == 2 * TINY.batch_size // 2
    assert isinstance(read_images(loader, "normal_loader"), DatasetImages)


def test_a_resumed_streaming_fit_equals_an_uninterrupted_one(tmp_path):
    loader = DataLoader(TensorDataset(NORMAL), batch_size=16)
    full = _fit(loader, checkpoint_dir=tmp_path / "a", checkpoint_every=2)
    _fit(loader, steps=2, checkpoint_dir=tmp_path / "b", checkpoint_every=2)
    resumed = _fit(loader, checkpoint_dir=tmp_path / "b", checkpoint_every=2)
    for name, value in _weights(full).items():
        torch.testing.assert_close(_weights(resumed)[name], value, rtol=0, atol=0)
    assert resumed.history_ == full.history_


def test_a_folder_read_image_by_image_gives_the_pixels_of_the_folder_read_whole(tmp_path):
    for i, image in enumerate(NORMAL[:5]):
        save_image(image, tmp_path / f"img{i}.png")
    whole, _ = load_image_folder(tmp_path)
    folder = FolderImages(tmp_path)
    assert len(folder) == 5
    torch.testing.assert_close(torch.stack([folder[i] for i in range(5)]), whole, rtol=0, atol=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no"):
        FolderImages(tmp_path / "empty")


def test_other_loaders_are_read_whole_and_bad_datasets_are_named():
    assert isinstance(read_images([NORMAL[:8], NORMAL[8:]], "normal_loader"), torch.Tensor)
    subset = DataLoader(TensorDataset(NORMAL), sampler=range(8))  # the user's own sampling
    assert read_images(subset, "normal_loader").shape == (8, 1, 16, 16)
    assert DatasetImages(TensorDataset(NORMAL), "normal_loader")[:0].shape == (0, 1, 16, 16)
    mixed = [torch.rand(1, 16, 16), torch.rand(1, 8, 8)]
    with pytest.raises(ValueError, match="different shapes"):
        DatasetImages(mixed, "normal_loader")[torch.arange(2)]
    with pytest.raises(TypeError, match="ToTensor"):
        DatasetImages([[1.0]], "normal_loader")


def test_iter_counterfactuals_streams_a_loader_batch_by_batch_as_counterfactuals_does():
    explainer = tiny_fitted_explainer()
    images = bright_square_images(20, True, seed=3)
    loader = DataLoader(TensorDataset(images, torch.zeros(20)), batch_size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 20-step explainer leaves most images flagged
        streamed = list(explainer.iter_counterfactuals(loader, progress=False))
        whole = explainer.counterfactuals(images)
    assert [len(batch) for batch, _ in streamed] == [8, 8, 4]
    torch.testing.assert_close(torch.cat([batch for batch, _ in streamed]), images)
    torch.testing.assert_close(torch.cat([cfs for _, cfs in streamed]), whole)


def test_iter_counterfactuals_reads_a_batch_only_when_it_is_asked_for():
    explainer = tiny_fitted_explainer()
    read = []

    def batches():
        for seed in range(3):
            read.append(seed)
            yield bright_square_images(4, True, seed=seed)

    stream = explainer.iter_counterfactuals(batches(), progress=False)
    assert read == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images, cfs = next(stream)
    assert read == [0] and cfs.shape == (4, 2, 1, 16, 16)


def test_iter_counterfactuals_refuses_an_unfitted_explainer():
    with pytest.raises(NotFittedError):
        next(
            CounterfactualAnomalyExplainer(n_concepts=2).iter_counterfactuals(
                [torch.rand(2, 1, 16, 16)]
            )
        )
