"""Render the demo's HTML report to a PNG with headless Chromium (docs/demo_report.png).

    python docs/report_screenshot.py [--demo captum_cfx_demo] [--images 2] [--out PNG]

Writes ``--images`` flagged Colored-MNIST test anomalies of different digits and colours
(the demo figure's picks) as PNGs into ``DEMO/report_images``, runs ``captum-cfx explain
--report`` on the demo's saved explainer, and screenshots the page with Debian's
``chromium`` or ``chromium-headless-shell`` (``apt-get install chromium-headless-shell``).
Run ``captum-cfx demo`` first.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from torchvision.utils import save_image

from captum_cfx.cli import main as cli
from captum_cfx.cli import saved_detector
from captum_cfx.data import colored_mnist
from captum_cfx.demo import pick_examples
from captum_cfx.detectors import score_images

BROWSERS = ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", type=Path, default=Path("captum_cfx_demo"))
    parser.add_argument("--images", type=int, default=2, help="anomalies in the report")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "demo_report.png")
    parser.add_argument("--size", default="900,1750", help="the window, WIDTH,HEIGHT pixels")
    args = parser.parse_args()
    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        raise SystemExit(f"no headless Chromium found (looked for {', '.join(BROWSERS)}).")
    anomalies = colored_mnist(False).anomalous()
    detector = saved_detector(args.demo / "explainer")  # the demo's BCE-OE: phi itself
    picked = pick_examples(anomalies, score_images(detector, anomalies.images), args.images)
    folder = args.demo / "report_images"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, index in enumerate(picked.tolist()):
        digit = int(anomalies.factors["digit"][index])
        save_image(anomalies.images[index], folder / f"{i}_digit{digit}.png")
    report = (args.demo / "report.html").resolve()
    argv = ["explain", "--explainer", str(args.demo / "explainer"), "--images", str(folder)]
    if cli([*argv, "--out", str(args.demo / "explained"), "--report", str(report)]) != 0:
        raise SystemExit("captum-cfx explain failed")
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={args.size}",
            f"--screenshot={args.out.resolve()}",
            report.as_uri(),
        ],
        check=True,
        capture_output=True,
    )
    print(f"{report} rendered to {args.out}")


if __name__ == "__main__":
    main()
