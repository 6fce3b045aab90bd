"""Probes on a CIFAR-10 classifier's frozen features, taught by own fakes (UniversalFakeDetect, Ojha et al. 2023)."""

from __future__ import annotations

from functools import cache, partial

import numpy as np

from .classifier import load_classifier
from .common import batched, cifake, fake_sources, nearest_distances, remembered, score_kinds, trained_minutes


def cmd_linear(args) -> None:
    """Ojha et al.'s recipe with the ``semantic`` step's classifier (``--name``) in CLIP's place: its features stay
    frozen, and a logistic regression learns CIFAKE test REAL 4000-9999 against the ``--fakes`` (own generators;
    they are then not scored as held out). ``last`` reads the pooled ``features`` layer, ``all`` every activation
    layer's channel means and maxima (the low-level traces too); ``nn-last`` is their nearest-neighbour variant:
    the distance (between unit feature vectors) to the nearest real image less that to the nearest fake. Rows
    ``linear-NAME-SOURCES:kind``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = cifake(args)
    sources = fake_sources(args, args.fakes)
    layers = remembered(pooled_layers(load_classifier(args.root / args.name / "classifier.keras")))
    real, fake = data["test_REAL"][4000:], np.concatenate(list(sources.values()))

    @cache
    def probe(kind: str):  # on first use: a rerun whose kinds are all recorded fits nothing
        x = np.r_[_columns(layers(real), kind), _columns(layers(fake), kind)]
        y = np.r_[np.zeros(len(real)), np.ones(len(fake))]
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000, class_weight="balanced"))
        return model.fit(x, y)

    @cache
    def banks():
        return _unit(_columns(layers(real), "last")), _unit(_columns(layers(fake), "last"))

    def nearest(images):
        queries = _unit(_columns(layers(images), "last"))
        return nearest_distances(queries, banks()[0]) - nearest_distances(queries, banks()[1])

    def linear(images, kind: str):
        return probe(kind).predict_proba(_columns(layers(images), kind))[:, 1]

    scores = {"last": partial(linear, kind="last"), "all": partial(linear, kind="all"), "nn-last": nearest}
    tag = "+".join(name.split("/")[0] for name in sources)
    describe = {"fakes": args.fakes, "classifier": args.name, "reals": "CIFAKE test REAL 4000-9999"}
    minutes = trained_minutes(args.root / args.name)
    prefix = f"linear-{args.name}-{tag}"
    score_kinds(args, data, prefix, scores, lambda kind: describe | {"input": kind}, lambda kind: sources, minutes)


def pooled_layers(model):
    """images -> (every 4-D activation layer's channel means and maxima side by side, the pooled ``features``)."""
    import keras

    grids = [layer.output for layer in model.layers if isinstance(layer, keras.layers.Activation)]
    grids = [output for output in grids if len(output.shape) == 4]
    network = keras.Model(model.input, [model.get_layer("features").output, *grids])

    def pooled(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        last, *outputs = batched(network, images.astype(np.float32))
        return np.concatenate([np.c_[g.mean((1, 2)), g.max((1, 2))] for g in outputs], axis=1), last

    return pooled


def _columns(pooled: tuple[np.ndarray, np.ndarray], kind: str) -> np.ndarray:
    low, last = pooled
    return last if kind == "last" else np.c_[low, last]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1.0e-12)
