"""Detectors trained on CIFAKE and the project's own fakes, and the shipped files scored as probes."""

from __future__ import annotations

import time

import numpy as np

from .common import RESULTS, ROOT, append_record, cifake, fake_sources, log, recorded, scored


def cmd_detect(args) -> None:
    if args.name in recorded():
        log.info("%s already in %s", args.name, RESULTS)
        return
    append_record(train_and_score(args))


def train_and_score(args) -> dict:
    from cifake.config import ModelParams
    from cifake.dataset import Split
    from cifake.fitconfig import FitConfig
    from cifake.model import build_model, predict_proba
    from cifake.training import fit

    data = cifake(args)
    fakes = fake_sources(args, args.fakes)
    real = data["train_REAL"][: args.reals]
    x = np.concatenate([real, *fakes.values()])
    y = np.r_[np.zeros(len(real)), np.ones(len(x) - len(real))].astype(np.int64)
    order = np.random.default_rng(args.seed).permutation(len(x))
    val, train = order[:2000], order[2000:]
    split = Split(x, y, np.arange(len(x)).astype(str))
    params = ModelParams(
        architecture="resnet", widths=tuple(args.widths), blocks_per_stage=1, stem_stride=args.stem_stride,
        dense_units=64, dropout=0.1,
    )  # fmt: skip
    config = FitConfig(
        epochs=args.epochs, batch_size=128, learning_rate=2.0e-3, weight_decay=5.0e-4, patience=args.epochs,
        augment=True, seed=args.seed, precision=args.precision, everyday=args.everyday,
    )  # fmt: skip
    start = time.time()
    checkpoints = args.root / "ckpt" / args.name
    model = residual_front(build_model(params)) if args.input == "residual" else build_model(params)
    result = fit(model, split.take(train), split.take(val), config, checkpoint_dir=checkpoints)
    minutes = (time.time() - start) / 60

    def predict(images):
        return predict_proba(result.model, images).reshape(-1)

    record = {"name": args.name, "fakes": args.fakes, "reals": len(real), "epochs": args.epochs, "input": args.input}
    return record | scored(args, data, predict, skip=fakes, minutes=minutes)


def residual_front(model):
    """``model`` fed each image's residual against its 2x2 block means (NPR's idea, Tan et al. 2024: upsampling
    ties neighbouring pixels together), scaled 4x around mid-grey."""
    import keras

    pixels = keras.Input((32, 32, 3), name="pixels")
    blocks = keras.layers.UpSampling2D(2)(keras.layers.AveragePooling2D(2)(pixels))
    residual = keras.layers.Subtract()([pixels, blocks])
    return keras.Model(pixels, model(keras.layers.Rescaling(4.0, offset=127.5)(residual)))


def cmd_file(args) -> None:
    """A model file of models/pretrained (``--name``, without ``.keras``) scored as the probes are, at its own 0.5
    threshold (run ``file:NAME``): the shipped files as points of the trade between the two sides."""
    from cifake.model import load_model, predict_proba

    args.name = f"file:{args.name}"
    if args.name in recorded():
        return
    model = load_model(ROOT / "models" / "pretrained" / f"{args.name.removeprefix('file:')}.keras")
    record = scored(args, cifake(args), lambda images: predict_proba(model, images))
    append_record({"name": args.name, "fakes": "none", "input": "pixels"} | record)
