"""The ``captum-cfx`` command line."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from torchvision.utils import save_image
from tqdm.auto import tqdm

import captum_cfx
from captum_cfx._io import CLI_FILE
from captum_cfx.data import load_image_folder
from captum_cfx.data.folder import FolderImages
from captum_cfx.demo import DEMO_STEPS, QUICK_STEPS, run_demo
from captum_cfx.detectors import DETECTORS
from captum_cfx.diagnosis import MEASURES, flag_names
from captum_cfx.distributed import is_writer, process_device, under_torchrun
from captum_cfx.explainer import CounterfactualAnomalyExplainer
from captum_cfx.generative import Preset
from captum_cfx.report import REPORT_IMAGES, write_report
from captum_cfx.visualization import counterfactual_grid

#: Images ``explain`` reads, explains and writes at a time (at least ``REPORT_IMAGES``).
EXPLAIN_BATCH = 256


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``captum-cfx`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="captum-cfx",
        description="Counterfactual explanations for image anomaly detectors, beside Captum.",
    )
    parser.add_argument(
        "--version", action="version", version=f"captum-cfx {captum_cfx.__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="train a detector and an explainer on Colored-MNIST and draw what they see",
        description="Colored-MNIST from the offline digits (normal: cyan digits and every 1): "
        "trains the BCE-OE detector and the explainer, then writes explanations.png "
        "(counterfactuals beside IntegratedGradients, Saliency and FCDD), traversal strips, "
        "metrics.json and the saved explainer into --out. A second run reuses them.",
    )
    demo.add_argument("--out", type=Path, default=Path("captum_cfx_demo"), help="output folder")
    demo.add_argument(
        "--quick", action="store_true", help=f"{QUICK_STEPS} fit steps (under 2 minutes)"
    )
    demo.add_argument("--steps", type=int, default=None, help=f"fit steps (default {DEMO_STEPS})")
    demo.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when present)")
    demo.add_argument(
        "--detector-epochs", type=int, default=None, help="detector epochs (30; 10 with --quick)"
    )
    demo.set_defaults(run=_run_demo)

    fit = commands.add_parser(
        "fit",
        help="fit an explainer for your own detector on a folder of normal images",
        description="Fits a CounterfactualAnomalyExplainer for DETECTOR (a TorchScript file, "
        "or module:attr naming an importable nn.Module, class or callable) on the PNG/JPEG "
        "images in --normal (read a batch at a time, never all at once), and saves it into "
        "--out. Under torchrun (torchrun "
        "--nproc-per-node N -m captum_cfx fit ...) the N processes train together with "
        "DistributedDataParallel (gloo on the CPU, nccl on CUDA, each process on its own GPU), "
        "each computing its share of every step's batch of N x 32 images; rank 0 writes.",
    )
    fit.add_argument("--detector", required=True, help="TorchScript file or module:attr")
    fit.add_argument("--normal", type=Path, required=True, help="folder of normal images")
    fit.add_argument("--outliers", type=Path, default=None, help="folder of anomalous images")
    fit.add_argument("--out", type=Path, required=True, help="folder for the explainer")
    fit.add_argument("--n-concepts", type=int, default=2)
    fit.add_argument(
        "--preset",
        default=None,
        choices=[preset.name.lower() for preset in Preset],
        help="a named recipe (captum_cfx.Preset) instead of the default GeneratorConfig()",
    )
    fit.add_argument(
        "--steps",
        type=lambda v: v if v == "auto" else int(v),
        default="auto",
        help="training steps, or 'auto' (default): until the held-out judgement stops improving",
    )
    fit.add_argument("--max-steps", type=int, default=4000, help="the most steps 'auto' trains")
    fit.add_argument("--calibration", default="auto", help="auto, identity, sigmoid, exp, gaussian")
    fit.add_argument(
        "--device",
        default=None,
        help="cpu, cuda, ... (default: the detector's, else CUDA when present)",
    )
    fit.set_defaults(run=_run_fit)

    explain = commands.add_parser(
        "explain",
        help="draw the counterfactuals of a folder of images",
        description="Loads an explainer saved by 'captum-cfx fit' (or the demo's) and writes, "
        "for the images in --images, counterfactuals.png, one PNG per image and concept, and "
        "scores.json; with --report, also one self-contained HTML page. The folder is read, "
        f"explained and written {EXPLAIN_BATCH} images at a time, so it may hold any number.",
    )
    explain.add_argument(
        "--explainer", type=Path, required=True, help="folder from 'fit' or the demo"
    )
    explain.add_argument("--images", type=Path, required=True, help="folder of images")
    explain.add_argument("--out", type=Path, required=True, help="output folder")
    explain.add_argument(
        "--detector",
        default=None,
        help="TorchScript file or module:attr (default: the one the explainer was saved with)",
    )
    explain.add_argument(
        "--report",
        type=Path,
        default=None,
        help=f"write an HTML page (images inlined) of the first {REPORT_IMAGES} images: input, "
        "counterfactuals with phi, difference maps, IntegratedGradients, traversal strips, "
        "and the fit's report",
    )
    explain.set_defaults(run=_run_explain)
    return parser


def load_detector(spec: str) -> Any:
    """A detector from a TorchScript file or from ``module:attr`` (a class is instantiated)."""
    path = Path(spec)
    if path.is_file():
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as err:
            raise ValueError(
                f"{path} is not a TorchScript file ({err.__class__.__name__}); save the model "
                "with torch.jit.save(torch.jit.script(model), path), or pass module:attr."
            ) from err
    if ":" not in spec:
        raise FileNotFoundError(f"detector {spec!r} is neither a file nor a module:attr name.")
    module_name, attr = spec.rsplit(":", 1)
    sys.path.insert(0, os.getcwd())
    try:
        detector = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import the detector {spec!r}: {err}") from err
    finally:
        sys.path.remove(os.getcwd())
    return (
        detector() if isinstance(detector, type) and issubclass(detector, nn.Module) else detector
    )


def _run_fit(args: argparse.Namespace) -> int:
    detector = load_detector(args.detector)
    device = process_device(args.device)
    if device is not None and isinstance(detector, nn.Module):
        detector = detector.to(device)  # the command loaded it, so it may move it
    normal = DataLoader(FolderImages(args.normal), batch_size=256)  # read a batch at a time
    outliers = None if args.outliers is None else [load_image_folder(args.outliers)[0]]
    started_here = not (dist.is_available() and dist.is_initialized())
    try:
        config = None if args.preset is None else Preset.from_name(args.preset).config
        explainer = CounterfactualAnomalyExplainer(n_concepts=args.n_concepts, config=config).fit(
            detector,
            normal,
            outlier_loader=outliers,
            steps=args.steps,
            max_steps=args.max_steps,
            device=device,
            calibration=args.calibration,
            checkpoint_dir=args.out / "checkpoint",
            distributed=under_torchrun() or None,
        )
        if is_writer():  # rank 0 alone, under torchrun
            explainer.save(args.out)
            (args.out / CLI_FILE).write_text(json.dumps({"detector": args.detector}))
            print(f"explainer saved in {args.out.resolve()}")
    finally:
        if started_here and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


def saved_detector(folder: Path) -> Any:
    """The detector an explainer ``folder`` was saved with, as its ``cli.json`` names it (a
    file named there is read relative to the folder where it is there); None without one."""
    spec_path = folder / CLI_FILE
    if not spec_path.is_file():
        return None
    spec = json.loads(spec_path.read_text())
    if "paper_detector" in spec:  # the demo's: one of the paper's detectors, its weights
        detector = DETECTORS[spec["paper_detector"]](spec["in_channels"], spec["image_size"])
        weights = torch.load(folder / spec["weights"], map_location="cpu", weights_only=True)
        detector.load_state_dict(weights)
        return detector.eval()
    path = folder / spec["detector"]
    return load_detector(str(path) if path.is_file() else spec["detector"])


def _run_explain(args: argparse.Namespace) -> int:
    detector = load_detector(args.detector) if args.detector else saved_detector(args.explainer)
    explainer = CounterfactualAnomalyExplainer.load(args.explainer, detector=detector)
    folder = FolderImages(args.images)
    names = [path.name for path in folder.paths]
    diagnosing = explainer.forward_func is not None and hasattr(explainer, "normal_reference_")
    args.out.mkdir(parents=True, exist_ok=True)
    scores: Dict[str, Any] = {}
    n_flagged = 0
    for start in tqdm(range(0, len(folder), EXPLAIN_BATCH), desc="explain", unit="batch"):
        batch_names = names[start : start + EXPLAIN_BATCH]
        images = torch.stack([folder[start + i] for i in range(len(batch_names))])
        input_scores, cf_scores, flags = None, None, None
        if diagnosing:
            diagnosis = explainer.diagnose(images)
            counterfactuals = diagnosis["counterfactuals"]
            input_scores, cf_scores = diagnosis["score_before"], diagnosis["score_after"]
            flags = flag_names(diagnosis)
            n_flagged += sum(bool(f) for row in flags for f in row)
            for i, name in enumerate(batch_names):
                scores[name] = {
                    "input": float(input_scores[i]),
                    "counterfactuals": cf_scores[i].tolist(),
                    "flags": flags[i],
                    **{key: diagnosis[key][i].tolist() for key in MEASURES},
                }
        else:
            counterfactuals = explainer.counterfactuals(images)
        for i, name in enumerate(batch_names):
            for k in range(explainer.n_concepts_):
                save_image(counterfactuals[i, k], args.out / f"{Path(name).stem}_concept{k}.png")
        if start == 0:  # the figure and the report show the first REPORT_IMAGES images
            n = REPORT_IMAGES
            first_images, first_counterfactuals = images[:n], counterfactuals[:n]
            first_input = None if input_scores is None else input_scores[:n]
            first_after = None if cf_scores is None else cf_scores[:n]
            first_flags = None if flags is None else flags[:n]
    counterfactual_grid(
        first_images, first_counterfactuals, first_input, first_after, flags=first_flags
    ).savefig(args.out / "counterfactuals.png", dpi=90)
    if n_flagged:
        print(
            f"{n_flagged} of {len(names) * explainer.n_concepts_} counterfactuals are "
            "flagged (scores.json names why): do not read them as explanations"
        )
    (args.out / "scores.json").write_text(json.dumps(scores, indent=2))
    print(f"counterfactuals of {len(names)} images are in {args.out.resolve()}")
    if args.report is not None:
        write_report(
            args.report,
            explainer,
            first_images,
            names=names,
            n_images=len(names),
            counterfactuals=first_counterfactuals,
            input_scores=first_input,
            counterfactual_scores=first_after,
            flags=first_flags,
        )
        print(f"the report is {args.report.resolve()}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    metrics = run_demo(
        args.out,
        quick=args.quick,
        steps=args.steps,
        device=args.device,
        detector_epochs=args.detector_epochs,
    )
    print(
        f"detector AuROC {metrics['detector_auroc']:.3f} | normality AuROC "
        f"{metrics['normality_auroc']:.3f} (50% is ideal) | validity "
        f"{metrics['validity_flagged']:.3f} "
        f"| proximity {metrics['proximity_flagged']:.4f} | concept accuracy "
        f"{metrics['concept_accuracy']:.3f}"
    )
    print(f"figures, metrics.json and the explainer are in {args.out.resolve()}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.run(args))
    except (FileNotFoundError, ValueError, TypeError) as err:
        print(f"captum-cfx {args.command}: error: {err}", file=sys.stderr)
        return 2
