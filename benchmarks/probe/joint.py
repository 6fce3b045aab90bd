"""Where a classifier's scores sit together among photographs: a one-class density over several scores at once."""

from __future__ import annotations

from functools import cache

import numpy as np

from .classifier import cifar_classes, embedding, load_classifier
from .common import cifake, joined, remembered, score_kinds, shipped_score, trained_minutes
from .semantic import feature_scores, semantic_scores

PARTS = ("doubt", "knn-train", "mahalanobis")


def cmd_joint(args) -> None:
    """The ``semantic`` step's classifier (``--name``) read through three of its scores at once (rows
    ``joint-NAME:kind``): its doubt, the cosine distance to the 50th nearest training photograph (``knn-train``) and
    the Mahalanobis distance to the nearest class mean. The generators' features sat far from every training
    photograph (knn-train AUC 0.67-0.68) yet near a class mean (Mahalanobis 0.41-0.43): an average of objects, a
    pairing photographs may rarely show. Each score becomes a normal score by its quantile among CIFAKE test REAL
    4000-9999 (:func:`normal_scores`); ``density`` is the negative log density of a four-component Gaussian mixture
    fitted on those photographs (one-class: no fakes), ``contrast`` knn-train's normal score less Mahalanobis', and
    ``contrast+doubt`` that plus the doubt's, also joined with the shipped detector (:func:`joined`, as the
    generalist file joins the doubt). With ``--members`` (``semantic`` steps' folders) each normal score is
    the mean of the members' (``--name`` then only names the rows)."""
    from sklearn.mixture import GaussianMixture

    data = cifake(args)
    names = args.members or [args.name]
    classes = cifar_classes(args.cifake / "train" / "REAL")
    members = [member_normal_scores(args, data, classes, name) for name in names]

    def z(images):
        return np.mean([member(images) for member in members], axis=0)

    @cache
    def mixture():
        return GaussianMixture(4, covariance_type="full", random_state=args.seed).fit(z(data["test_REAL"][4000:]))

    def contrast_doubt(images):
        doubt, knn, mahalanobis = z(images).T
        return doubt + knn - mahalanobis

    scores = {
        "density": lambda images: -mixture().score_samples(z(images)),
        "contrast": lambda images: z(images)[:, 1] - z(images)[:, 2],
        "contrast+doubt": contrast_doubt,
        "contrast+doubt+shipped": joined((contrast_doubt, shipped_score), data["test_REAL"][4000:6000]),
    }
    describe = {"fakes": "none", "classifier": args.name, "parts": list(PARTS), "fitted": "CIFAKE test REAL 4000-9999"}
    describe |= {"members": names} if args.members else {}
    minutes = sum(trained_minutes(args.root / name) for name in names)
    prefix = f"joint-{args.name}"
    score_kinds(args, data, prefix, scores, lambda kind: describe | {"input": kind}, lambda kind: {}, minutes)


def member_normal_scores(args, data, classes: np.ndarray, name: str):
    """images -> (N, 3) normal scores of the :data:`PARTS` of the classifier in folder ``name`` (``classes``: the
    train/REAL photographs' CIFAR-10 classes), once per image set."""
    embed = embedding(load_classifier(args.root / name / "classifier.keras"))
    every = semantic_scores(embed, data) | feature_scores(embed, data["train_REAL"], classes)
    columns = remembered(lambda images: np.stack([every[part](images) for part in PARTS], axis=1))
    normal = normal_scores(lambda: columns(data["test_REAL"][4000:]))
    return remembered(lambda images: normal(columns(images)))


def normal_scores(reference):
    """columns -> each column's standard-normal score by its quantile among ``reference()``'s rows (fitted on first
    use), so scores of any scale and skew add and share one Gaussian."""
    from sklearn.preprocessing import QuantileTransformer

    @cache
    def fitted():
        return QuantileTransformer(n_quantiles=1000, output_distribution="normal").fit(reference())

    return lambda columns: fitted().transform(columns)
