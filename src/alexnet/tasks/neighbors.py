"""Nearest neighbours in feature space, drawn as the paper's Figure 4.

Section 6.1 of the paper: "If two images produce feature activation vectors with a small
Euclidean separation, we can say that the higher levels of the neural network consider
them to be similar"; Figure 4 shows, for a test image, the training images whose last
hidden layer (fc7, 4096 values) is nearest to its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data import DataError, open_source
from ..data.images import load_rgb
from ..data.transforms import eval_transform
from ..errors import AlexNetError
from ..models.pretrained import Pretrained
from .features import extract, layer_features, split_paths


@dataclass
class Neighbor:
    index: int  # in the split
    path: str  # the file, or the index for in-memory sources
    label: str
    distance: float  # Euclidean, in the layer's activation space


@dataclass
class Neighbors:
    query: str
    query_image: Image.Image
    neighbors: list[Neighbor]
    images: list[Image.Image]  # of the neighbours, in order
    layer: str
    split: str


@dataclass
class NeighborSearch:
    """What ``alexnet neighbors`` looks for, and where."""

    data: str  # 'digits', a CIFAR pickle folder or an image folder, as for train
    query: str  # the image file to find neighbours of
    k: int = 8  # neighbours to return
    split: str = "train"  # where to search: train, val or test
    layer: str = "fc7"  # the activation space (a tap of the model interface)
    val_split: float = 0.1  # held out for val when the data has no val/, as in training
    batch_size: int = 64
    workers: int = 2  # DataLoader worker processes


@torch.no_grad()
def find_neighbors(pretrained: Pretrained, search: NeighborSearch,
                   device: torch.device = torch.device("cpu")) -> Neighbors:
    """The ``search.k`` images of ``search.split`` nearest to ``search.query`` in ``search.layer`` space."""
    query, split, layer = search.query, search.split, search.layer
    try:
        query_image = load_rgb(query)
    except (OSError, ValueError, AlexNetError) as e:
        raise AlexNetError(f"--query {query}: cannot read image: {getattr(e, 'reason', None) or e}") from None
    splits = open_source(search.data, pretrained.preprocess.crop, search.val_split, preprocess=pretrained.preprocess)
    dataset = splits.get(split)
    model = pretrained.model.to(device).eval()
    feats, labels, kept = extract(model, dataset, pretrained.preprocess, layer, device, search.batch_size,
                                  search.workers, desc=f"{split} {layer}")
    q = layer_features(model, eval_transform(pretrained.preprocess)(query_image)[None].to(device), layer)
    distances = np.linalg.norm(feats - q.float().cpu().numpy(), axis=1)
    order = np.argsort(distances, kind="stable")[:search.k]
    paths = split_paths(dataset)
    names = splits.display_names or splits.class_names  # ImageNet wnid folders: their readable names
    found = [Neighbor(kept[j], paths[kept[j]], names[labels[j]], float(distances[j])) for j in order]
    images = []
    for n in found:
        item = dataset[n.index]  # (PIL image, label): in-memory sources have no file to open
        if not isinstance(item, tuple) or len(item) != 2:
            raise DataError(f"{n.path}: could not be read again to draw it")
        images.append(item[0])
    return Neighbors(query, query_image, found, images, layer, split)


def draw(result: Neighbors, path: str | os.PathLike, thumb: float = 1.9) -> Path:
    """The query, then its neighbours nearest first, each titled with its distance and class."""
    from ..engine.visuals import new_figure, save_figure

    n = len(result.neighbors) + 1
    cols = min(n, 9)  # the query and 8 neighbours in one row, as in the paper's figure
    rows = -(-n // cols)
    fig = new_figure(thumb * cols, (thumb + 0.5) * rows + 0.3)  # its own canvas: a notebook's backend is left alone
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(result.query_image.convert("RGB"))
    axes.flat[0].set_title(f"query\n{Path(result.query).name}", fontsize=8, color="tab:red")
    for ax, nb, image in zip(axes.flat[1:], result.neighbors, result.images):
        ax.imshow(image.convert("RGB"))  # grey digits would otherwise get a colour map
        ax.set_title(f"{nb.label}\nd = {nb.distance:.3g}", fontsize=8)
    fig.suptitle(f"nearest {result.split} images in {result.layer} space (Euclidean)", fontsize=10)
    return save_figure(fig, path)
