"""Grad-CAM (Selvaraju et al., 2017) at conv5: which part of the image made the class.

The map is ``ReLU(sum_k alpha_k A_k)`` where ``A_k`` are conv5's maps after their ReLU
and ``alpha_k`` the spatial mean of the class score's gradient with respect to ``A_k``;
it is upsampled to the input and scaled to [0, 1].
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..engine.visuals import new_figure, plain, save_figure
from ..errors import AlexNetError


class ExplainError(AlexNetError):
    """A model Grad-CAM cannot look into."""


@dataclass
class Explanation:
    cam: np.ndarray  # (H, W) in [0, 1], the network input's size
    label: int  # the class explained (the top-1 unless one was asked for)
    probability: float  # softmax probability of ``label``
    score: float  # the model's raw output for ``label`` (a logit, or an SVM's decision score)


def conv_backbone(model: torch.nn.Module) -> torch.nn.Module:
    """The AlexNet whose conv5 Grad-CAM reads: the model, or a classifier's backbone."""
    net = getattr(model, "backbone", model)
    if not hasattr(net, "relu5"):
        raise ExplainError(f"Grad-CAM needs an AlexNet with a conv5 layer; {type(model).__name__} has none")
    return net


def grad_cam(model: torch.nn.Module, x: torch.Tensor, label: int | None = None) -> Explanation:
    """Grad-CAM of one preprocessed image ``x`` ``(3, H, W)`` for ``label`` (default: top-1)."""
    tap = conv_backbone(model).relu5  # conv5's output after its ReLU (inplace: the value later layers read)
    maps: list[torch.Tensor] = []
    handle = tap.register_forward_hook(lambda _m, _i, out: maps.append(out))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(x[None].detach().requires_grad_(True)).float()
            label = int(logits.argmax(1)) if label is None else label
            grads = torch.autograd.grad(logits[0, label], maps[0])[0]  # (1, C, h, w)
    finally:
        handle.remove()
        model.train(was_training)
    weights = grads.mean(dim=(2, 3), keepdim=True)  # alpha_k
    cam = F.relu((weights * maps[0].detach()).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam / cam.max() if cam.max() > 0 else cam
    probability = float(logits.detach().softmax(1)[0, label])
    return Explanation(cam.cpu().numpy(), label, probability, float(logits.detach()[0, label]))


def overlay_figure(image: Image.Image, cam: np.ndarray, caption: str):
    """The image (as the network saw it) beside the same image under the heat map."""
    fig = new_figure(7, 3.9)
    ax_img, ax_cam = fig.subplots(1, 2)
    ax_img.imshow(image)
    ax_img.set_title("input (centre crop)", fontsize=9)
    ax_cam.imshow(image)
    shown = ax_cam.imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1,
                          extent=(-0.5, image.width - 0.5, image.height - 0.5, -0.5))
    ax_cam.set_title("Grad-CAM at conv5", fontsize=9)
    for ax in (ax_img, ax_cam):
        ax.set_axis_off()
    fig.colorbar(shown, ax=ax_cam, shrink=0.8)
    fig.suptitle(plain(caption), fontsize=11)
    return fig


def network_view(image: Image.Image, size: int, resize: int) -> Image.Image:
    """The centre crop the network sees, as a picture: shorter side to ``resize``, crop ``size``."""
    from torchvision.transforms import v2 as T

    from ..data.transforms import central_part

    return T.Compose([central_part, T.Resize(resize), T.CenterCrop(size)])(image.convert("RGB"))


def explain_files(predictor, paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> list[tuple[str, Path | str]]:
    """One PNG per image in ``out_dir``: Grad-CAM of the top-1 class, titled with its name and
    probability. Returns (image, written PNG or the reason it could not be read) pairs."""
    from PIL import UnidentifiedImageError

    from ..data.images import load_rgb
    from ..data.transforms import eval_transform

    conv_backbone(predictor.model)  # refuse before writing anything
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    transform = eval_transform(predictor.preprocess)
    p = predictor.preprocess
    written: list[tuple[str, Path | str]] = []
    used: set[str] = set()
    for path in paths:
        try:
            image = load_rgb(path)
        except (OSError, UnidentifiedImageError, ValueError, AlexNetError) as e:
            written.append((str(path), f"cannot read image: {getattr(e, 'reason', None) or e}"))
            continue
        ex = grad_cam(predictor.model, transform(image).to(predictor.device))
        name = predictor.class_names[ex.label]
        # An SVM's outputs are scores, not logits: its softmax would be no probability.
        value = f"{ex.probability:.1%}" if predictor.outputs == "probability" else f"score {ex.score:+.3f}"
        fig = overlay_figure(network_view(image, p.crop, p.resize), ex.cam, f"{name}  {value}")
        written.append((str(path), save_figure(fig, out / _png_name(Path(path), used))))
    return written


def _png_name(path: Path, used: set[str]) -> str:
    """``NAME.gradcam.png``, numbered when two inputs share a file name."""
    stem, n = path.stem, 1
    name = f"{stem}.gradcam.png"
    while name in used:
        n += 1
        name = f"{stem}-{n}.gradcam.png"
    used.add(name)
    return name
