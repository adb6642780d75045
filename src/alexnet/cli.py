"""``alexnet`` command line: one subcommand per task, each a thin call into the library."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import AlexNetError, AlexNetWarning, printable
from .models import TAPS, list_models, model_info

EPILOG = "Run `alexnet COMMAND --help` for the options of a command."
WEIGHTS_HELP = (
    "'torchvision' (its ImageNet weights, from the torch hub cache or downloaded), a checkpoint of this "
    "project, an export of `alexnet export` (.safetensors, .onnx, TorchScript .pt, hf folder), a state dict .pth "
    "(e.g. torchvision's alexnet-owt-7be5be79.pth) or a .safetensors file; read without running pickled code"
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
    import torch

    from .engine.memory import check_image_size

    check_image_size(model.config, size, 1, torch.device("cpu"), training=False)  # summarize runs one image
    title = f"{args.arch}: input (N, 3, {size}, {size}), {args.num_classes} classes"
    print(format_summary(summarize(model, size), title))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .engine.config import from_args

    cfg, explicit = from_args(args)
    return _fit(cfg, explicit, args)


def cmd_finetune(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .engine.config import from_args

    cfg, explicit = from_args(args)
    if not cfg.weights and not cfg.resume:
        raise AlexNetError("finetune needs --weights: 'torchvision', a checkpoint, a .pth or a .safetensors file")
    if cfg.recipe is None and not cfg.resume:  # the fine-tuning defaults, under whatever the user set
        cfg = replace(cfg, recipe="finetune")
    return _fit(cfg, explicit, args)


def _fit(cfg, explicit: set[str], args: argparse.Namespace) -> int:
    from .engine.config import apply_recipe
    from .engine.train import RunInterrupted, fit

    try:
        fit(apply_recipe(cfg, explicit), explicit, argv=getattr(args, "argv", None))
    except RunInterrupted as e:
        return e.exit_status  # 130 after Ctrl-C, 143 after SIGTERM, as the shell reports a killed program
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .engine.device import resolve_device
    from .tasks.evaluate import evaluate_checkpoint, evaluate_pretrained

    from .outputs import check_output, json_with, write_text

    source = _one_model_source(args, ("checkpoint", "weights"))
    if args.json:
        check_output(args.json, "an evaluation report", json_with("split", "top1_acc"), args.overwrite)

    def skipped(problem: str) -> None:
        print(f"skipped unreadable image: {printable(problem)}", file=sys.stderr, flush=True)

    how = dict(split=args.split, batch_size=args.batch_size, workers=args.workers, ten_crop=args.ten_crop,
               tta=args.tta, on_skipped=skipped)
    evaluate = evaluate_pretrained if args.weights else evaluate_checkpoint
    ev = evaluate(args.weights or args.checkpoint, args.data, resolve_device(args.device), **how)
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
                  "views": ev.views, "backend": ev.backend, **r.as_dict(), "skipped_files": ev.skipped_files}
        write_text(args.json, json.dumps(report, indent=2) + "\n")
        print(f"  written to {args.json}")
    if args.report:
        from .tasks.report import evaluation_report

        folder = evaluation_report(args.report, args.data, ev.split, resolve_device(args.device), checkpoint=args.checkpoint,
                                   weights=args.weights, ten_crop=args.ten_crop, batch_size=args.batch_size,
                                   workers=args.workers)
        print(f"  confusion.png, per_class.csv, per_class.png, mistakes.png, unsure_correct.png written to {folder}")
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
    predictions = missing + predictor.predict(paths, top_k=args.top_k, ten_crop=args.ten_crop, tta=args.tta)
    failures = [p for p in predictions if p.error]
    for p in failures:
        print(f"{printable(p.path)}: {printable(p.error)}", file=sys.stderr)
    if args.explain:
        readable = [p.path for p in predictions if not p.error]
        written = [w for _, w in predictor.explain(readable, args.explain) if isinstance(w, Path)]
        print(f"{len(written)} Grad-CAM pictures written to {args.explain}", file=sys.stderr)
    if args.json:
        print(json.dumps({
            "model": predictor.description or source,
            "views": "ten-crop" if args.ten_crop else "centre crop + mirror" if args.tta else "centre crop",
            "outputs": predictor.outputs, "predictions": [p.as_dict(predictor.outputs) for p in predictions],
        }, indent=2))
        return 1 if failures else 0
    for p in predictions:
        if p.error:
            continue
        print(printable(p.path))  # a file name may hold terminal escape codes
        for name, value in p.top:
            name = printable(name)
            print(f"  {value:7.2%}  {name}" if predictor.outputs == "probability" else f"  {value:+7.3f}  {name}")
    return 1 if failures else 0


def cmd_export(args: argparse.Namespace) -> int:
    from .tasks.export import export

    done = export(args.source, args.format, args.out, quantize=args.quantize, calibration_data=args.calibration_data,
                  calibration_images=args.calibration_images, eval_json=args.eval_json, class_list=args.class_list)
    for line in done.lines:
        print(f"  {line}")
    print(f"{args.format}{' ' + args.quantize if args.quantize else ''} written to {done.path}; load it with "
          f"alexnet.load({str(done.path)!r}) or --weights {done.path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .tasks.serve import ServeConfig, serve

    serve(ServeConfig(source=args.source, host=args.host, port=args.port, device=args.device, top_k=args.top_k,
                      max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_upload_mb=args.max_upload_mb,
                      max_image_pixels=args.max_image_pixels, threads=args.threads))
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from .engine.device import resolve_device
    from .models.pretrained import load_pretrained
    from .tasks import classifier
    from .tasks.features import extract_splits, save_features

    from .outputs import check_output, npz_with

    if args.classifier_out and not args.classifier:
        raise AlexNetError("--classifier-out needs --classifier logreg|svm|mlp")
    check_output(args.out, "a features file", npz_with("layer", "class_names"), args.overwrite)
    if args.classifier:
        check_output(args.classifier_out or Path(args.out).with_name(f"{Path(args.out).stem}.{args.classifier}.safetensors"),
                     "a classifier file", classifier.is_classifier_file, args.overwrite)
    pretrained = load_pretrained(args.weights)
    print(f"weights: {pretrained.description}")
    features = extract_splits(pretrained, args.data, args.layer, resolve_device(args.device), val_split=args.val_split,
                              batch_size=args.batch_size, workers=args.workers)
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
    from .tasks.neighbors import NeighborSearch, draw, find_neighbors

    from .outputs import check_output, is_png

    check_output(args.out, "a PNG picture", is_png, args.overwrite)
    pretrained = load_pretrained(args.weights)
    search = NeighborSearch(args.data, args.query, k=args.k, split=args.split, layer=args.layer,
                            val_split=args.val_split, batch_size=args.batch_size, workers=args.workers)
    result = find_neighbors(pretrained, search, resolve_device(args.device))
    print(f"{args.query}: nearest {args.split} images in {args.layer} space ({pretrained.description})")
    for n in result.neighbors:
        print(f"  {n.distance:10.4g}  {n.label:<20}  {n.path}")
    print(f"written to {draw(result, args.out)}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .engine.device import resolve_device
    from .engine.memory import check_arch_size
    from .tasks.bench import bench_arch, default_batch_size, format_table, header_line

    device = resolve_device(args.device)
    timing = {"rounds": 2, "min_seconds": 0.0} if args.quick else {"rounds": args.rounds, "min_seconds": 1.0}
    from .outputs import check_output, json_with, write_text

    for arch in args.arch:  # every size checked before anything is measured
        size = args.image_size or model_info(arch).image_size
        check_arch_size(arch, size, args.batch_size or default_batch_size(size), device, training=True)
    if args.json:
        check_output(args.json, "a bench report", json_with("device", "results"), args.overwrite)
    print(f"alexnet bench on {device}: {header_line(device)}", flush=True)
    results = []
    for arch in args.arch:
        print(f"  measuring {arch} ...", flush=True)
        results.append(bench_arch(arch, device, args.batch_size, args.image_size, **timing))
    print(format_table(results))
    if args.json:
        report = {"device": str(device), "host": header_line(device), "results": [r.to_dict() for r in results]}
        write_text(args.json, json.dumps(report, indent=2) + "\n")
        print(f"written to {args.json}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .tasks.plot import draw_compare, write_curves

    if len(args.run_dir) == 1:
        print(write_curves(args.run_dir[0], args.out))
    else:
        print(draw_compare(args.run_dir, args.out or "compare.png"))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .engine.device import resolve_device
    from .tasks.report import build_report

    path = build_report(args.run_dir, args.data, args.out, resolve_device(args.device), batch_size=args.batch_size,
                        workers=args.workers, tta=args.tta)
    print(f"report written to {path} (PNGs and per_class.csv beside it)")
    return 0


def cmd_prepare_digits(args: argparse.Namespace) -> int:
    from .tasks.prepare import digits_to_folders

    _print_written(args, digits_to_folders(args.to_folders))
    return 0


def cmd_prepare_cifar(args: argparse.Namespace) -> int:
    from .tasks.prepare import cifar_to_folders

    _print_written(args, cifar_to_folders(args.source, args.to_folders))
    return 0


def _print_written(args: argparse.Namespace, counts: dict[str, int]) -> None:
    print(f"wrote {args.dataset} to {args.to_folders}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))


def cmd_prepare_imagenet_val(args: argparse.Namespace) -> int:
    from .tasks.imagenet import file_val_images

    report = file_val_images(args.val_dir, args.labels, args.link, args.classes)
    print(f"{args.val_dir}: {report}")
    return 0


def cmd_prepare_cache(args: argparse.Namespace) -> int:
    from .tasks.prepare import cache_data

    cache_data(args.data, arch=args.arch, image_size=args.image_size, val_split=args.val_split,
               cache_dir=args.cache_dir, workers=args.workers, max_pixels=args.max_image_pixels)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .tasks.convert import convert_caffe, convert_keras, convert_tf_npy

    if args.source == "caffe":
        done = convert_caffe(args.prototxt, args.caffemodel, args.out, mean=args.mean)
    elif args.source == "keras":
        done = convert_keras(args.file, args.out, kernels=args.kernels, bgr=args.bgr, lrn_k=args.lrn_k)
    else:
        done = convert_tf_npy(args.file, args.out, fc6_order=args.fc6_order, lrn_k=args.lrn_k)
    print(f"wrote {args.out}: alexnet2012, groups {','.join(map(str, done['groups']))}, LRN k={done['lrn_k']:g}, "
          f"{done['num_classes']} classes, {done['crop']} px input less the {done['preprocess']}"
          + (f"; kernels {done['kernels']}" if "kernels" in done else ""))
    print(f"  use it with --weights {args.out} (predict, evaluate, features, finetune) or alexnet.load")
    return 0


def _models_parser(sub) -> None:
    p = sub.add_parser("models", help="list the model variants", description="List the registered AlexNet variants.")
    p.set_defaults(func=cmd_models)


def _summary_parser(sub) -> None:
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


def _train_parser(sub) -> None:
    _training_parser(
        sub, "train", cmd_train,
        help="train a model from scratch",
        description="Train an AlexNet variant with SGD. The run folder gets config.json, metrics.csv, curves.png, "
        "tb/ (TensorBoard), checkpoints/last.pt (every epoch, and every --save-every-steps) and best.pt (best "
        "validation top-1); checkpoints carry everything evaluate and predict need. Ctrl-C saves and stops; "
        "--resume continues exactly where the run stopped, also after kill -9. `--config RUN_DIR/config.json` "
        "trains the same way again. Under `torchrun --nproc-per-node N -m alexnet train ...` the same command "
        "trains with DistributedDataParallel.",
    )


def _finetune_parser(sub) -> None:
    _training_parser(
        sub, "finetune", cmd_finetune,
        help="fine-tune pretrained weights on your classes",
        description="Train from --weights (torchvision's ImageNet weights, a checkpoint, a .pth or .safetensors "
        "file): fc8 is replaced for the data's classes, the weights' preprocessing is kept, and the defaults are "
        "lr 0.001 with the pretrained layers at 0.1 x that (--backbone-lr-scale). --freeze keeps layers fixed; "
        "--unfreeze-schedule fc8:3,fc7:3,fc6:3,conv5:3 trains the last layer first, then unfreezes one more layer "
        "down each round. Everything else is `alexnet train`: the run folder, logging, --resume, torchrun.",
    )


def _training_parser(sub, name: str, func, **texts: str) -> None:
    """train and finetune: one flag per TrainConfig field, and --config."""
    from .engine.config import TrainConfig, add_arguments

    p = sub.add_parser(name, **texts)
    p.add_argument("--config", metavar="FILE",
                   help="train as this file says: a run's config.json (RUN_DIR/config.json), or a YAML file with "
                   "the same keys (needs PyYAML: pip install 'alexnet[yaml]'); flags given beside it override it. "
                   "The file's provenance, --out and --resume are not replayed")
    add_arguments(p, TrainConfig)
    p.set_defaults(func=func)


def _evaluate_parser(sub) -> None:
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
    p.add_argument("--split", choices=("train", "val", "test", "all"),
                   help="all: every image of the source; val of a folder of class folders: the part training held "
                   "out with its --val-split (default: test if the source has one; all of a folder of class folders; "
                   "else val)")
    p.add_argument("--overwrite", action="store_true", help="let --json replace a file that is not an evaluation report")
    p.add_argument("--ten-crop", action="store_true",
                   help="average the softmax of 10 views (4 corner crops, the centre crop and their mirrors), "
                   "as the paper tested; default: the centre crop alone")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average the softmax of the centre crop and its mirror image")
    p.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    p.add_argument("--report", metavar="DIR",
                   help="also write to DIR the confusion matrix (confusion.png), per-class precision/recall/F1 "
                   "(per_class.csv, per_class.png) and the most confident mistakes and least confident correct "
                   "answers (mistakes.png, unsure_correct.png)")
    _add_loading_options(p, batch_size=256)
    p.set_defaults(func=cmd_evaluate)


def _predict_parser(sub) -> None:
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
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average the softmax of the centre crop and its mirror image")
    p.add_argument("--json", action="store_true", help="print one JSON document (model, predictions, errors) instead")
    p.add_argument("--explain", metavar="OUT_DIR",
                   help="also write OUT_DIR/NAME.gradcam.png per image: a Grad-CAM heat map at conv5 (where the "
                   "image made the top-1 class) over the centre crop, titled with the class and its probability")
    p.add_argument("--device", default="auto", choices=DEVICES, help="(default: auto)")
    p.set_defaults(func=cmd_predict)


def _export_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a checkpoint as safetensors, ONNX (optionally int8), TorchScript or a Hugging Face folder",
        description="Export a model for use elsewhere. Every format carries the class names, preprocessing, "
        "architecture config and the run's metrics, and loads again with alexnet.load(PATH) and --weights PATH. "
        "safetensors: the weights alone (no optimizer, no pickle). onnx: dynamic batch, any variant, checked "
        "against eager PyTorch with onnxruntime before it is written (max |diff| printed); with --quantize int8 "
        "static int8 quantization calibrated on --calibration-data, the top-1 change printed. torchscript: a "
        "traced module that torch.jit.load reads without this package. hf: a folder with config.json, "
        "model.safetensors and a model card README.md (data, classes, recipe, accuracy, curves). Files are "
        "written atomically, with the usual permissions (0644 under umask 022).",
    )
    p.add_argument("source", metavar="SOURCE", help="a checkpoint (runs/x/checkpoints/best.pt), or anything "
                   "--weights takes: " + WEIGHTS_HELP)
    p.add_argument("--format", required=True, choices=("safetensors", "onnx", "torchscript", "hf"))
    p.add_argument("--out", metavar="PATH", help="file (folder for hf) to write (default: beside SOURCE: "
                   "best.safetensors, best.onnx, best.int8.onnx, best.torchscript.pt, best_hf/)")
    p.add_argument("--quantize", choices=("int8",), help="onnx only: quantize weights and activations to int8")
    p.add_argument("--calibration-data", metavar="DIR",
                   help="with --quantize: images to calibrate on; a folder with train/ and val/ calibrates on "
                   "train/ and measures the top-1 change on val/, otherwise both use DIR")
    p.add_argument("--calibration-images", type=_at_least(1), default=256,
                   help="images used for calibration (default: 256)")
    p.add_argument("--eval-json", metavar="FILE",
                   help="the report of `alexnet evaluate --json FILE` to put in the metadata and model card "
                   "(e.g. the test accuracy)")
    p.add_argument("--class-list", metavar="FILE",
                   help="imagenet_class_index.json or LOC_synset_mapping.txt: readable names (tench, parachute) for "
                   "ImageNet wnid classes (n01440764), shown by predict and serve")
    p.set_defaults(func=cmd_export)


def _serve_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="an HTTP endpoint and a web page for a model (needs: pip install 'alexnet[serve]')",
        description="Serve SOURCE on http://HOST:PORT: GET / is a page (works offline) to drop or choose an image "
        "and see the top-5; POST /predict takes images as multipart (curl -F file=@cat.jpg HOST:PORT/predict) or "
        'JSON ({"images": [BASE64, ...]}) and answers the top-k per image; GET /health, GET /info. Concurrent '
        "requests are batched (--max-batch, --max-wait-ms); on the CPU the model runs in ONNX Runtime (int8 when "
        "SOURCE is an int8 export), on a GPU with PyTorch. Bad input gets a 4xx with a one-line reason; the "
        "server carries on. Binds 127.0.0.1 (this machine only) unless --host says otherwise.",
    )
    p.add_argument("source", metavar="SOURCE", help="a checkpoint, an export (.onnx, .safetensors, .pt, hf folder) "
                   "or 'torchvision'")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1; 0.0.0.0 = every interface)")
    p.add_argument("--port", type=_at_least(0), default=8000, help="(default: 8000)")
    p.add_argument("--top-k", type=_at_least(1), default=5, help="classes per image unless a request asks (default: 5)")
    p.add_argument("--max-batch", type=_at_least(1), default=32, help="images run together at most (default: 32)")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long a request waits for others to share its batch (default: 5)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest request body (default: 20)")
    p.add_argument("--max-image-pixels", type=_at_least(1), default=89_478_485,
                   help="larger images are refused before decoding (default: Pillow's 89,478,485)")
    p.add_argument("--threads", type=_at_least(1), help="inference threads (default: PyTorch's, the core count)")
    p.add_argument("--device", default="auto", choices=DEVICES, help="(default: auto)")
    p.set_defaults(func=cmd_serve)


def _features_parser(sub) -> None:
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
    p.add_argument("--overwrite", action="store_true",
                   help="let --out and --classifier-out replace files that are not features or classifier files")
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


def _neighbors_parser(sub) -> None:
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
    p.add_argument("--overwrite", action="store_true", help="let --out replace a file that is not a PNG picture")
    p.add_argument("--split", default="train", choices=("train", "val", "test"),
                   help="where to search (default: train)")
    p.add_argument("--layer", default="fc7", choices=TAPS, metavar="LAYER", help="activation space (default: fc7)")
    p.add_argument("--val-split", type=float, default=0.1, help="as for features (default: 0.1)")
    _add_loading_options(p, batch_size=64)
    p.set_defaults(func=cmd_neighbors)


def _bench_parser(sub) -> None:
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
    p.add_argument("--overwrite", action="store_true", help="let --json replace a file that is not a bench report")
    p.set_defaults(func=cmd_bench)


def _plot_parser(sub) -> None:
    p = sub.add_parser(
        "plot",
        help="redraw a run's curves, or overlay several runs' curves",
        description="One RUN_DIR: redraw RUN_DIR/curves.png (or --out) from RUN_DIR/metrics.csv: loss, accuracy "
        "(top-5 only with more than 5 classes) with the chance line and the best epoch marked, and the learning "
        "rate. Several: overlay their loss and validation accuracy, labelled by run folder name, in --out "
        "(default: compare.png), e.g. fine-tuning against training from scratch.",
    )
    p.add_argument("run_dir", nargs="+", metavar="RUN_DIR", help="run folders written by `alexnet train`")
    p.add_argument("--out", metavar="FILE.png", help="the picture to write")
    p.set_defaults(func=cmd_plot)


def _report_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="one HTML page of what a run learned and where it fails",
        description="Write RUN_DIR/report.html (or --out), one self-contained page that opens offline, and its "
        "PNGs beside it: the learning curves, the scores on val (and test), the confusion matrix normalised per "
        "true class with the most confused pairs, per-class precision/recall/F1 (also per_class.csv), the most "
        "confident mistakes and least confident correct answers, the conv1 filters (the paper's Figure 3), the "
        "data, timings, the model summary and the config. The test split is analysed where the data has one, "
        "else val (the images training never saw).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `alexnet train`")
    p.add_argument("--data", help="the data the run was trained on (default: the source its checkpoint names)")
    p.add_argument("--out", metavar="FILE.html", help="the page to write (default: RUN_DIR/report.html)")
    p.add_argument("--tta", action="store_true",
                   help="also score the analysed split with flip and ten-crop views (12 passes over it instead of 1)")
    _add_loading_options(p, batch_size=128)
    p.set_defaults(func=cmd_report)


def _prepare_parser(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="write datasets out as class folders; file ImageNet's validation images; build the image cache",
        description="Prepare data for training: `alexnet prepare WHAT --help` shows each one's options.",
    )
    kinds = p.add_subparsers(dest="dataset", metavar="WHAT", required=True)
    d = kinds.add_parser("digits", help="the built-in digits as class folders",
                         description="Write the built-in digits as DST/{train,val,test}/<class>/*.png with the split "
                         "`--data digits` uses.")
    d.add_argument("--to-folders", required=True, metavar="DST", help="an empty or new folder")
    d.set_defaults(func=cmd_prepare_digits)
    for name, folder in (("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")):
        c = kinds.add_parser(name, help=f"{folder} as class folders",
                             description=f"Write the original python pickle folder SRC ({folder}) as "
                             "DST/{train,test}/<class>/*.png.")
        c.add_argument("source", metavar="SRC", help=f"the pickle folder ({folder})")
        c.add_argument("--to-folders", required=True, metavar="DST", help="an empty or new folder")
        c.set_defaults(func=cmd_prepare_cifar)
    _prepare_imagenet_val_parser(kinds)
    _prepare_cache_parser(kinds)


def _prepare_imagenet_val_parser(kinds) -> None:
    v = kinds.add_parser("imagenet-val", help="file ILSVRC2012's flat validation images into <wnid>/ folders",
                         description="Move (or --link) the 50,000 flat ILSVRC2012 validation images into <wnid>/ "
                         "folders, from the Kaggle LOC_val_solution.csv or Caffe's val.txt; running it again "
                         "changes nothing.")
    v.add_argument("--val-dir", required=True, metavar="DIR", help="the flat validation folder")
    v.add_argument("--labels", required=True, metavar="FILE", help="LOC_val_solution.csv or val.txt")
    v.add_argument("--classes", metavar="FILE",
                   help="with val.txt: imagenet_class_index.json or LOC_synset_mapping.txt giving each index's wnid "
                   "(default: the sorted folders of the train/ beside --val-dir)")
    v.add_argument("--link", action="store_true", help="symlink instead of moving")
    v.set_defaults(func=cmd_prepare_imagenet_val)


def _prepare_cache_parser(kinds) -> None:
    c = kinds.add_parser("cache", help="decode --data once into the uint8 cache `train --cache` reads",
                         description="Decode the images of --data once into the uint8 cache that `train --cache` "
                         "reads (with the same --arch, --image-size and --val-split as training); up to date "
                         "caches are left alone, stale ones rebuilt.")
    c.add_argument("--data", required=True, metavar="DIR", help="the image folder, as for train --data")
    c.add_argument("--arch", default="alexnet", choices=list_models(), help="the variant training will use (default: alexnet)")
    c.add_argument("--image-size", type=_at_least(1), help="the network input side training will use (default: the variant's)")
    c.add_argument("--val-split", type=float, default=0.1, help="as for train, when the data has no val/ (default: 0.1)")
    c.add_argument("--cache-dir", metavar="DIR", help="as for train (default: $ALEXNET_CACHE, else ~/.cache/alexnet/images)")
    c.add_argument("--workers", type=_at_least(0), default=2, help="decoding processes (default: 2)")
    c.add_argument("--max-image-pixels", type=_at_least(1), default=89_478_485, help="larger images are left out")
    c.set_defaults(func=cmd_prepare_cache)


def _convert_parser(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="Caffe's bvlc_alexnet, or its Keras / TensorFlow copies, into alexnet2012 weights (.safetensors)",
        description="Convert the original AlexNet weights into this project's portable weights file for the "
        "paper's two-tower network (alexnet2012): the groups, widths and classes follow from the tensors' shapes, "
        "LRN's k from the source (Caffe's default is 1, the paper's 2), and the preprocessing the weights were "
        "trained with (0-255 pixels less the ImageNet mean, 227 px crops of 256 px images) is stored with them, "
        "so `--weights OUT` needs no other flag. No Caffe, protobuf or TensorFlow is needed, and nothing is "
        "unpickled beyond numpy arrays.",
    )
    kinds = p.add_subparsers(dest="source", metavar="SOURCE", required=True)
    c = kinds.add_parser("caffe", help="a .caffemodel with its prototxt (both the 2014 and the later format)",
                         description="Read bvlc_alexnet.caffemodel and its deploy.prototxt (or train_val.prototxt); "
                         "conv1's B, G, R input channels are reordered to R, G, B.")
    c.add_argument("--prototxt", required=True, metavar="FILE", help="deploy.prototxt: the layer structure, LRN k, input size")
    c.add_argument("--caffemodel", required=True, metavar="FILE", help="the weights, e.g. bvlc_alexnet.caffemodel")
    c.add_argument("--mean", metavar="FILE.binaryproto",
                   help="the mean image (imagenet_mean.binaryproto); default: Caffe's per-channel means B, G, R "
                   "104, 117, 123")
    k = kinds.add_parser("keras", help="Heuritech's convnets-keras alexnet_weights.h5 (needs h5py)",
                         description="Read convnets-keras' AlexNet weights (conv_1, conv_2_1/conv_2_2, ..., "
                         "dense_1..3). Needs h5py: pip install 'alexnet[convert]'.")
    k.add_argument("file", metavar="FILE.h5")
    k.add_argument("--kernels", choices=("auto", "theano", "tensorflow"), default="auto",
                   help="how the conv kernels are stored: theano (flipped: Theano convolves), tensorflow (as used "
                   "by cross-correlation); auto: the file's backend attribute, else 'th'-layout kernels are "
                   "Theano's (default: auto)")
    k.add_argument("--bgr", action="store_true",
                   help="conv1 expects B, G, R (default: R, G, B, as convnets-keras feeds this model)")
    t = kinds.add_parser("tf-npy", help="bvlc_alexnet.npy, the TensorFlow copy (myalexnet)",
                         description="Read bvlc_alexnet.npy (a pickled dict of [W, b]) with an unpickler that "
                         "admits numpy arrays, dicts and lists only.")
    t.add_argument("file", metavar="FILE.npy")
    t.add_argument("--fc6-order", choices=("hwc", "chw"), default="hwc",
                   help="order of fc6's inputs: hwc (pool5 flattened as H, W, C: caffe-tensorflow's files) or chw "
                   "(Caffe's own) (default: hwc)")
    for q in (k, t):
        q.add_argument("--lrn-k", type=float, default=1.0,
                       help="LRN's k the weights were trained with (default: 1, Caffe's, as in bvlc_alexnet)")
    for q in (c, k, t):
        q.add_argument("--out", required=True, metavar="FILE.safetensors", help="the weights file to write")
        q.set_defaults(func=cmd_convert)


# One function per subcommand, in the order `alexnet --help` lists them.
SUBCOMMANDS = (_models_parser, _summary_parser, _train_parser, _finetune_parser, _evaluate_parser, _predict_parser,
               _export_parser, _serve_parser, _features_parser, _neighbors_parser, _bench_parser, _plot_parser,
               _report_parser, _prepare_parser, _convert_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alexnet",
        description="AlexNet (Krizhevsky et al., 2012): the paper's network and recipe, and the workflow around it.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"alexnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parser in SUBCOMMANDS:
        add_parser(sub)
    return parser


# Errors of the machine rather than of this program: a full disk, a read-only or missing
# place to write. One line naming the path, like any other error the user must fix.
_WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR,
                 errno.EEXIST, errno.ENOENT}
_show_warning = warnings.showwarning


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, AlexNetWarning):
        print(f"alexnet: warning: {printable(str(message))}", file=sys.stderr, flush=True)
    else:
        _show_warning(message, category, filename, lineno, file, line)


def main(argv: Sequence[str] | None = None) -> int:
    # Line-buffered even in a pipe or log file, so each line shows up when it is printed.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    warnings.showwarning = _one_line_warning
    from .engine.logging import log_to_stdout

    log_to_stdout()  # the library's progress lines, as plain lines on stdout (rank 0 only)
    command = next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), "")
    try:
        args = build_parser().parse_args(argv)
        command = args.command
        args.argv = list(sys.argv) if argv is None else ["alexnet", *argv]  # recorded by train in its run folder
        return args.func(args)
    except AlexNetError as e:
        print(f"alexnet {command}: error: {printable(str(e))}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return _reader_left()
    except OSError as e:
        if e.errno not in _WRITE_ERRNOS or not e.filename:
            raise
        print(f"alexnet {command}: error: {printable(str(e.filename))}: {e.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"alexnet {command}: interrupted", file=sys.stderr)
        return 130


def _reader_left() -> int:
    """stdout's reader closed the pipe (``alexnet predict ... | head``): nothing more can be
    said there, so end quietly, with the status of a program that SIGPIPE ended (128 + 13).
    stdout becomes /dev/null first, or Python's flush of it at exit fails a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # a stdout without a file descriptor: nothing to flush
        pass
    return 141


if __name__ == "__main__":
    raise SystemExit(main())
