"""``alexnet`` command line: one subcommand per task, each a thin call into the library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import AlexNetError
from .models import list_models, model_info

EPILOG = "Run `alexnet COMMAND --help` for the options of a command."


def _at_least(low: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in its messages
    return parse


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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .engine.device import resolve_device
    from .tasks.evaluate import evaluate_checkpoint

    ev = evaluate_checkpoint(args.checkpoint, args.data, resolve_device(args.device), args.split, args.batch_size,
                             args.workers, ten_crop=args.ten_crop)
    r = ev.result
    print(f"{args.checkpoint} on {ev.data} [{ev.split}, {r.images} images, {ev.views}]")
    print(f"  loss   {r.loss:.4f}")
    print(f"  top-1  accuracy {r.top1:.2%}  error {1 - r.top1:.2%}")
    print(f"  top-5  accuracy {r.top5:.2%}  error {1 - r.top5:.2%}")
    if args.json:
        report = {"checkpoint": str(args.checkpoint), "data": ev.data, "split": ev.split, "views": ev.views, **r.as_dict()}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"  written to {args.json}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .engine.device import resolve_device
    from .tasks.predict import Predictor

    predictor = Predictor.from_checkpoint(args.checkpoint, resolve_device(args.device))
    failures = 0
    for p in predictor.predict(args.images, top_k=args.top_k):
        if p.error:
            failures += 1
            print(f"{p.path}: {p.error}", file=sys.stderr)
            continue
        print(p.path)
        for name, prob in p.top:
            print(f"  {prob:7.2%}  {name}")
    return 1 if failures else 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .tasks.plot import draw_curves, read_metrics

    rows = read_metrics(args.run_dir)
    if not rows:
        raise AlexNetError(f"{args.run_dir}/metrics.csv has no finished epoch yet")
    print(draw_curves(rows, Path(args.run_dir) / "curves.png", title=str(args.run_dir)))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from .tasks.prepare import cifar_to_folders, digits_to_folders

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
        "evaluate",
        help="loss, top-1 and top-5 accuracy and error of a checkpoint",
        description="Evaluate a checkpoint with the preprocessing it was trained with (centre crop).",
    )
    p.add_argument("--checkpoint", required=True, help="a .pt file written by `alexnet train`")
    p.add_argument("--data", required=True, help="'digits' or a folder, as for train")
    p.add_argument("--split", choices=("train", "val", "test"), help="default: test if the source has one, else val")
    p.add_argument("--ten-crop", action="store_true",
                   help="average the softmax of 10 views (4 corner crops, the centre crop and their mirrors), "
                   "as the paper tested; default: the centre crop alone")
    p.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    p.add_argument("--batch-size", type=_at_least(1), default=256, help="(default: 256)")
    p.add_argument("--workers", type=_at_least(0), default=2, help="DataLoader worker processes (default: 2)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="(default: auto)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "predict",
        help="top-k classes for image files",
        description="Print the top-k class names and probabilities for each image. "
        "An unreadable image is reported and the rest are still predicted (exit status 1).",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--checkpoint", required=True, help="a .pt file written by `alexnet train`")
    p.add_argument("--top-k", type=_at_least(1), default=5, help="classes to show per image (default: 5)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="(default: auto)")
    p.set_defaults(func=cmd_predict)

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
        "LOC_val_solution.csv or Caffe's val.txt; running it again changes nothing.",
    )
    p.add_argument("dataset", choices=("digits", "cifar10", "cifar100", "imagenet-val"), help="what to prepare")
    p.add_argument("source", nargs="?", metavar="SRC", help="the pickle folder (cifar10, cifar100)")
    p.add_argument("--to-folders", metavar="DST", help="an empty or new folder (digits, cifar10, cifar100)")
    p.add_argument("--val-dir", metavar="DIR", help="imagenet-val: the flat validation folder")
    p.add_argument("--labels", metavar="FILE", help="imagenet-val: LOC_val_solution.csv or val.txt")
    p.add_argument("--classes", metavar="FILE",
                   help="imagenet-val with val.txt: imagenet_class_index.json or LOC_synset_mapping.txt giving "
                   "each index's wnid (default: the sorted folders of the train/ beside --val-dir)")
    p.add_argument("--link", action="store_true", help="imagenet-val: symlink instead of moving")
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
