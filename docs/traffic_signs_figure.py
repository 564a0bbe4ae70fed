"""Draw the traffic-sign figure of the API page (docs/traffic_signs.png).

    python docs/traffic_signs_figure.py [--out PNG]

32 signs at 64 px from :func:`captum_cfx.data.traffic_signs`: the top two rows normal (round
speed-limit signs), the bottom two rows anomalies (a normal sign with one to four of its
shape, rim, fill and symbol changed). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchvision.utils import save_image

from captum_cfx.data import traffic_signs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("traffic_signs.png"))
    args = parser.parse_args()
    normal = traffic_signs(16, size=64, seed=0, anomaly_share=0.0)
    anomalous = traffic_signs(16, size=64, seed=1, anomaly_share=1.0)
    images = torch.cat([normal.images, anomalous.images])
    save_image(images, args.out, nrow=8, padding=2, pad_value=1.0)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
