"""The generalisation probe's scores (benchmarks/probe, issue 40): a denoiser's error is its miss of the noise actually
added at each diffusion time, a step's scores share one pass per image set, a join gives each score its share
of the false alarms, a patch's novelty is its distance to the nearest patch of photographs, and an ensemble's
disagreement is what its members' mean softmax is unsure of beyond each member's own doubt; the classifier
``extract`` takes from the shipped generalist is the one whose doubt the file reads; the frozen-feature probe reads
each hidden layer's channel means and maxima beside the pooled features; the robust classifier trains on images
moved up its loss; the sub-class labels split each class by its feature clusters; Stable Diffusion's images
join as ten classes of their own, and their side's share of the softmax is read back; GradNorm is the L1 norm of
the head's gradient."""

from __future__ import annotations

import argparse
import importlib

import numpy as np
import pytest
import tensorflow as tf

from .conftest import ROOT, load_benchmark


@pytest.fixture(scope="module")
def probe():
    load_benchmark("generalisation_probe")  # its folder on the path: its steps live in benchmarks/probe
    return importlib.import_module("probe.lowlevel"), importlib.import_module("probe.common")


@pytest.fixture(scope="module")
def semantic():
    load_benchmark("generalisation_probe")
    return importlib.import_module("probe.semantic")


def test_errors_are_the_miss_of_the_added_noise(probe):
    """A denoiser that reads the noise as if the image were mid-grey misses it by signal x pixel / noise exactly."""
    from cifake.generators import diffusion_rates, unit_pixels

    lowlevel, _ = probe

    def as_if_grey(inputs, training=False):
        noisy, variance = inputs
        return noisy / np.sqrt(variance)

    times = [0.0, 0.3, 0.7]
    images = np.stack([np.full((32, 32, 3), v, np.uint8) for v in (0, 60, 200, 255)])
    errors = lowlevel.denoising_errors(as_if_grey, times, seed=0, draws=2, batch=3)(images)
    unit = unit_pixels(images[:, 0, 0, 0]).numpy()
    for j, t in enumerate(times):
        noise_rate, signal_rate = (float(v) for v in diffusion_rates(tf.constant(t)))
        np.testing.assert_allclose(np.exp(errors[:, j]), (signal_rate * unit / noise_rate) ** 2, rtol=1e-4)


def test_each_image_set_is_computed_once(probe):
    _, common = probe
    calls = []
    columns = common.remembered(lambda images: calls.append(len(images)) or images.sum((1, 2, 3)))
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    first = columns(images)
    assert np.array_equal(columns(images.copy()), first)
    columns(images[:2])
    columns(images.reshape(2, 64, 32, 3))  # the same bytes in another shape are another set
    assert calls == [4, 2, 2]


def test_a_join_gives_each_score_its_share_of_false_alarms(probe):
    _, common = probe
    real = np.stack([np.arange(1000.0), np.arange(1000.0)], axis=1)  # both scores alike on photographs
    strange_first, strange_second = np.array([[990.0, 0.0]]), np.array([[0.0, 990.0]])
    scores = (lambda x: x[:, 0], lambda x: x[:, 1])
    equal = common.joined(scores, real)
    assert equal(strange_first) == equal(strange_second)
    leaning = common.joined(scores, real, shares=(0.8, 0.2))
    assert leaning(strange_first) > leaning(strange_second)  # the first score holds more of the budget
    np.testing.assert_allclose(leaning(strange_first), -(1 - 990 / 1000) / 0.8)  # 10 of 1 000 score as high


def test_nearest_distances_match_a_search_of_every_pair(probe):
    """Chunked |q|^2 - 2 q.b + |b|^2 gives each query's distance to its nearest (and k-th nearest) bank row, across
    chunk edges."""
    _, common = probe
    rng = np.random.default_rng(0)
    bank, queries = rng.normal(size=(300, 16)).astype(np.float32), rng.normal(size=(70, 16)).astype(np.float32)
    queries[:5] = bank[[3, 50, 150, 299, 0]]  # some queries are bank rows: distance 0
    every_pair = np.linalg.norm(queries[:, None] - bank[None], axis=2)
    found = common.nearest_distances(queries, bank, chunk=32)
    np.testing.assert_allclose(found, every_pair.min(1), atol=5e-3)  # float32 cancellation near 0
    assert np.all(found[:5] < 1e-2)
    third = common.nearest_distances(queries, bank, k=3, chunk=32)
    np.testing.assert_allclose(third, np.sort(every_pair, axis=1)[:, 2], atol=5e-3)


def test_disagreement_is_the_mean_softmax_entropy_beyond_the_members_own(semantic):
    sure_a, sure_b, unsure = np.eye(3)[0], np.eye(3)[1], np.full(3, 1 / 3)
    first = np.stack([sure_a, unsure, sure_a, sure_a])
    members = np.stack([first, np.stack([sure_b, unsure, sure_a, unsure])])  # (2 members, 4 images, 3 classes)
    one_sure_one_not = -(2 / 3 * np.log(2 / 3) + 2 / 6 * np.log(1 / 6)) - np.log(3) / 2  # mean (2/3, 1/6, 1/6)
    np.testing.assert_allclose(semantic.disagreement(members), [np.log(2), 0, 0, one_sure_one_not], atol=1e-9)


