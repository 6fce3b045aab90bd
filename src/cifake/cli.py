"""The ``cifake`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cifake.errors import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, CifakeError, setup_logging

__all__ = ["EXIT_FATAL", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "main"]
# The shipped weights live in the repository (the package is installed editable from it).
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "pretrained" / "cifake-robust.keras"
DEMO_MODELS = [DEFAULT_MODEL, DEFAULT_MODEL.with_name("cifake-clean-only.keras")]
OTHER_FILES = ("cifake-clean.keras", "cifake-clean-only.keras", "cifake-generalist.keras")
SHIPPED = [DEFAULT_MODEL.with_name(name) for name in OTHER_FILES] + [DEFAULT_MODEL]
# options of `cifake predict` that --spark does not take, with their defaults
SPARK_DEFAULTS = {"precision": "auto", "single_view": False, "batch_size": 256}
# where the training stages keep MLflow records their server missed (stages/train.py, fgsm_finetune.py)
OUTBOX = Path("checkpoints/mlflow-outbox")


def _threshold(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"threshold must be in (0, 1), got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


DESCRIPTION = """\
Tell real photographs from AI-generated images (Stable Diffusion), also when
someone has perturbed the pixels to fool the detector.

examples:
  cifake predict photos/ -o predictions.csv            label every image under photos/
  cifake predict photos/ -o out.csv --scores           ... with P(Fake), to pick your own threshold
  cifake predict cifake/test -o t.csv --labels-from-folders   score a REAL/ and FAKE/ layout
  cifake explain photos/ -o heatmaps/                  a heatmap PNG per image: what drove each decision
  cifake demo                                          a local web page: classify, attack, everyday changes
  cifake register                                      register the shipped models in MLflow (robust: @champion)
  cifake check-params                                  is params.yaml valid?
  cifake sync-tracking                                 send MLflow what training kept while the server was down

exit status: 0 done; 1 error (nothing written); 2 bad arguments;
3 done, but some files were not images (listed in <output>.errors.csv)
"""


def _add_predict(sub) -> None:
    """The ``predict`` command and its options."""
    p = sub.add_parser("predict", help="classify every image under a folder and write a CSV")
    p.add_argument("input_dir", help="folder of images (searched recursively, any size/format)")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="CSV to write (Image Name, Predicted Label); missing folders are created",
    )
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a .keras model (default: the shipped robust one)")
    p.add_argument("--threshold", type=_threshold, default=0.5, help="P(Fake) at or above which an image is Fake")
    p.add_argument("--batch-size", type=_positive_int, default=256)
    p.add_argument("--scores", action="store_true", help="add a third column, P(Fake), to choose your own threshold")
    p.add_argument(
        "--single-view",
        action="store_true",
        help="skip a view-averaged model's average (the shipped robust model's ten views: the image and its mirror, "
        "each also shifted 1 px four ways): one view, several times faster, less robust to attacks",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="auto (default): bfloat16 where the CPU has AVX-512 BF16 or AMX (about 1.5x faster, labels agree "
        "on 99.9%% of CIFAKE's test set or more), float32 elsewhere",
    )
    p.add_argument(
        "--spark",
        metavar="MASTER",
        default=None,
        help="classify on Spark (e.g. local[2], spark://host:7077, yarn) through the registered models' pyfunc; "
        "INPUT may then be any path Spark reads (hdfs://, s3a://). Needs pip install -r requirements-spark.txt "
        "and Java; not with --precision, --single-view, --batch-size (docs/scale-out.md)",
    )
    score = p.add_mutually_exclusive_group()
    score.add_argument("--labels", type=Path, default=None, help="CSV (Image Name, Label=Real/Fake) to score against")
    score.add_argument(
        "--labels-from-folders",
        action="store_true",
        help="score against the REAL/ or FAKE/ folder each image lies in (CIFAKE's layout)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cifake", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_predict(sub)

    e = sub.add_parser("explain", help="write a heatmap PNG per image under a folder (what drove each decision)")
    e.add_argument("input_dir", type=Path, help="folder of images (searched recursively, any size/format)")
    e.add_argument("-o", "--output", type=Path, required=True, help="folder for <name>.heatmap.png and heatmaps.csv")
    e.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a .keras model (default: the shipped robust one)")

    d = sub.add_parser("demo", help="serve a local web page: classify, heatmaps, attacks, everyday changes")
    d.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    d.add_argument("--port", type=_positive_int, default=8501)
    d.add_argument(
        "--model",
        type=Path,
        action="append",
        default=None,
        help="a .keras model to show (repeat for several; default: the shipped robust and clean-only ones)",
    )

    r = sub.add_parser(
        "register",
        help="register models (default: the four shipped ones) as versions of cifake-detector in MLflow, "
        "to load with mlflow.pyfunc or mlflow.keras and serve with `mlflow models serve`",
    )
    r.add_argument("files", type=Path, nargs="*", default=SHIPPED, help="the .keras files (default: the shipped ones)")
    r.add_argument(
        "--champion",
        type=Path,
        default=DEFAULT_MODEL,
        help="the file given the alias champion, if it is among the files (default: the shipped robust one)",
    )
    r.add_argument("--name", default="cifake-detector", help="the registered model (default: cifake-detector)")
    r.add_argument("--experiment", default="cifake", help="the MLflow experiment of the registering run")

    v = sub.add_parser("check-params", help="check params.yaml: says it is valid, or names every bad key")
    v.add_argument("path", type=Path, nargs="?", default=Path("params.yaml"))

    t = sub.add_parser(
        "sync-tracking",
        help="send MLflow the metrics, files, model versions and aliases that training kept while its server was down",
    )
    t.add_argument(
        "--outbox", type=Path, default=OUTBOX, help=f"the folder the training stages keep them in ({OUTBOX})"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        if args.command == "sync-tracking":
            return _sync_tracking(args.outbox)
        if args.command == "check-params":
            from cifake.config import load_params

            load_params(args.path)
            print(f"{args.path} is valid")
            return EXIT_OK
        if args.command == "explain":
            return _explain(args)
        if args.command == "register":
            return _register(args)
        if args.command == "demo":
            from cifake.demo import serve

            serve(args.model or DEMO_MODELS, host=args.host, port=args.port)
            return EXIT_OK
        return _predict(args)
    except CifakeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL


def _sync_tracking(folder: Path) -> int:
    """Send every waiting outbox; 0 if nothing is left, 1 (with what is left and why) otherwise."""
    from cifake.outbox import send_waiting

    sent, left = send_waiting(folder)
    for outbox in sent:
        done = outbox.record.get("registered")
        version = (
            f"; {done['name']} v{done['version']}" + (f" is {done['alias']}" if done["alias"] else "") if done else ""
        )
        print(f"sent: run {outbox.run_id} ({outbox.record['stage']}){version}")
    for outbox in left:
        print(f"error: still not sent for run {outbox.run_id} ({outbox.problem}): {outbox.waiting()}", file=sys.stderr)
    if not sent and not left:
        print(f"nothing waiting in {folder}")
    return EXIT_FATAL if left else EXIT_OK


def _make_parent(output: Path) -> None:
    """Create the output's folder, as dvc and mlflow do; fail before TensorFlow loads if it cannot be."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CifakeError(f"cannot create the output folder {output.parent}: {exc.strerror or exc}") from None


