"""Training on two processes with torch.distributed (gloo, on this CPU): the update they make
together is the one a single process makes with the batch of both, and a checkpoint they
write resumes in one process."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import TINY, BrightSquare, bright_square_images

from captum_cfx import CounterfactualAnomalyExplainer, FitWarning, as_detector
from captum_cfx.distributed import World
from captum_cfx.generative.trainer import CounterfactualTrainer

NORMAL = bright_square_images(32, False, seed=1)
OUTLIERS = torch.cat([bright_square_images(4, True, seed=10 + s) for s in range(4)])


def _trainer(batch_size: int, world: World) -> CounterfactualTrainer:
    return CounterfactualTrainer(
        as_detector(BrightSquare(), calibration="identity"),
        NORMAL,
        OUTLIERS,
        2,
        replace(TINY, batch_size=batch_size, alpha_zero_share=0.75),  # many judged at alpha = 0
        torch.device("cpu"),
        seed=0,
        world=world,
    )


def _first_update(trainer: CounterfactualTrainer) -> dict:
    """One step's record, and the gradients it applied: Adam's first moment after one step
    is (1 - beta1) times the gradient."""
    record = trainer.train_step()
    moments = {
        f"{name}.{i}": state["exp_avg"]
        for name, opt in (("opt_g", trainer.opt_g), ("opt_d", trainer.opt_d))
        for i, state in enumerate(opt.state.values())
    }
    return {"record": record, "moments": moments}


def _join(rank: int, store: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)


def _two_process_first_update(rank: int, store: Path, out: Path) -> None:
    _join(rank, store)
    update = _first_update(_trainer(4, World(rank, 2)))
    if rank == 0:
        torch.save(update, out)
    dist.destroy_process_group()


def test_two_processes_make_the_update_of_one_process_with_the_batch_of_both(tmp_path):
    out = tmp_path / "update.pt"
    mp.spawn(_two_process_first_update, args=(tmp_path / "store", out), nprocs=2)
    together = torch.load(out, weights_only=False)
    alone = _first_update(_trainer(8, World()))
    assert together["record"]["world_size"] == 2 and alone["record"]["world_size"] == 1
    assert alone["record"]["normality_auroc"] is not None  # the judged rows were gathered
    # loss_gan reads D after its update, in which Adam moves a weight whose gradient is zero
    # up to rounding (D's last bias) by as much as lr, either way.
    for name in ("loss_gan", "loss_total"):
        assert together["record"].pop(name) == pytest.approx(alone["record"].pop(name), abs=1e-3)
    for name, value in alone["record"].items():
        if name != "world_size":
            assert together["record"][name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert together["moments"].keys() == alone["moments"].keys()
    for name, moment in alone["moments"].items():
        torch.testing.assert_close(together["moments"][name], moment, rtol=1e-3, atol=1e-5)
    # The update is the batch's: not what one process makes with its own half.
    half = _first_update(_trainer(4, World()))
    assert half["record"]["loss_rec"] != pytest.approx(alone["record"]["loss_rec"], rel=1e-3)
    assert any(
        not torch.allclose(half["moments"][name], moment, rtol=1e-3, atol=1e-5)
        for name, moment in alone["moments"].items()
    )


def _fit(
    steps: int, checkpoint: Path, batch_size: int, normal: torch.Tensor = NORMAL
) -> CounterfactualAnomalyExplainer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # a fit this short is judged a failure
        return CounterfactualAnomalyExplainer(
            n_concepts=2, config=replace(TINY, batch_size=batch_size)
        ).fit(
            BrightSquare(),
            [normal],
            outlier_loader=[OUTLIERS],
            steps=steps,
            checkpoint_dir=checkpoint,
            checkpoint_every=2,
            progress=False,
        )


def _two_process_fit(rank: int, store: Path, folder: Path) -> None:
    _join(rank, store)  # fit finds the process group
    _fit(2, folder / "checkpoint", 4).save(folder / "explainer")  # rank 0 alone writes
    _fit(4, folder / "uninterrupted", 4)
    with pytest.raises(ValueError, match="disagree on normal images"):
        _fit(2, folder / "mismatched", 4, normal=NORMAL[rank:])  # each its own data
    dist.destroy_process_group()


def test_a_checkpoint_two_processes_wrote_resumes_in_one_and_mismatches_are_refused(tmp_path):
    mp.spawn(_two_process_fit, args=(tmp_path / "store", tmp_path), nprocs=2)
    saved = CounterfactualAnomalyExplainer.load(tmp_path / "explainer")
    assert json.loads((tmp_path / "explainer" / "config.json").read_text())["world_size"] == 2
    assert saved.history_["world_size"] == [2, 2]
    # One process with the batch of both goes on where the two stopped, as they would have.
    resumed = _fit(4, tmp_path / "checkpoint", 8)
    assert resumed.history_["world_size"] == [2, 2, 1, 1]
    assert resumed.fit_report_["steps"] == 4
    uninterrupted = torch.load(tmp_path / "uninterrupted" / "checkpoint.pt", weights_only=True)
    for name in ("loss_rec", "loss_cyc", "loss_phi"):
        assert resumed.history_[name] == pytest.approx(uninterrupted["history"][name], rel=1e-3), (
            name
        )


def test_distributed_fit_outside_torchrun_says_how_to_start_it(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="torchrun --nproc-per-node"):
        CounterfactualAnomalyExplainer(config=TINY).fit(
            BrightSquare(), [NORMAL], steps=1, progress=False, distributed=True
        )
