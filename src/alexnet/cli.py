"""``alexnet`` command line: one subcommand per task, each a thin call into the library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import AlexNetError
from .models import TAPS, list_models, model_info

EPILOG = "Run `alexnet COMMAND --help` for the options of a command."
WEIGHTS_HELP = (
    "'torchvision' (its ImageNet weights, from the torch hub cache or downloaded), a checkpoint of this "
    "project, a state dict .pth (e.g. torchvision's alexnet-owt-7be5be79.pth) or a .safetensors file; "
    "read without running pickled code"
)


def _at_least(low: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in its messages
    return parse


DEVICES = ("auto", "cpu", "cuda", "mps")


def _add_loading_options(p: argparse.ArgumentParser, batch_size: int) -> None:
    """--batch-size, --workers and --device, shared by the commands that run a model over data."""
    p.add_argument("--batch-size", type=_at_least(1), default=batch_size, help=f"(default: {batch_size})")
    p.add_argument("--workers", type=_at_least(0), default=2, help="DataLoader worker processes (default: 2)")
    p.add_argument("--device", default="auto", choices=DEVICES, help="(default: auto)")


def _models_help() -> str:
    return "; ".join(f"{n}: {model_info(n).summary}" for n in list_models())


def cmd_models(args: argparse.Namespace) -> int:
    width = max(map(len, list_models()))
    for name in list_models():
        info = model_info(name)
        print(f"{name:<{width}}  {info.image_size:>3}px  {info.summary}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from .models import get_model, parse_model_options
    from .tasks.summary import format_summary, summarize

    model = get_model(args.arch, num_classes=args.num_classes, **parse_model_options(args.model_option))
    size = args.image_size or model_info(args.arch).image_size
    if size < model.min_input_size:
        raise AlexNetError(f"--image-size {size} is below {args.arch}'s minimum of {model.min_input_size}")
    title = f"{args.arch}: input (N, 3, {size}, {size}), {args.num_classes} classes"
    print(format_summary(summarize(model, size), title))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .engine.config import TrainConfig, apply_recipe, from_namespace
    from .engine.train import RunInterrupted, fit

    cfg, explicit = from_namespace(TrainConfig, args)
    try:
        fit(apply_recipe(cfg, explicit), explicit)
    except RunInterrupted:
        return 130  # the conventional status of a program stopped by Ctrl-C
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .engine.config import TrainConfig, apply_recipe, from_namespace
    from .engine.train import RunInterrupted, fit

    cfg, explicit = from_namespace(TrainConfig, args)
    if not cfg.weights and not cfg.resume:
        raise AlexNetError("finetune needs --weights: 'torchvision', a checkpoint, a .pth or a .safetensors file")
    if cfg.recipe is None and not cfg.resume:  # the fine-tuning defaults, under whatever the user set
        cfg = replace(cfg, recipe="finetune")
    try:
        fit(apply_recipe(cfg, explicit), explicit)
    except RunInterrupted:
        return 130
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .engine.device import resolve_device
    from .tasks.evaluate import evaluate_checkpoint, evaluate_pretrained

    source = _one_model_source(args, ("checkpoint", "weights"))
    if args.weights:
        ev = evaluate_pretrained(args.weights, args.data, resolve_device(args.device), args.split, args.batch_size,
                                 args.workers, ten_crop=args.ten_crop)
    else:
        ev = evaluate_checkpoint(args.checkpoint, args.data, resolve_device(args.device), args.split, args.batch_size,
                                 args.workers, ten_crop=args.ten_crop)
    r = ev.result
    print(f"{source} on {ev.data} [{ev.split}, {r.images} images, {ev.views}]")
    print(f"  loss   {r.loss:.4f}")
    print(f"  top-1  accuracy {r.top1:.2%}  error {1 - r.top1:.2%}")
    print(f"  top-5  accuracy {r.top5:.2%}  error {1 - r.top5:.2%}")
    if r.skipped:
        print(f"  ({r.skipped} unreadable images skipped)")
    print(f"  (ran with {ev.backend})")
    if args.json:
        report = {("weights" if args.weights else "checkpoint"): source, "data": ev.data, "split": ev.split,
                  "views": ev.views, "backend": ev.backend, **r.as_dict()}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"  written to {args.json}")
    return 0


def _one_model_source(args: argparse.Namespace, options: tuple[str, ...]) -> str:
    """The one of ``--checkpoint``/``--weights``/``--classifier`` that was given."""
    given = [o for o in options if getattr(args, o, None)]
    if len(given) != 1:
        flags = " or ".join(f"--{o}" for o in options)
        raise AlexNetError(f"give one of {flags}" + (f", not {len(given)}" if given else ""))
    return str(getattr(args, given[0]))


def cmd_predict(args: argparse.Namespace) -> int:
    from .engine.device import resolve_device
    from .tasks.predict import Predictor, gather_images

    source = _one_model_source(args, ("checkpoint", "weights", "classifier"))
    device = resolve_device(args.device)
    if args.classifier:
        predictor = Predictor.from_classifier(args.classifier, device)
    elif args.weights:
        predictor = Predictor.from_weights(args.weights, device)
    else:
        predictor = Predictor.from_checkpoint(args.checkpoint, device)
    paths, missing = gather_images(args.images)
    predictions = missing + predictor.predict(paths, top_k=args.top_k, ten_crop=args.ten_crop)
    failures = [p for p in predictions if p.error]
    for p in failures:
        print(f"{p.path}: {p.error}", file=sys.stderr)
    if args.json:
        print(json.dumps({
            "model": predictor.description or source, "views": "ten-crop" if args.ten_crop else "centre crop",
            "outputs": predictor.outputs, "predictions": [p.as_dict(predictor.outputs) for p in predictions],
        }, indent=2))
        return 1 if failures else 0
    for p in predictions:
        if p.error:
            continue
        print(p.path)
        for name, value in p.top:
            print(f"  {value:7.2%}  {name}" if predictor.outputs == "probability" else f"  {value:+7.3f}  {name}")
    return 1 if failures else 0


def cmd_features(args: argparse.Namespace) -> int:
    from .engine.device import resolve_device
    from .models.pretrained import load_pretrained
    from .tasks import classifier
    from .tasks.features import extract_splits, save_features

    if args.classifier_out and not args.classifier:
        raise AlexNetError("--classifier-out needs --classifier logreg|svm|mlp")
    pretrained = load_pretrained(args.weights)
    print(f"weights: {pretrained.description}")
    features = extract_splits(pretrained, args.data, args.layer, resolve_device(args.device), args.val_split,
                              args.batch_size, args.workers)
    out = save_features(args.out, features)
    print(f"data: {features.description}")
    shapes = ", ".join(f"{s} {features.split(s)[0].shape[0]}x{features.split(s)[0].shape[1]}" for s in features.splits)
    print(f"{args.layer} features ({shapes}) written to {out}")
    if not args.classifier:
        return 0
    fitted = classifier.fit(features, args.classifier, C=args.C, seed=args.seed)
    for note in fitted.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{args.classifier} on {args.layer}: " + ", ".join(
        f"{k.removesuffix('_accuracy')} accuracy {v:.2%}" for k, v in fitted.metrics.items()))
    path = classifier.save(args.classifier_out or out.with_name(f"{out.stem}.{args.classifier}.safetensors"),
                           classifier.package(fitted, pretrained, args.layer))
    print(f"classifier written to {path}; use it with: alexnet predict --classifier {path} IMAGE...")
    return 0


def cmd_neighbors(args: argparse.Namespace) -> int:
    from .engine.device import resolve_device
    from .models.pretrained import load_pretrained
    from .tasks.neighbors import draw, find_neighbors

    pretrained = load_pretrained(args.weights)
    result = find_neighbors(pretrained, args.data, args.query, args.k, args.split, args.layer,
                            resolve_device(args.device), args.val_split, args.batch_size, args.workers)
    print(f"{args.query}: nearest {args.split} images in {args.layer} space ({pretrained.description})")
    for n in result.neighbors:
        print(f"  {n.distance:10.4g}  {n.label:<20}  {n.path}")
    print(f"written to {draw(result, args.out)}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .engine.device import resolve_device
    from .tasks.bench import bench_arch, format_table, header_line

    device = resolve_device(args.device)
    timing = {"rounds": 2, "min_seconds": 0.0} if args.quick else {"rounds": args.rounds, "min_seconds": 1.0}
    print(f"alexnet bench on {device}: {header_line(device)}", flush=True)
    results = []
    for arch in args.arch:
        print(f"  measuring {arch} ...", flush=True)
        results.append(bench_arch(arch, device, args.batch_size, args.image_size, **timing))
    print(format_table(results))
    if args.json:
        report = {"device": str(device), "host": header_line(device), "results": [r.to_dict() for r in results]}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"written to {args.json}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .tasks.plot import draw_curves, read_metrics

    rows = read_metrics(args.run_dir)
    if not rows:
        raise AlexNetError(f"{args.run_dir}/metrics.csv has no finished epoch yet")
    print(draw_curves(rows, Path(args.run_dir) / "curves.png", title=str(args.run_dir)))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from .tasks.prepare import cifar_to_folders, digits_to_folders

    if args.dataset == "cache":
        from .tasks.prepare import cache_data

        if not args.data:
            raise AlexNetError("prepare cache needs --data DIR (the folder train will use)")
        cache_data(args.data, args.arch, args.image_size, args.val_split, args.cache_dir, args.workers,
                   args.max_image_pixels)
        return 0
    if args.dataset == "imagenet-val":
        from .tasks.imagenet import file_val_images

        if not (args.val_dir and args.labels):
            raise AlexNetError("prepare imagenet-val needs --val-dir DIR and --labels FILE")
        report = file_val_images(args.val_dir, args.labels, args.link, args.classes)
        print(f"{args.val_dir}: {report}")
        return 0
    if not args.to_folders:
        raise AlexNetError(f"prepare {args.dataset} needs --to-folders DST")
    if args.dataset == "digits":
        if args.source:
            raise AlexNetError("prepare digits takes no SRC: the digits ship with scikit-learn")
        counts = digits_to_folders(args.to_folders)
    else:
        if not args.source:
            raise AlexNetError(f"prepare {args.dataset} needs SRC, the folder of the original python pickles")
        counts = cifar_to_folders(args.source, args.to_folders)
    print(f"wrote {args.dataset} to {args.to_folders}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .engine.config import TrainConfig, add_arguments

    parser = argparse.ArgumentParser(
        prog="alexnet",
        description="AlexNet (Krizhevsky et al., 2012): the paper's network and recipe, and the workflow around it.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"alexnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("models", help="list the model variants", description="List the registered AlexNet variants.")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "summary",
        help="layer table with output shapes, parameters and multiply-accumulates",
        description="Print each layer's output shape, parameters and multiply-accumulates, then the totals, "
        "counting BatchNorm running statistics as non-trainable parameters as Keras does.",
    )
    p.add_argument("--arch", required=True, choices=list_models(), help=_models_help())
    p.add_argument("--image-size", type=int, help="input side in pixels (default: the variant's own)")
    p.add_argument("--num-classes", type=int, default=1000, help="classes of fc8 (default: 1000)")
    p.add_argument("--model-option", action="append", metavar="KEY=VALUE", help="as for train, e.g. bn_all=true")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser(
        "train",
        help="train a model from scratch",
        description="Train an AlexNet variant with SGD. The run folder gets config.json, metrics.csv, curves.png, "
        "tb/ (TensorBoard), checkpoints/last.pt (every epoch, and every --save-every-steps) and best.pt (best "
        "validation top-1); checkpoints carry everything evaluate and predict need. Ctrl-C saves and stops; "
        "--resume continues exactly where the run stopped, also after kill -9. Under `torchrun --nproc-per-node N "
        "-m alexnet train ...` the same command trains with DistributedDataParallel.",
    )
    add_arguments(p, TrainConfig)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "finetune",
        help="fine-tune pretrained weights on your classes",
        description="Train from --weights (torchvision's ImageNet weights, a checkpoint, a .pth or .safetensors "
        "file): fc8 is replaced for the data's classes, the weights' preprocessing is kept, and the defaults are "
        "lr 0.001 with the pretrained layers at 0.1 x that (--backbone-lr-scale). --freeze keeps layers fixed; "
        "--unfreeze-schedule fc8:3,fc7:3,fc6:3,conv5:3 trains the last layer first, then unfreezes one more layer "
        "down each round. Everything else is `alexnet train`: the run folder, logging, --resume, torchrun.",
    )
    add_arguments(p, TrainConfig)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "evaluate",
        help="loss, top-1 and top-5 accuracy and error of a checkpoint",
        description="Evaluate a checkpoint with the preprocessing it was trained with (centre crop), or "
        "pretrained weights (--weights) with theirs. The data's classes must be the model's: for torchvision's "
        "ImageNet weights, the 1000 ImageNet wnid class folders.",
    )
    p.add_argument("--checkpoint", help="a .pt file written by `alexnet train`")
    p.add_argument("--weights", metavar="W", help=WEIGHTS_HELP)
    p.add_argument("--data", required=True, help="'digits' or a folder, as for train")
    p.add_argument("--split", choices=("train", "val", "test"), help="default: test if the source has one, else val")
    p.add_argument("--ten-crop", action="store_true",
                   help="average the softmax of 10 views (4 corner crops, the centre crop and their mirrors), "
                   "as the paper tested; default: the centre crop alone")
    p.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    _add_loading_options(p, batch_size=256)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "predict",
        help="top-k classes for image files, folders or glob patterns",
        description="Print the top-k class names and probabilities for each image, from one of: a checkpoint, "
        "pretrained weights (`--weights torchvision` names ImageNet's 1000 classes), or a classifier written by "
        "`alexnet features --classifier` (an SVM prints decision scores instead of probabilities). Folders are "
        "searched recursively for image files; glob patterns are expanded here, so quote them. An unreadable "
        "image is reported on stderr and the rest are still predicted (exit status 1).",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, folders or glob patterns ('photos/**/*.jpg')")
    p.add_argument("--checkpoint", help="a .pt file written by `alexnet train` (or a classifier file)")
    p.add_argument("--weights", metavar="W", help=WEIGHTS_HELP)
    p.add_argument("--classifier", metavar="FILE",
                   help="a .safetensors classifier written by `alexnet features --classifier`; it names the weights "
                   "and layer it was fitted on")
    p.add_argument("--top-k", type=_at_least(1), default=5, help="classes to show per image (default: 5)")
    p.add_argument("--ten-crop", action="store_true",
                   help="average over 10 views (4 corner crops, the centre crop and their mirrors), as the paper "
                   "tested; default: the centre crop alone")
    p.add_argument("--json", action="store_true", help="print one JSON document (model, predictions, errors) instead")
    p.add_argument("--device", default="auto", choices=DEVICES, help="(default: auto)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "features",
        help="AlexNet activations of every image of a data source, saved as .npz; optionally fit a classifier",
        description="Run every split of --data through pretrained weights and save the activations of --layer "
        "(flattened: 4096 per image for fc6/fc7, 9216 for pool5 at 224) with labels, file paths and class names "
        "to an .npz file (keys train_features, train_labels, train_paths, val_..., test_..., class_names, layer). "
        "Images get the weights' own eval preprocessing. With --classifier, fit a scikit-learn classifier "
        "(StandardScaler first) on the training features, report validation (and test) accuracy, and save it "
        "for `alexnet predict --classifier FILE`. The classifier file holds arrays and text only (safetensors), "
        "so loading it runs no code.",
    )
    p.add_argument("--weights", required=True, metavar="W", help=WEIGHTS_HELP)
    p.add_argument("--data", required=True, help="'digits', a CIFAR pickle folder or an image folder, as for train")
    p.add_argument("--layer", default="fc7", choices=TAPS, metavar="LAYER",
                   help=f"the activations to save, after its ReLU: {', '.join(TAPS)} (default: fc7)")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="the features file to write")
    p.add_argument("--classifier", choices=("logreg", "svm", "mlp"),
                   help="also fit: logreg (multinomial logistic regression), svm (LinearSVC: scores, not "
                   "probabilities) or mlp (one hidden layer of 256 ReLU units)")
    p.add_argument("--classifier-out", metavar="FILE",
                   help="where to save the classifier (default: beside --out, as NAME.KIND.safetensors)")
    p.add_argument("--C", type=float, default=1.0,
                   help="inverse regularisation strength for logreg and svm (default: 1.0)")
    p.add_argument("--seed", type=int, default=0, help="random state of svm and mlp (default: 0)")
    p.add_argument("--val-split", type=float, default=0.1,
                   help="fraction held out for val when the data has no val/ (default: 0.1, the split train uses)")
    _add_loading_options(p, batch_size=64)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser(
        "neighbors",
        help="the images nearest to a query in fc7 space, drawn as a picture (the paper's Figure 4)",
        description="Find the -k images of a split of --data whose activations (fc7 by default, the paper's "
        "4096-dimensional last hidden layer) are nearest to the query image's by Euclidean distance, print them, "
        "and draw the query followed by its neighbours, each with its distance and class, to --out.",
    )
    p.add_argument("--weights", required=True, metavar="W", help=WEIGHTS_HELP)
    p.add_argument("--data", required=True, help="'digits', a CIFAR pickle folder or an image folder, as for train")
    p.add_argument("--query", required=True, metavar="IMAGE", help="the image to find neighbours of")
    p.add_argument("-k", type=_at_least(1), default=8, help="neighbours to show (default: 8)")
    p.add_argument("--out", required=True, metavar="FILE.png", help="the picture to write")
    p.add_argument("--split", default="train", choices=("train", "val", "test"),
                   help="where to search (default: train)")
    p.add_argument("--layer", default="fc7", choices=TAPS, metavar="LAYER", help="activation space (default: fc7)")
    p.add_argument("--val-split", type=float, default=0.1, help="as for features (default: 0.1)")
    _add_loading_options(p, batch_size=64)
    p.set_defaults(func=cmd_neighbors)

    p = sub.add_parser(
        "bench",
        help="images/s of training and inference on this machine: plain eager vs the best settings",
        description="Measure the model alone (synthetic batches already on the device, no data loading): "
        "images/s of a training step (forward, backward, SGD step) and of inference, for plain eager fp32 "
        "PyTorch and for this project's best settings on the device (CPU: channels_last for training, ONNX "
        "Runtime for inference when onnxruntime is installed; CUDA: bf16 autocast, channels_last, "
        "torch.compile, fused SGD). The two are timed interleaved in one process after warm-up; the figures "
        "are medians over rounds and the ratio is the median of the per-round ratios best/eager.",
    )
    p.add_argument("--arch", nargs="+", default=["alexnet", "alexnet_cifar"], choices=list_models(), metavar="NAME",
                   help="variants to measure (default: alexnet alexnet_cifar); " + _models_help())
    p.add_argument("--batch-size", type=_at_least(1), help="(default: 32, or 256 for variants of 64 px or less)")
    p.add_argument("--image-size", type=_at_least(1), help="input side in pixels (default: the variant's own)")
    p.add_argument("--rounds", type=_at_least(1), default=5, help="timed rounds of each measurement (default: 5)")
    p.add_argument("--quick", action="store_true", help="2 rounds of single steps: a smoke test, not a measurement")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="(default: auto)")
    p.add_argument("--json", metavar="FILE", help="also write every figure, per round, to FILE as JSON")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "plot",
        help="redraw a run's curves.png from its metrics.csv",
        description="Redraw RUN_DIR/curves.png (loss and accuracy, train and validation, per epoch) from RUN_DIR/metrics.csv.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `alexnet train`")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser(
        "prepare",
        help="write datasets out as class folders; file ImageNet's validation images",
        description="digits: write the built-in digits as DST/{train,val,test}/<class>/*.png with the split "
        "`--data digits` uses. cifar10, cifar100: write the original python pickle folder SRC "
        "(cifar-10-batches-py, cifar-100-python) as DST/{train,test}/<class>/*.png. imagenet-val: move (or "
        "--link) the 50,000 flat ILSVRC2012 validation images into <wnid>/ folders, from the Kaggle "
        "LOC_val_solution.csv or Caffe's val.txt; running it again changes nothing. cache: decode the images "
        "of --data once into the uint8 cache that `train --cache` reads (with the same --arch, --image-size "
        "and --val-split as training); up to date caches are left alone, stale ones rebuilt.",
    )
    p.add_argument("dataset", choices=("digits", "cifar10", "cifar100", "imagenet-val", "cache"), help="what to prepare")
    p.add_argument("source", nargs="?", metavar="SRC", help="the pickle folder (cifar10, cifar100)")
    p.add_argument("--to-folders", metavar="DST", help="an empty or new folder (digits, cifar10, cifar100)")
    p.add_argument("--val-dir", metavar="DIR", help="imagenet-val: the flat validation folder")
    p.add_argument("--labels", metavar="FILE", help="imagenet-val: LOC_val_solution.csv or val.txt")
    p.add_argument("--classes", metavar="FILE",
                   help="imagenet-val with val.txt: imagenet_class_index.json or LOC_synset_mapping.txt giving "
                   "each index's wnid (default: the sorted folders of the train/ beside --val-dir)")
    p.add_argument("--link", action="store_true", help="imagenet-val: symlink instead of moving")
    p.add_argument("--data", metavar="DIR", help="cache: the image folder, as for train --data")
    p.add_argument("--arch", default="alexnet", choices=list_models(), help="cache: the variant training will use (default: alexnet)")
    p.add_argument("--image-size", type=_at_least(1), help="cache: the network input side training will use (default: the variant's)")
    p.add_argument("--val-split", type=float, default=0.1, help="cache: as for train, when the data has no val/ (default: 0.1)")
    p.add_argument("--cache-dir", metavar="DIR", help="cache: as for train (default: $ALEXNET_CACHE, else ~/.cache/alexnet/images)")
    p.add_argument("--workers", type=_at_least(0), default=2, help="cache: decoding processes (default: 2)")
    p.add_argument("--max-image-pixels", type=_at_least(1), default=89_478_485, help="cache: larger images are left out")
    p.set_defaults(func=cmd_prepare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AlexNetError as e:
        print(f"alexnet {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"alexnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