def test_the_extracted_classifier_gives_the_shipped_generalists_doubt():
    """``extract`` saves the generalist's own classifier: its largest class probability is the file's, and it has
    the ``features`` layer the probe's scores read."""
    import keras

    from cifake.model import load_model

    load_benchmark("generalisation_probe")
    classifier_of = importlib.import_module("probe.classifier").classifier_of
    generalist = load_model(ROOT / "models" / "pretrained" / "cifake-generalist.keras")
    classifier = classifier_of(generalist)
    images = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
    inside = keras.Model(generalist.input, generalist.get_layer("minus_largest").output)(images)
    largest = keras.ops.convert_to_numpy(keras.ops.softmax(classifier(images))).max(1)
    np.testing.assert_allclose(-largest, np.asarray(inside)[:, 0], atol=1e-6)
    assert classifier.get_layer("features").output.shape[-1] == 256


def test_frozen_features_are_each_layers_channel_means_and_maxima():
    """A two-layer network's pooled columns: ReLU's then its square's channel means and maxima, then ``features``;
    ``last`` is the features alone."""
    import keras

    load_benchmark("generalisation_probe")
    linear = importlib.import_module("probe.linear")
    inputs = keras.Input((4, 4, 2))
    first = keras.layers.Activation("relu")(inputs)
    second = keras.layers.Activation(keras.ops.square)(first)
    features = keras.layers.Activation("linear", name="features")(keras.layers.GlobalAveragePooling2D()(second))
    model = keras.Model(inputs, keras.layers.Dense(3)(features))
    x = np.random.default_rng(0).normal(size=(5, 4, 4, 2)).astype(np.float32)
    relu = np.maximum(x, 0)
    low, last = linear.pooled_layers(model)(x)
    expected = [relu.mean((1, 2)), relu.max((1, 2)), (relu**2).mean((1, 2)), (relu**2).max((1, 2))]
    np.testing.assert_allclose(low, np.concatenate(expected, axis=1), rtol=1e-5)
    np.testing.assert_allclose(last, (relu**2).mean((1, 2)), rtol=1e-5)
    np.testing.assert_array_equal(linear._columns((low, last), "last"), last)
    np.testing.assert_array_equal(linear._columns((low, last), "all"), np.c_[low, last])


