"""The generalist file (cifake.generalist): a detector and a classifier's doubt joined in one safe Keras model.

Toy parts with known behaviour: the detector's P(Fake) grows with brightness; the classifier is confident on
images whose red and blue differ and unsure (uniform softmax) where they are equal.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cifake.generalist import joined_detector
from cifake.model import INPUT_SHAPE, LOGITS_LAYER, load_model, predict_proba, save_model


def _frozen(x, kernel: np.ndarray, bias: np.ndarray, activation=None):
    dense = keras.layers.Dense(kernel.shape[1], activation=activation)
    out = dense(x)
    dense.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return out


def toy_parts() -> tuple[keras.Model, keras.Model]:
    pixels = keras.Input(INPUT_SHAPE)
    means = keras.layers.GlobalAveragePooling2D()(pixels)
    detector = keras.Model(pixels, _frozen(means, np.full((3, 1), 1 / 96), np.array([-4.0]), "sigmoid"))
    red_minus_blue = np.zeros((3, 10))
    red_minus_blue[0], red_minus_blue[2] = np.arange(10) - 4.5, -(np.arange(10) - 4.5)
    classifier = keras.Model(pixels, _frozen(means, red_minus_blue / 10, np.zeros(10)))
    return detector, classifier


def photographs(n: int, seed: int) -> np.ndarray:
    """Mid-bright images with red and blue far apart (the toy classifier is sure of them)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(60, 140, (n, 1, 1, 1))
    colour = rng.choice([-1, 1], (n, 1, 1, 1)) * rng.uniform(40, 60, (n, 1, 1, 1))
    x = np.repeat(np.repeat(base, 32, 1), 32, 2).repeat(3, 3)
    x[..., 0:1] += colour
    x[..., 2:3] -= colour
    return np.clip(x + rng.normal(0, 3, x.shape), 0, 255).astype(np.float32)


@pytest.fixture(scope="module")
def generalist():
    detector, classifier = toy_parts()
    return joined_detector(detector, classifier, photographs(400, 0), photographs(400, 1), real_share=0.95)


def test_threshold_calls_the_share_of_real_photographs_real(generalist):
    called_real = predict_proba(generalist, photographs(400, 1)) < 0.5
    assert called_real.mean() == pytest.approx(0.95, abs=0.01)
    fresh = predict_proba(generalist, photographs(2000, 2)) < 0.5
    assert 0.92 <= fresh.mean() <= 0.98  # a new draw of the same photographs: about the same share


def test_an_image_strange_to_either_part_is_called_fake(generalist):
    typical = photographs(50, 3)
    too_bright = typical.copy() + 100.0  # the detector's strangeness (colour kept)
    grey = np.repeat(typical.mean(-1, keepdims=True), 3, -1)  # the classifier's doubt (brightness kept)
    assert (predict_proba(generalist, np.clip(too_bright, 0, 255)) >= 0.5).all()
    assert (predict_proba(generalist, grey) >= 0.5).all()
    assert (predict_proba(generalist, typical) < 0.5).mean() >= 0.8


def test_output_is_monotone_in_each_score(generalist):
    image = photographs(1, 4)
    brighter = np.stack([np.clip(image[0] + shift, 0, 255) for shift in np.linspace(-60, 80, 15)])
    p = predict_proba(generalist, brighter)
    assert np.all(np.diff(p) >= -1e-6)
    assert p[-1] > p[0]


def test_file_loads_safely_with_the_contract(generalist, tmp_path):
    path = tmp_path / "generalist.keras"
    save_model(generalist, path)
    loaded = load_model(path)
    images = photographs(20, 5)
    out = np.asarray(loaded(images))
    assert out.dtype == np.float32 and out.shape == (20, 1)
    assert ((out >= 0) & (out <= 1)).all()
    np.testing.assert_allclose(out.reshape(-1), predict_proba(generalist, images), atol=1e-6)
    assert loaded.get_layer(LOGITS_LAYER) is not None


def test_bfloat16_copy_converts_the_networks_and_keeps_the_join_float32(generalist):
    """`cifake predict --precision bfloat16`: the joined networks compute in it, while the join (CDFs, maximum,
    logit) stays float32, or its fine steps would round into ties (seen: the shipped generalist's
    head in bfloat16 gave many images the same P(Fake))."""
    from cifake.model import with_precision

    copy = with_precision(generalist, "mixed_bfloat16")
    networks = [layer for layer in copy.layers if isinstance(layer, keras.Model)]
    assert len(networks) == 2
    assert all(layer.dtype_policy.name == "float32" for layer in copy.layers if layer not in networks)
    assert all(inner.dtype_policy.name == "mixed_bfloat16" for net in networks for inner in net.layers[1:])
    images = photographs(200, 6)
    p32, p16 = predict_proba(generalist, images), predict_proba(copy, images)
    assert np.mean((p32 >= 0.5) == (p16 >= 0.5)) >= 0.95 and np.abs(p32 - p16).mean() < 0.05


def test_auto_precision_keeps_a_joined_model_in_float32(generalist, monkeypatch):
    """On a CPU where `cifake predict` takes bfloat16 by itself, a joined model stays float32 (its calibrated ranks
    move under bfloat16), says so, and still takes bfloat16 when asked; a single network still takes bfloat16."""
    from cifake import inference

    monkeypatch.setattr(inference, "cpu_flags", lambda cpuinfo=None: frozenset({"avx512_bf16"}))
    model, why = inference.for_inference(generalist)
    assert model is generalist and why.startswith("float32 (auto") and "joins networks" in why
    asked, why = inference.for_inference(generalist, "bfloat16")
    assert "as asked" in why and any(
        inner.dtype_policy.name == "mixed_bfloat16"
        for net in asked.layers
        if isinstance(net, keras.Model)
        for inner in net.layers
    )
    detector = toy_parts()[0]
    single, why = inference.for_inference(detector)
    assert "bfloat16" in why and single.layers[-1].dtype_policy.name == "mixed_bfloat16"
