"""An HTML report of an explainer on a batch of images: one self-contained page.

Per image: the input, its K counterfactuals with phi before and after, the difference maps,
Captum's IntegratedGradients beside them, and the traversal strip of every concept; then the
fit's report (``explainer.fit_report_``). Every image is inlined as a base64 PNG, drawn as
:mod:`captum_cfx.visualization` draws it, so the page is one file that opens anywhere.
``captum-cfx explain --report report.html`` writes it; :func:`write_report` from Python.
"""

from __future__ import annotations

import base64
import io
import json
from html import escape
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from captum.attr import IntegratedGradients
from matplotlib.image import imsave
from torch import Tensor

from captum_cfx._io import atomic_write_text
from captum_cfx._version import __version__
from captum_cfx.detectors.adapter import score_images
from captum_cfx.visualization import (
    DIFFERENCE_CMAP,
    HEATMAP_CMAP,
    difference_map,
    heatmap_map,
    image_array,
)

#: The most images a report shows (the first ones given).
REPORT_IMAGES = 16

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
section.image { border-top: 1px solid #ccc; padding-top: 0.5em; }
.row { display: flex; flex-wrap: wrap; gap: 0.6em; align-items: flex-start; }
figure { margin: 0; width: 124px; font-size: 0.75em; overflow-wrap: anywhere; }
img { width: 96px; height: 96px; image-rendering: pixelated; display: block; }
.strip figure { width: 76px; }
.strip img { width: 64px; height: 64px; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
td { max-width: 50em; overflow-wrap: anywhere; }
.note { color: #666; font-size: 0.9em; }
figure.flagged img { outline: 3px solid #c00; }
figure.flagged figcaption { color: #c00; }
"""


def _png(array: np.ndarray, **kwargs: Any) -> str:
    """``array`` (H, W) or (H, W, C) as a PNG data URI; ``kwargs`` go to matplotlib's
    ``imsave`` (``cmap``, ``vmin``, ``vmax`` for one-channel arrays)."""
    buffer = io.BytesIO()
    imsave(buffer, array, format="png", **kwargs)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(uri: str, caption: str, kind: str) -> str:
    return (
        f'<figure class="{kind}"><img src="{uri}" alt="{escape(caption)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _image(image: Tensor, caption: str, kind: str) -> str:
    return _figure(_png(image_array(image), cmap="gray", vmin=0, vmax=1), caption, kind)


def _phi(score: Optional[Tensor]) -> str:
    return "" if score is None else f"phi {float(score):.3f}"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value)


def fit_report_html(report: Dict[str, Any]) -> str:
    """The fit's report as an HTML section: one row per entry; a list of dicts (the per-concept
    judgement) as a table of its own. Says so when the report is empty (explainers saved
    before captum_cfx recorded one)."""
    parts = ['<section id="fit-report"><h2>Fit report</h2>']
    if not report:
        parts.append(
            '<p class="note">This explainer has no fit report: it was saved before '
            "captum_cfx recorded one.</p></section>"
        )
        return "".join(parts)
    rows, tables = [], []
    for key, value in report.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            columns = list(dict.fromkeys(k for v in value for k in v))
            head = "".join(f"<th>{escape(c)}</th>" for c in ["", *columns])
            body = "".join(
                f"<tr><td>{i}</td>"
                + "".join(f"<td>{escape(_value(v.get(c, '')))}</td>" for c in columns)
                + "</tr>"
                for i, v in enumerate(value)
            )
            tables.append(f"<h3>{escape(key)}</h3><table><tr>{head}</tr>{body}</table>")
        else:
            rows.append(f"<tr><th>{escape(key)}</th><td>{escape(_value(value))}</td></tr>")
    parts.append(f'<table class="fit-report">{"".join(rows)}</table>')
    parts.extend(tables)
    parts.append("</section>")
    return "".join(parts)


def build_report(
    explainer: Any,
    images: Tensor,
    names: Optional[Sequence[str]] = None,
    counterfactuals: Optional[Tensor] = None,
    input_scores: Optional[Tensor] = None,
    counterfactual_scores: Optional[Tensor] = None,
    flags: Optional[Sequence[Sequence[Sequence[str]]]] = None,
    max_images: int = REPORT_IMAGES,
    n_images: Optional[int] = None,
    traversal_steps: int = 6,
    ig_steps: int = 50,
    title: str = "captum_cfx explanations",
) -> str:
    """The report of ``explainer`` on ``images`` as an HTML page (a str).

    Args:
        explainer: a fitted :class:`~captum_cfx.CounterfactualAnomalyExplainer`; with its
            detector (``forward_func``) the page shows phi, IntegratedGradients and traversals
            from each image's own score, without it the counterfactuals and fixed traversals.
        images: (N, C, H, W) in [0, 1], on the detector's device; the first ``max_images``
            are shown.
        names: N names for the headings; ``image i`` when None.
        counterfactuals: ``explainer.counterfactuals(images)`` (N, K, C, H, W) when already
            computed; computed when None.
        input_scores: phi (N,) of the images, when already computed.
        counterfactual_scores: phi (N, K) of the counterfactuals, when already computed.
        flags: per image and concept, the flags its diagnosis raised
            (:func:`captum_cfx.diagnosis.flag_names`); a flagged counterfactual is framed in
            red and its caption names them. None: not diagnosed.
        max_images: the most images shown. Default: ``REPORT_IMAGES`` (16)
        n_images: how many images were explained, when ``images`` holds the first of them
            only. Default: None (``len(images)``)
        traversal_steps: images per traversal strip. Default: 6
        ig_steps: IntegratedGradients' ``n_steps``. Default: 50
        title: the page's title.

    Returns:
        The page: per image the input, the K counterfactuals (phi before and after), the K
        difference maps, IntegratedGradients, the K traversal strips; then the fit report.
    """
    n = min(len(images), max_images)
    x = images[:n]
    names = [f"image {i}" for i in range(n)] if names is None else list(names)[:n]
    cfs = explainer.counterfactuals(x) if counterfactuals is None else counterfactuals[:n]
    k = cfs.shape[1]
    phi = explainer.forward_func
    heat: Optional[Tensor] = None
    if phi is not None:
        x_scores = score_images(phi, x) if input_scores is None else input_scores[:n]
        cf_scores = (
            score_images(phi, cfs.flatten(0, 1)).view(n, k)
            if counterfactual_scores is None
            else counterfactual_scores[:n]
        )
        alphas = explainer.traversal_alphas(x, steps=traversal_steps)
        # A black box has no gradient: its heatmap is the surrogate's fit distilled.
        differentiable = getattr(explainer, "surrogate_", None) or phi
        heat = IntegratedGradients(differentiable).attribute(
            x, n_steps=ig_steps, internal_batch_size=256
        )
    else:
        alphas = torch.linspace(1.0, 0.0, traversal_steps)[None, :].expand(n, -1)
    strips = [explainer.traverse(x, concept=c, alphas=alphas) for c in range(k)]
    strip_scores = [
        None if phi is None else score_images(phi, s.flatten(0, 1)).view(s.shape[:2])
        for s in strips
    ]
    body: List[str] = []
    for i in range(n):
        caption = "input" if phi is None else f"input {_phi(x_scores[i])}"
        panels = [_image(x[i], caption, "input")]
        for c in range(k):
            caption = f"concept {c}"
            if phi is not None:
                caption += f" phi {float(x_scores[i]):.3f} -> {float(cf_scores[i, c]):.3f}"
            raised = [] if flags is None else list(flags[i][c])
            if raised:
                caption += " FLAGGED: " + ", ".join(raised)
            kind = "counterfactual flagged" if raised else "counterfactual"
            panels.append(_image(cfs[i, c], caption, kind))
        for c in range(k):
            signed, bound = difference_map(x[i] - cfs[i, c])
            uri = _png(signed, cmap=DIFFERENCE_CMAP, vmin=-bound, vmax=bound)
            panels.append(_figure(uri, f"x - cf (concept {c})", "difference"))
        if heat is not None:
            uri = _png(heatmap_map(heat[i]), cmap=HEATMAP_CMAP)
            caption = "IntegratedGradients"
            if getattr(explainer, "surrogate_", None) is not None:
                caption += " (of the surrogate)"
            panels.append(_figure(uri, caption, "heatmap"))
        rows = []
        for c, (strip, scores) in enumerate(zip(strips, strip_scores)):
            cells = [
                _image(
                    strip[i, a],
                    f"alpha {float(alphas[i, a]):.2f}"
                    + ("" if scores is None else f", {_phi(scores[i, a])}"),
                    "traversal",
                )
                for a in range(strip.shape[1])
            ]
            rows.append(f'<h4>concept {c}</h4><div class="row strip">{"".join(cells)}</div>')
        body.append(
            f'<section class="image" id="image-{i}"><h2>{escape(str(names[i]))}</h2>'
            f'<div class="row">{"".join(panels)}</div><h3>Traversals</h3>{"".join(rows)}'
            "</section>"
        )
    note = (
        "phi is the detector's anomaly score (0 normal, 1 anomalous); a counterfactual's "
        "caption reads phi before -> after. Difference maps: input minus counterfactual "
        "summed over channels (red: the input has more). IntegratedGradients: Captum's, on "
        "phi from a black baseline."
        if phi is not None
        else "The explainer was loaded without its detector: no phi, no IntegratedGradients, "
        "and the traversals run at fixed target scores (pass the detector to show them)."
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<h1>{escape(title)}</h1><p class="note">{escape(note)} '
        f"{n} of {len(images) if n_images is None else n_images} images; "
        f"captum_cfx {escape(__version__)}.</p>"
        + "".join(body)
        + fit_report_html(getattr(explainer, "fit_report_", {}) or {})
        + "</body></html>\n"
    )


def write_report(path: Union[str, Path], explainer: Any, images: Tensor, **kwargs: Any) -> Path:
    """Write :func:`build_report`'s page (``kwargs`` are its arguments) to ``path``
    atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(build_report(explainer, images, **kwargs), path)
    return path
