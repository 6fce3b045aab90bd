"""Scores read from a CIFAR-10 classifier of photographs: doubt and kin, ensembles, hidden layers, stability."""

from __future__ import annotations

from functools import cache, partial

import numpy as np

from .classifier import cifar_classes, embedding, load_classifier, train_semantic
from .common import (
    batched,
    cifake,
    fake_sources,
    joined,
    log,
    nearest_distances,
    remembered,
    score_kinds,
    shipped_score,
    softmax,
    trained_minutes,
)
from .lowlevel import denoising_errors
from .pixel import coding_costs, load_pixel


def cmd_semantic(args) -> None:
    """A CIFAR-10 classifier trained on CIFAKE train/REAL, scored by :func:`semantic_scores` (its doubt first:
    generators make objects it cannot name, the Inception score's cue per image). With ``--outliers`` (a
    ``--fakes``-style spec) it is also taught to be unsure of those images; with ``--rotation`` it also names
    each image's quarter turn (:func:`rotation_scores`); with ``--sd-classes`` Stable Diffusion's training images
    are ten classes of their own (:func:`sd_side_scores`)."""
    folder = args.root / args.name
    path = folder / "classifier.keras"
    data = cifake(args)
    outliers = fake_sources(args, args.outliers) if args.outliers else {}
    if not path.exists():
        train_semantic(args, data["train_REAL"], outliers, path, sd=data["train_FAKE"])
    model = load_classifier(path)
    test_y = cifar_classes(args.cifake / "test" / "REAL")
    embed = embedding(model)
    logits, _ = embed(data["test_REAL"][:2000])
    fine = logits.shape[1] // 10  # outputs per class (--fine's sub-classes, --sd-classes' two sides)
    accuracy = float(np.mean(logits.argmax(1) // fine == test_y[:2000]))
    log.info("CIFAR-10 test accuracy %.4f", accuracy)
    scores = semantic_scores(embed, data) | feature_scores(
        embed, data["train_REAL"], cifar_classes(args.cifake / "train" / "REAL")
    )
    if fine > 1:  # the doubt over the ten classes, each the sum of its outputs' softmax
        scores["doubt-classes"] = lambda images: 1 - softmax(embed(images)[0]).reshape(-1, 10, fine).sum(2).max(1)
    if args.sd_classes:
        scores |= sd_side_scores(embed, scores["doubt-classes"], data["test_REAL"][4000:6000])
    if len(model.outputs) > 1:
        scores |= rotation_scores(model, scores["doubt"], data["test_REAL"][4000:6000])
    minutes = trained_minutes(folder)

    def describe(kind: str) -> dict:
        fakes = "CIFAKE test 4000-9999 (REAL vs SD)" if kind == "linear-sd" else "none"
        fakes = "CIFAKE train/FAKE, ten classes of its own" if args.sd_classes else fakes
        return {"fakes": fakes, "outliers": args.outliers, "input": kind, "cifar10": accuracy}

    score_kinds(args, data, folder.name, scores, describe, skip=lambda kind: outliers, minutes=minutes)


def cmd_stability(args) -> None:
    """How far a ``semantic`` step's classifier (``--name``) moves when the ``diffusion`` step's denoiser
    (``--denoiser``), trained on photographs only, redraws an image from diffusion time ``--strengths`` (SDEdit):
    DIRE's question (Wang et al. 2023) asked of what the image shows instead of its pixels. A generator's image,
    already typical, may move less than a photograph, or, ambiguous, more. Rows ``stability-NAME:kind``: the
    softmax's KL divergence (``kl-tT``) and the features' cosine distance (``cosine-tT``) between image and redraw."""
    from cifake.generators import load_denoiser, resynthesise

    if not args.denoiser:
        raise SystemExit("stability needs --denoiser: a diffusion step's name")
    denoiser = load_denoiser(args.root / args.denoiser / "denoiser.keras")
    embed = embedding(load_classifier(args.root / args.name / "classifier.keras"))

    def moved(images: np.ndarray, t: float) -> np.ndarray:
        (logits, features), (logits_, features_) = embed(images), embed(resynthesise(denoiser, images, t, seed=0))
        p, q = softmax(logits), softmax(logits_)
        kl = (p * (np.log(p + 1e-12) - np.log(q + 1e-12))).sum(1)
        cosine = (features * features_).sum(1) / np.linalg.norm(features, axis=1) / np.linalg.norm(features_, axis=1)
        return np.stack([kl, 1 - cosine])

    scores = {}
    for t in args.strengths:
        at_t = remembered(partial(moved, t=t))
        scores[f"kl-t{t:g}"] = lambda images, at_t=at_t: at_t(images)[0]
        scores[f"cosine-t{t:g}"] = lambda images, at_t=at_t: at_t(images)[1]
    minutes = trained_minutes(args.root / args.name) + trained_minutes(args.root / args.denoiser)
    describe = {"fakes": "none", "classifier": args.name, "denoiser": args.denoiser}
    prefix = f"stability-{args.name}"
    score_kinds(args, cifake(args), prefix, scores, lambda kind: describe | {"input": kind}, lambda k: {}, minutes)


def cmd_ensemble(args) -> None:
    """The doubt of a deep ensemble (Lakshminarayanan et al. 2017): 1 - the largest class probability of the mean
    softmax of the ``--members`` classifiers (``semantic`` steps' folders), alone and joined (:func:`joined`) with
    the shipped detector, and the members' disagreement (``disagreement``: the entropy of the mean softmax less
    the members' mean entropy, the mutual information of Depeweg et al. 2018; high where the members are each sure
    of different classes); with ``--pixel`` (a ``pixel`` step's folder) or ``--denoiser`` (a ``diffusion`` step's)
    also with that model's code length or its error at the first of ``--strengths`` turned round (both
    smoothness), and with both; with ``--smooth-share s`` also with that score given a share s of the false alarms
    (rows ``...@s``; the others split the rest). Its minutes are the members' training minutes summed (the other
    model's are its own field)."""
    models = [load_classifier(args.root / member / "classifier.keras") for member in args.members]
    per_member = remembered(lambda images: np.stack([softmax(batched(m, images)[0]) for m in models]))

    def probabilities(images):
        return per_member(images).mean(0)

    def doubt(images):
        return 1 - probabilities(images).max(1)

    data = cifake(args)
    test_y = cifar_classes(args.cifake / "test" / "REAL")[:2000]
    accuracy = float(np.mean(probabilities(data["test_REAL"][:2000]).argmax(1) == test_y))
    log.info("CIFAR-10 test accuracy %.4f", accuracy)
    minutes = sum(trained_minutes(args.root / member) for member in args.members)
    reference = data["test_REAL"][4000:6000]
    scores = {"doubt": doubt, "doubt+shipped": joined((doubt, shipped_score), reference)}
    if len(models) > 1:
        scores["disagreement"] = lambda images: disagreement(per_member(images))
    others = smoothness_scores(args)
    share = args.smooth_share  # 0: the scores share the false alarms equally
    for name, (smooth, _) in others.items():
        scores[f"doubt+{name}"] = joined((doubt, smooth), reference)
        scores[f"doubt+{name}+shipped"] = joined((doubt, smooth, shipped_score), reference)
        if share:
            rest = (1 - share) / 2
            scores[f"doubt+{name}@{share:g}"] = joined((doubt, smooth), reference, (1 - share, share))
            scores[f"doubt+{name}@{share:g}+shipped"] = joined(
                (doubt, smooth, shipped_score), reference, (rest, share, rest)
            )

    def describe(kind: str) -> dict:
        record = {"fakes": "none", "members": args.members, "input": kind, "cifar10": accuracy}
        for name, (_, fields) in others.items():
            record |= fields if name in kind else {}
        return record | ({"smooth_share": share} if "@" in kind else {})

    score_kinds(args, data, args.name, scores, describe, skip=lambda kind: {}, minutes=minutes)


def disagreement(per_member: np.ndarray) -> np.ndarray:
    """(members, N, classes) softmaxes -> per image, the entropy of their mean less their mean entropy (nats)."""

    def entropy(p: np.ndarray) -> np.ndarray:
        return -(p * np.log(np.clip(p, 1.0e-12, None))).sum(-1)

    return entropy(per_member.mean(0)) - entropy(per_member).mean(0)


def sd_side_scores(embed, doubt, real: np.ndarray) -> dict:
    """Scores of a ``--sd-classes`` classifier: the softmax share on Stable Diffusion's side (``sd-side``: a
    detector of SD in the same network) and that joined with the doubt over the ten objects (:func:`joined` under
    the ``real`` photographs), as the generalist file joins the shipped detector and a classifier's doubt."""

    def sd_side(images):
        return softmax(embed(images)[0]).reshape(-1, 10, 2)[:, :, 1].sum(1)

    return {"sd-side": sd_side, "doubt-classes+sd-side": joined((doubt, sd_side), real)}


def smoothness_scores(args) -> dict:
    """name -> (score, record fields) for the ``--pixel`` model's code length and the ``--denoiser``'s error at the
    first of ``--strengths``, each negated (smoother is more suspect), for those given."""
    from cifake.generators import load_denoiser

    out = {}
    if args.pixel:
        pixel = load_pixel(args.root / args.pixel / "pixelcnn.keras")
        minutes = trained_minutes(args.root / args.pixel)
        out[args.pixel] = (
            lambda images: -coding_costs(pixel, images)[0],
            {"pixel": args.pixel, "pixel_minutes": minutes},
        )
    if args.denoiser:
        errors = denoising_errors(
            load_denoiser(args.root / args.denoiser / "denoiser.keras"), args.strengths[:1], args.seed
        )
        minutes = trained_minutes(args.root / args.denoiser)
        fields = {"denoiser": args.denoiser, "denoiser_minutes": minutes, "times": args.strengths[:1]}
        out[args.denoiser] = (lambda images: -errors(images)[:, 0], fields)
    return out


def semantic_scores(embed, data) -> dict:
    """Scores of fakeness from the classifier: its doubt (1 - max softmax), that of its mean softmax over six
    views (:func:`_views`), its largest logit negated (Hendrycks et al. 2022: unlike the softmax, not squeezed by
    label smoothing), GradNorm negated (Huang et al. 2021: the gradient of the softmax's divergence from uniform
    on the bias-free head is small away from the training photographs), how far its features move under Gaussian
    noise of 4/255 (1 - their cosine; RIGID, He et al. 2024: generated images sit less stably in a model's feature
    space), a logistic regression on its features (CIFAKE test REAL vs SD, images 4000-9999 of each: not scored),
    and the distance to the nearest real photographs' features (one-class). Test REAL 0-1999 is scored,
    2000-3999 sets the thresholds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import NearestNeighbors
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def doubt(images):
        return 1 - softmax(embed(images)[0]).max(1)

    def gradnorm(images):  # the L1 norm of the head's gradient, f (p - 1/C)^T, is |f|_1 |p - 1/C|_1
        logits, features = embed(images)
        p = softmax(logits)
        return -np.abs(features).sum(1) * np.abs(p - 1 / p.shape[1]).sum(1)

    def doubt_views(images):
        p = np.mean([softmax(embed(view)[0]) for view in _views(images)], axis=0)
        return 1 - p.max(1)

    def noise_cosine(images):
        noisy = images + np.random.default_rng(0).normal(0, 4, images.shape)
        a, b = embed(images.astype(np.float32))[1], embed(np.clip(noisy, 0, 255).astype(np.float32))[1]
        return 1 - (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    @cache
    def fitted():  # on first use: a rerun whose kinds are all recorded fits nothing
        real, fake = embed(data["test_REAL"][4000:])[1], embed(data["test_FAKE"][4000:])[1]
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        probe.fit(np.r_[real, fake], np.r_[np.zeros(len(real)), np.ones(len(fake))])
        scaler = StandardScaler().fit(real)
        return probe, scaler, NearestNeighbors(n_neighbors=5).fit(scaler.transform(real))

    def knn_real(images):
        _, scaler, neighbours = fitted()
        return neighbours.kneighbors(scaler.transform(embed(images)[1]))[0].mean(1)

    return {
        "doubt": doubt,
        "maxlogit": lambda images: -embed(images)[0].max(1),
        "doubt-views": doubt_views,
        "gradnorm": gradnorm,
        "noise-cosine": noise_cosine,
        "linear-sd": lambda images: fitted()[0].predict_proba(embed(images)[1])[:, 1],
        "knn-real": knn_real,
        "doubt+shipped": joined((doubt, shipped_score), data["test_REAL"][4000:6000]),
    }


def feature_scores(embed, real: np.ndarray, classes: np.ndarray) -> dict:
    """Scores from the classifier's pooled features of the ``real`` training photographs: the energy of its logits
    (Liu et al. 2020), the cosine distance to the 50th nearest training photograph (Sun et al. 2022), and the
    Mahalanobis distance to the nearest class mean under one shared covariance (Lee et al. 2018)."""
    from scipy.special import logsumexp
    from sklearn.covariance import LedoitWolf
    from sklearn.neighbors import NearestNeighbors

    @cache
    def fitted():  # on first use: a rerun whose kinds are all recorded embeds nothing
        features = embed(real)[1]
        unit = features / np.linalg.norm(features, axis=1, keepdims=True)
        means = np.stack([features[classes == k].mean(0) for k in range(10)])
        return NearestNeighbors(n_neighbors=50).fit(unit), means, LedoitWolf().fit(features - means[classes])

    def knn(images):
        f = embed(images)[1]
        return fitted()[0].kneighbors(f / np.linalg.norm(f, axis=1, keepdims=True))[0][:, -1]

    def mahalanobis(images):
        f = embed(images)[1]
        _, means, shared = fitted()
        return np.min([shared.mahalanobis(f - mean) for mean in means], axis=0)

    return {
        "energy": lambda images: -logsumexp(embed(images)[0], axis=1),
        "knn-train": knn,
        "mahalanobis": mahalanobis,
    }


def _views(images: np.ndarray) -> list[np.ndarray]:
    """Six views of each image, airbench's test-time augmentation: as is and mirrored, each also shifted one
    pixel up-left and down-right (reflected at the border)."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    shifted = [images, padded[:, :-2, :-2], padded[:, 2:, 2:]]
    return shifted + [view[:, :, ::-1] for view in shifted]


def rotation_scores(model, doubt, real: np.ndarray) -> dict:
    """How badly the classifier names the quarter turns of an image (mean cross-entropy over the four), alone
    and added to its doubt (each in standard deviations of ``real`` photographs' scores)."""
    import keras

    def rotation(images):
        losses = []
        for k in range(4):
            turned = np.rot90(images, k, axes=(1, 2))
            logits = batched(model, turned)[1]
            losses.append(
                np.asarray(
                    keras.losses.sparse_categorical_crossentropy(np.full(len(images), k), logits, from_logits=True)
                )
            )
        return np.mean(losses, axis=0)

    stats = [(v.mean(), v.std()) for v in (s(real) for s in (doubt, rotation))]  # each scored once

    def both(images):
        return sum((s(images) - m) / sd for s, (m, sd) in zip((doubt, rotation), stats, strict=True))

    return {"rotation": rotation, "doubt+rotation": both}


def cmd_layers(args) -> None:
    """The statistics of every hidden layer of a ``semantic`` step's classifier (``--name``) as one-class scores,
    fitted on 4 000 of the train/REAL photographs it learnt (rows ``layers-NAME:kind``): each layer's channel means
    and spreads under one Gaussian (the feature ensemble of Lee et al. 2018, without their fakes) and its Gram
    matrix outside the photographs' 0.1-99.9 % range per entry (Sastry & Oore 2020), each summed over layers in
    standard deviations of test REAL 2000-3999; and the last layer's Gaussian distance turned round (too typical a
    photograph), alone and with half its weight taken from the doubt."""
    data = cifake(args)
    statistics = layer_statistics(load_classifier(args.root / args.name / "classifier.keras"))
    columns = remembered(layer_columns(statistics, data["train_REAL"][::10][:4000]))
    reference = columns(data["test_REAL"][2000:4000])
    mean, spread = reference.mean(0), reference.std(0) + 1.0e-9

    def standard(images):
        return (columns(images) - mean) / spread

    def doubt_typical(images):
        z = standard(images)
        return z[:, -1] - 0.5 * z[:, -3]

    scores = {
        "stats": lambda images: standard(images)[:, 0:-1:2].sum(1),
        "gram": lambda images: standard(images)[:, 1:-1:2].sum(1),
        "deep-typical": lambda images: -standard(images)[:, -3],
        "doubt-typical": doubt_typical,
    }
    minutes = trained_minutes(args.root / args.name)
    describe = {"fakes": "none", "classifier": args.name}
    prefix = f"layers-{args.name}"
    score_kinds(args, data, prefix, scores, lambda kind: describe | {"input": kind}, lambda kind: {}, minutes)


def layer_statistics(model):
    """images -> (class logits, per hidden activation layer: (channel means and spreads, upper Gram entries))."""
    import keras

    hidden = [layer.output for layer in model.layers if isinstance(layer, keras.layers.Activation)][:-1]
    network = keras.Model(model.input, [model.outputs[0], *hidden])

    def statistics(images):
        logits, *layers = batched(network, images.astype(np.float32))
        per_layer = []
        for a in layers:
            a = a.reshape(len(a), -1, a.shape[-1])
            upper = np.triu_indices(a.shape[-1])
            gram = np.einsum("npc,npd->ncd", a, a) / a.shape[1]
            per_layer.append((np.c_[a.mean(1), a.std(1)], gram[:, upper[0], upper[1]]))
        return logits, per_layer

    return statistics


def layer_columns(statistics, train: np.ndarray):
    """images -> (N, 2 x layers + 1): per layer the Gaussian distance of its means and spreads and the Gram
    entries' relative excess beyond the ``train`` photographs' 0.1-99.9 % range, then the doubt; in slices of
    500 images (a Gram matrix of 256 channels is 33 000 numbers an image)."""
    from sklearn.covariance import LedoitWolf

    fitted = [statistics(train[i : i + 500])[1] for i in range(0, len(train), 500)]
    layers = [[np.concatenate([part[k][j] for part in fitted]) for j in (0, 1)] for k in range(len(fitted[0]))]
    gaussians = [LedoitWolf().fit(moments) for moments, _ in layers]
    ranges = [np.quantile(gram, [0.001, 0.999], axis=0) for _, gram in layers]

    def excess(gram, low, high):
        below, above = np.maximum(low - gram, 0), np.maximum(gram - high, 0)
        return (below / (np.abs(low) + 1e-6) + above / (np.abs(high) + 1e-6)).sum(1)

    def columns_of(images):
        logits, per_layer = statistics(images)
        cols = []
        for (moments, gram), gaussian, (low, high) in zip(per_layer, gaussians, ranges, strict=True):
            cols += [gaussian.mahalanobis(moments), excess(gram, low, high)]
        return np.stack([*cols, 1 - softmax(logits).max(1)], axis=1)

    return lambda images: np.concatenate([columns_of(images[i : i + 500]) for i in range(0, len(images), 500)])


def cmd_patches(args) -> None:
    """Local novelty (PatchCore, Roth et al. 2022) in a ``semantic`` step's classifier (``--name``): at the last
    hidden layer of each of its 15x15 and 7x7 grids, each position's features averaged over its 3x3 neighbours, and
    their distance to the nearest of 100 000 such patches from 4 000 train/REAL photographs (every tenth); an image
    scores its farthest patch (``rN-max``: something local no photograph has). Its nearest patches' mean distance
    turned round (``rN-typical``) asks the reverse: an image made only of the commonest patches."""
    data = cifake(args)
    grids = patch_grids(load_classifier(args.root / args.name / "classifier.keras"), sizes=(15, 7))
    banks = [_drawn(bank, 100_000, args.seed) for bank in grids(data["train_REAL"][::10][:4000])]
    columns = remembered(lambda images: _patch_columns(grids(images), banks))
    scores = {}
    for j, size in enumerate((15, 7)):
        scores[f"r{size}-max"] = partial(lambda images, j: columns(images)[:, 2 * j], j=j)
        scores[f"r{size}-typical"] = partial(lambda images, j: -columns(images)[:, 2 * j + 1], j=j)
    minutes = trained_minutes(args.root / args.name)
    describe = {"fakes": "none", "classifier": args.name, "bank": "100 000 patches of 4 000 train/REAL"}
    prefix = f"patches-{args.name}"
    score_kinds(args, data, prefix, scores, lambda kind: describe | {"input": kind}, lambda kind: {}, minutes)


def patch_grids(model, sizes: tuple[int, ...]):
    """images -> per grid size in ``sizes``: (N, positions, channels), the last hidden activation of that size
    averaged over each position's 3x3 neighbours inside the grid (PatchCore's local pooling)."""
    import keras

    last = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Activation) and layer.output.shape[1] in sizes:
            last[layer.output.shape[1]] = layer.output
    if missing := [size for size in sizes if size not in last]:
        raise SystemExit(f"the classifier has no activation on a grid of {missing}: patches reads airbench's grids")
    network = keras.Model(model.input, [keras.layers.AveragePooling2D(3, 1, "same")(last[s]) for s in sizes])

    def grids(images: np.ndarray) -> list[np.ndarray]:
        return [g.reshape(len(g), -1, g.shape[-1]) for g in batched(network, images.astype(np.float32))]

    return grids


def _drawn(grid: np.ndarray, count: int, seed: int) -> np.ndarray:
    patches = grid.reshape(-1, grid.shape[-1])
    keep = np.random.default_rng(seed).choice(len(patches), min(count, len(patches)), replace=False)
    return patches[keep].astype(np.float32)


def _patch_columns(grids: list[np.ndarray], banks: list[np.ndarray]) -> np.ndarray:
    """Per image and grid: its patches' largest and mean distance to their nearest patch in the grid's bank."""
    columns = []
    for grid, bank in zip(grids, banks, strict=True):
        distances = nearest_distances(grid.reshape(-1, grid.shape[-1]), bank).reshape(grid.shape[:2])
        columns += [distances.max(1), distances.mean(1)]
    return np.stack(columns, axis=1)