@pytest.mark.parametrize("eps, rises", [(0.0, False), (8 / 255, True)])
def test_the_robust_classifier_trains_on_images_moved_up_its_loss(eps, rises):
    """At a learning rate of 0, one training step's loss is the clean loss when eps is 0 (plain-colour images, which
    flips and reflected shifts leave as they are) and well above it at 8/255."""
    import keras

    load_benchmark("generalisation_probe")
    classifier = importlib.import_module("probe.classifier")
    net = classifier.airbench_net(widths=(8, 8, 8), augment=False)
    head = next(layer for layer in net.layers if isinstance(layer, keras.layers.Dense))
    head.set_weights([head.get_weights()[0] * 30])  # sure logits: the loss then moves with the pixels
    task = classifier.adversarial_task(net, eps, seed=0)
    loss = classifier.outlier_exposure_loss(0.5)
    task.compile(keras.optimizers.SGD(0.0), loss=loss)
    rng = np.random.default_rng(0)
    x = np.broadcast_to(rng.uniform(30, 220, (64, 1, 1, 3)), (64, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    clean = float(np.mean(loss(y, net(x, training=True))))
    trained = task.fit(x, y, batch_size=64, epochs=1, verbose=0).history["loss"][0]
    if rises:
        assert trained > clean + 0.05
    else:
        assert trained == pytest.approx(clean, abs=1e-4)


def test_the_robust_classifier_trains_under_bfloat16():
    """The step trains as the probe runs it, under mixed bfloat16 (its attack works in float32)."""
    import keras

    load_benchmark("generalisation_probe")
    classifier = importlib.import_module("probe.classifier")
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        task = classifier.adversarial_task(classifier.airbench_net(widths=(8, 8, 8), augment=False), 4 / 255, seed=0)
        task.compile(keras.optimizers.SGD(0.1), loss=classifier.outlier_exposure_loss(0.5, 0.2))
        x = np.random.default_rng(0).uniform(0, 255, (64, 32, 32, 3)).astype(np.float32)
        history = task.fit(x, np.arange(64) % 10, batch_size=32, epochs=1, verbose=0).history
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(history["loss"][0])


def test_sub_classes_split_each_class_by_its_feature_clusters():
    """Two classes, each made of three directions in feature space: each direction becomes one sub-class of its
    own class (``class * k + cluster``), never shared with another direction or class."""
    load_benchmark("generalisation_probe")
    classifier = importlib.import_module("probe.classifier")
    rng = np.random.default_rng(0)
    directions = np.eye(6)[rng.permutation(6)]
    which = np.repeat(np.arange(6), 40)
    features = (directions[which] + rng.normal(0, 0.05, (240, 6))) * rng.uniform(0.5, 3, (240, 1))
    classes = which // 3
    fine = classifier.fine_classes(features, classes, 3, seed=0)
    assert np.array_equal(fine // 3, classes)
    pairs = {(int(w), int(f)) for w, f in zip(which, fine, strict=True)}
    assert len(pairs) == 6 and len({f for _, f in pairs}) == 6


def test_a_sub_class_classifier_keeps_its_outputs_for_inference():
    """``for_inference`` rebuilds a 50-output classifier with 50 outputs and the same logits."""
    load_benchmark("generalisation_probe")
    classifier = importlib.import_module("probe.classifier")
    net = classifier.airbench_net(widths=(8, 8, 8), augment=False, outputs=50)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    plain = classifier.for_inference(net)
    assert plain.output.shape[-1] == 50
    np.testing.assert_allclose(plain(x, training=False), net(x, training=False), atol=1e-5)


def test_sd_images_join_as_ten_classes_of_their_own(tmp_path):
    """``--sd-classes``: a photograph of object k is class 2k, Stable Diffusion's image of object k is 2k + 1 (its
    class read from CIFAKE's file name), and SD's images follow the photographs in the same order as the labels."""
    load_benchmark("generalisation_probe")
    classifier = importlib.import_module("probe.classifier")
    fake = tmp_path / "train" / "FAKE"
    fake.mkdir(parents=True)
    for name in ("0000.jpg", "0000 (3).jpg", "0001 (10).jpg"):  # objects 0, 2, 9 in file-name order: 2, 0, 9
        (fake / name).touch()
    args = argparse.Namespace(
        cifake=tmp_path, arch="airbench", fine=1, rotation=False, mixup=0.0, adversarial=0.0, holdout="none"
    )
    real = np.zeros((2, 32, 32, 3), np.uint8)
    sd = np.arange(3, dtype=np.uint8)[:, None, None, None] + np.ones((3, 32, 32, 3), np.uint8)
    x, y = classifier.with_sd_classes(args, real, np.array([4, 7]), sd)
    assert y.tolist() == [8, 14, 5, 1, 19]
    assert np.array_equal(x[2:], sd) and len(x) == 5


def test_the_sd_side_is_the_softmax_on_sds_outputs(semantic):
    """``sd-side`` sums the softmax of the odd (SD) outputs; an image whose logits favour SD's outputs scores
    higher than one that favours the photographs'."""
    logits = np.zeros((2, 20), np.float32)
    logits[0, 1::2] = 3.0  # SD's side
    logits[1, 0::2] = 3.0  # the photographs' side
    images = np.zeros((2, 32, 32, 3), np.float32)
    scores = semantic.sd_side_scores(lambda _: (logits, None), lambda im: np.zeros(len(im)), images)
    side = scores["sd-side"](images)
    expected = np.exp(3.0) / (np.exp(3.0) + 1)
    np.testing.assert_allclose(side, [expected, 1 - expected], rtol=1e-5)


def test_gradnorm_is_the_head_gradients_l1_norm(semantic):
    """``gradnorm`` is minus the L1 norm of the gradient, on a bias-free linear head's kernel, of the softmax's
    cross-entropy to the uniform distribution (Huang et al. 2021), computed here by TensorFlow."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(5, 8)).astype(np.float32)
    kernel = tf.Variable(rng.normal(size=(8, 10)).astype(np.float32))
    with tf.GradientTape() as tape:
        logits = tf.matmul(features, kernel)
        loss = -tf.reduce_sum(tf.nn.log_softmax(logits), axis=1) / 10
    jacobian = tape.jacobian(loss, kernel).numpy()  # (5, 8, 10): each image's gradient
    expected = -np.abs(jacobian).sum((1, 2))
    logits_ = logits.numpy()
    images = np.zeros((5, 32, 32, 3), np.float32)
    score = semantic.semantic_scores(lambda _: (logits_, features), {"test_REAL": images})["gradnorm"](images)
    np.testing.assert_allclose(score, expected, rtol=1e-4)


@pytest.mark.parametrize(
    "given, outliers",
    [({"rotation": True}, {"sd": 1}), ({"mixup": 0.4, "adversarial": 4.0}, {}), ({"fine": 5, "sd_classes": True}, {}),
     ({"sd_classes": True}, {"sd": 1}), ({"adversarial": 4.0, "arch": "vgg"}, {}), ({"fine": 5, "fine_from": ""}, {})],
)  # fmt: skip
def test_each_training_variant_is_a_probe_of_its_own(given, outliers):
    """Two variants at once, an airbench variant on another network, or ``--fine`` without its teacher stop the
    step before it trains; one variant alone passes."""
    load_benchmark("generalisation_probe")
    classifier = importlib.import_module("probe.classifier")
    plain = dict(rotation=False, mixup=0.0, adversarial=0.0, fine=1, fine_from="t", sd_classes=False, arch="airbench")
    with pytest.raises(SystemExit):
        classifier.one_probe(argparse.Namespace(**plain | given), outliers)
    classifier.one_probe(argparse.Namespace(**plain | {"sd_classes": True}), {})