def _predict(args: argparse.Namespace) -> int:
    _make_parent(args.output)
    if args.spark is not None:
        summary = _predict_spark(args)
    else:
        from cifake.inference import for_inference
        from cifake.model import load_model, without_flip_average
        from cifake.predict import predict_folder

        model = load_model(args.model)
        if args.single_view:
            model, _ = without_flip_average(model)
        model, path = for_inference(model, args.precision)
        summary = predict_folder(
            model, args.input_dir, args.output, threshold=args.threshold, batch_size=args.batch_size, scores=args.scores
        )
        summary.path = path + (", single view" if args.single_view else "")
    from cifake.generalisation import figures_for, ood_note

    summary.limits = ood_note(figures_for(args.model))
    print(summary.describe(), file=sys.stderr)
    from cifake.predict import folder_labels, read_labels, score_csv

    if args.labels is not None or args.labels_from_folders:
        truth = read_labels(args.labels) if args.labels is not None else folder_labels(args.output)
        scores = score_csv(args.output, truth)
        print(
            f"scored {scores['n']} images: accuracy {scores['accuracy']:.4f} "
            f"(95% CI {scores['accuracy_ci95_low']:.4f}-{scores['accuracy_ci95_high']:.4f}), "
            f"precision {scores['precision']:.4f}, recall {scores['recall']:.4f}, F1 {scores['f1']:.4f} "
            f"(Fake is positive; {scores['missing_predictions']} labelled images had no prediction)",
            file=sys.stderr,
        )
    return EXIT_PARTIAL if summary.failed else EXIT_OK


def _register(args: argparse.Namespace) -> int:
    from cifake.model import load_model
    from cifake.registry import register_files
    from cifake.tracking import tracking_uri

    for path in args.files:
        load_model(path)  # a file that is not a loadable detector is refused before anything is registered
    for path, version, new in register_files(args.files, args.name, args.experiment, champion=args.champion):
        alias = " @champion" if path.resolve() == args.champion.resolve() else ""
        print(f"{'registered' if new else 'already registered'}: {path.name} as {args.name} v{version}{alias}")
    print(
        f"in {tracking_uri()}; serve the champion with:\n  mlflow models serve -m models:/{args.name}@champion "
        "--env-manager local -p 5001   (docs/serving.md)"
    )
    return EXIT_OK


def _predict_spark(args: argparse.Namespace):
    """``cifake predict --spark``: the same CSV, computed on Spark by the registered models' pyfunc."""
    unsupported = [
        f"--{name.replace('_', '-')}" for name, default in SPARK_DEFAULTS.items() if getattr(args, name) != default
    ]
    if unsupported:
        raise CifakeError(
            f"{', '.join(unsupported)} cannot be combined with --spark "
            "(its pyfunc runs as `cifake predict` does by default)"
        )
    if not args.model.is_file():
        raise CifakeError(f"model file not found: {args.model}")
    from cifake.spark import predict_spark

    return predict_spark(
        args.input_dir, args.output, args.spark, args.model, threshold=args.threshold, scores=args.scores
    )


def _explain(args: argparse.Namespace) -> int:
    from cifake.explain import explain_folder
    from cifake.model import load_model

    summary = explain_folder(load_model(args.model), args.input_dir, args.output)
    print(summary.describe(), file=sys.stderr)
    return EXIT_PARTIAL if summary.failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
