"""Where a classifier's scores sit together among photographs: a one-class density over several scores at once."""

from __future__ import annotations

from functools import cache

import numpy as np

from .classifier import cifar_classes, load_classifier
from .common import cifake, remembered, score_kinds, trained_minutes
from .semantic import embedding, feature_scores, semantic_scores

PARTS = ("doubt", "knn-train", "mahalanobis")


def cmd_joint(args) -> None:
    """The ``semantic`` step's classifier (``--name``) read through three of its scores at once (rows
    ``joint-NAME:kind``): its doubt, the cosine distance to the 50th nearest training photograph (``knn-train``) and
    the Mahalanobis distance to the nearest class mean. The generators' features sat far from every training
    photograph (knn-train AUC 0.68) yet near a class mean (Mahalanobis 0.43): an average of objects, a pairing
    photographs may rarely show. Each score becomes a normal score by its quantile among CIFAKE test REAL 4000-9999
    (:func:`normal_scores`); ``density`` is the negative log density of a four-component Gaussian mixture fitted on
    those photographs (one-class: no fakes), ``contrast`` knn-train's normal score less Mahalanobis', and
    ``contrast+doubt`` that plus the doubt's."""
    from sklearn.mixture import GaussianMixture

    data = cifake(args)
    embed = embedding(load_classifier(args.root / args.name / "classifier.keras"))
    classes = cifar_classes(args.cifake / "train" / "REAL")
    every = semantic_scores(embed, data) | feature_scores(embed, data["train_REAL"], classes)
    columns = remembered(lambda images: np.stack([every[part](images) for part in PARTS], axis=1))
    normal = normal_scores(lambda: columns(data["test_REAL"][4000:]))

    @cache
    def mixture():
        return GaussianMixture(4, covariance_type="full", random_state=args.seed).fit(
            normal(columns(data["test_REAL"][4000:]))
        )

    def z(images):
        return normal(columns(images))

    scores = {
        "density": lambda images: -mixture().score_samples(z(images)),
        "contrast": lambda images: z(images)[:, 1] - z(images)[:, 2],
        "contrast+doubt": lambda images: z(images)[:, 0] + z(images)[:, 1] - z(images)[:, 2],
    }
    describe = {"fakes": "none", "classifier": args.name, "parts": list(PARTS), "fitted": "CIFAKE test REAL 4000-9999"}
    minutes = trained_minutes(args.root / args.name)
    prefix = f"joint-{args.name}"
    score_kinds(args, data, prefix, scores, lambda kind: describe | {"input": kind}, lambda kind: {}, minutes)


def normal_scores(reference):
    """columns -> each column's standard-normal score by its quantile among ``reference()``'s rows (fitted on first
    use), so scores of any scale and skew add and share one Gaussian."""
    from sklearn.preprocessing import QuantileTransformer

    @cache
    def fitted():
        return QuantileTransformer(n_quantiles=1000, output_distribution="normal").fit(reference())

    return lambda columns: fitted().transform(columns)
