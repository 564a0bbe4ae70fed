"""Atomic file writes: a temporary file, then a rename, so a crash never leaves a half file
or damages the previous one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

#: Written beside a saved explainer by ``captum-cfx fit`` and the demo: how the command line
#: loads its detector again, ``{"detector": "file or module:attr"}`` or, for one of the
#: paper's detectors, ``{"paper_detector": name, "in_channels": C, "image_size": S,
#: "weights": file}`` (files relative to the explainer's folder).
CLI_FILE = "cli.json"


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)``, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_text(text: str, path: Path) -> None:
    """``path.write_text(text)`` in UTF-8, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
