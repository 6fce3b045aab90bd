"""Model contract: [0, 255] input of shape (N, 32, 32, 3), P(Fake) out, safe loading."""

from pathlib import Path

import keras
import numpy as np
import pytest

from cifake.config import ModelParams
from cifake.model import (
    ModelLoadError,
    build_model,
    load_model,
    logit_model,
    save_model,
    view_shift,
    with_flip_average,
    with_precision,
    without_flip_average,
)

pytestmark = pytest.mark.model


@pytest.mark.parametrize(("architecture", "stem_stride"), [("seed_cnn", 1), ("resnet", 1), ("resnet", 2), ("vgg", 1)])
def test_architectures_keep_the_contract(architecture, stem_stride, tmp_path):
    model = build_model(
        ModelParams(
            architecture=architecture,
            widths=(4, 8),
            blocks_per_stage=1,
            dense_units=8,
            dropout=0.1,
            stem_stride=stem_stride,
        )
    )
    x = np.random.default_rng(0).uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    p = np.asarray(model(x, training=False))
    assert p.shape == (5, 1) and np.all((p >= 0) & (p <= 1))
    assert model.layers[1].name == "rescale"  # normalisation is inside the model
    logits = np.asarray(logit_model(model)(x, training=False))
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), p, rtol=1e-5, atol=1e-6)

    path = tmp_path / "m.keras"
    save_model(model, path)
    again = load_model(path)
    np.testing.assert_allclose(np.asarray(again(x, training=False)), p, rtol=1e-5, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no temporary left behind


@pytest.mark.parametrize(("architecture", "prefix", "suffix"), [("resnet", "s{}b{}", "_conv1"), ("vgg", "s{}c{}", "")])
def test_blocks_per_stage_can_differ_by_stage(architecture, prefix, suffix):
    params = ModelParams(
        architecture=architecture, widths=(4, 8, 8), blocks_per_stage=[2, 1, 3], dense_units=8, dropout=0.0
    )
    names = {layer.name for layer in build_model(params).layers}
    for stage, blocks in enumerate((2, 1, 3)):
        assert prefix.format(stage, blocks - 1) + suffix in names
        assert prefix.format(stage, blocks) + suffix not in names
    with pytest.raises(ValueError, match="one per width"):
        ModelParams(architecture=architecture, widths=(4, 8, 8), blocks_per_stage=[2, 1], dense_units=8, dropout=0.0)


def test_unsafe_model_is_refused(tmp_path):
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Lambda(lambda t: keras.ops.mean(t, axis=(1, 2, 3), keepdims=False)[:, None] / 255.0)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ModelLoadError, match="unsafe deserialisation"):
        load_model(path)


def test_wrong_shapes_and_junk_are_refused(tmp_path):
    inputs = keras.Input((64, 64, 3))
    path = tmp_path / "big.keras"
    keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(inputs))).save(path)
    with pytest.raises(ModelLoadError, match="expected input"):
        load_model(path)
    (tmp_path / "junk.keras").write_bytes(b"definitely not a zip")
    with pytest.raises(ModelLoadError, match="not a loadable Keras model"):
        load_model(tmp_path / "junk.keras")
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "missing.keras")


def test_failed_save_leaves_no_file(tmp_path, tiny_model, monkeypatch):
    target = tmp_path / "m.keras"
    target.write_bytes(b"old")

    def boom(self, path, *a, **k):
        Path(path).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_model(tiny_model, target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]


def test_a_stride_2_stem_halves_the_first_feature_map():
    shapes = {}
    for stride in (1, 2):
        model = build_model(
            ModelParams(
                architecture="resnet", widths=(4, 8), blocks_per_stage=1, dense_units=8, dropout=0.0, stem_stride=stride
            )
        )
        shapes[stride] = tuple(model.get_layer("stem_conv").output.shape[1:3])
    assert shapes == {1: (32, 32), 2: (16, 16)}


def test_per_image_normalization_makes_the_network_blind_to_brightness_and_contrast(tmp_path):
    x = np.random.default_rng(0).uniform(60, 200, (4, 32, 32, 3)).astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    changed = mean + 0.6 * (x - mean) + 20  # contrast x 0.6, brightness +20; stays inside [0, 255]
    outputs = {}
    for normalization in ("scale", "per_image"):
        keras.utils.set_random_seed(0)
        model = build_model(
            ModelParams(
                architecture="resnet",
                widths=(4, 8),
                blocks_per_stage=1,
                dense_units=8,
                dropout=0.0,
                normalization=normalization,
            )
        )
        outputs[normalization] = [np.asarray(logit_model(model)(v, training=False)) for v in (x, changed)]
    np.testing.assert_allclose(*outputs["per_image"], rtol=5e-3, atol=5e-3)  # the layer's epsilon: not exact
    assert np.abs(outputs["scale"][0] - outputs["scale"][1]).max() > 1e-2  # without it, the change is seen
    path = tmp_path / "m.keras"
    save_model(model, path)
    np.testing.assert_allclose(
        np.asarray(logit_model(load_model(path))(x, training=False)), outputs["per_image"][0], rtol=1e-5, atol=1e-5
    )


def test_flip_average_averages_the_logit_over_the_image_and_its_mirror(tmp_path):
    model = build_model(
        ModelParams(architecture="resnet", widths=(4, 8), blocks_per_stage=1, dense_units=8, dropout=0.0)
    )
    x = np.random.default_rng(1).uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
    single = logit_model(model)
    expected = (np.asarray(single(x)) + np.asarray(single(x[:, :, ::-1]))) / 2
    assert np.abs(np.asarray(single(x)) - np.asarray(single(x[:, :, ::-1]))).max() > 1e-4  # the views differ

    averaged = with_flip_average(model)
    path = tmp_path / "m.keras"
    save_model(averaged, path)
    loaded = load_model(path)  # safe_mode=True inside
    for m in (averaged, loaded):
        np.testing.assert_allclose(np.asarray(logit_model(m)(x)), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(m(x)), 1 / (1 + np.exp(-expected)), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(m(x[:, :, ::-1])), np.asarray(m(x)), rtol=1e-5, atol=1e-6)
    assert loaded.count_params() == model.count_params() + 32 * 32  # the frozen mirror matrix
    assert len(loaded.trainable_weights) == len(model.trainable_weights)
    assert with_flip_average(loaded) is loaded  # averaging twice would only double the work


@pytest.mark.parametrize("shift", [1, 2])
def test_shifted_views_average_the_logit_over_ten_views_as_training_shifts_them(tmp_path, shift):
    """Both views and four diagonal shifts of each, edges reflected: the training's own shift
    (``batches.shifted``) computes each view here, independently of the model's frozen matrices."""
    from cifake.batches import shifted
    from cifake.config import Params, load_params

    model = build_model(
        ModelParams(architecture="resnet", widths=(4, 8), blocks_per_stage=1, dense_units=8, dropout=0.0)
    )
    x = np.random.default_rng(3).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    single, n = logit_model(model), len(x)
    moves = [(0, 0), (1, 1), (-1, -1), (1, -1), (-1, 1)]
    views = [
        shifted(x, np.full(n, flip), np.full(n, 2 + dy * shift), np.full(n, 2 + dx * shift), pad=2)
        for flip in (False, True)
        for dy, dx in moves
    ]
    expected = np.mean([np.asarray(single(v)) for v in views], axis=0)
    flip_only = np.mean([np.asarray(single(views[0])), np.asarray(single(views[5]))], axis=0)
    assert np.abs(expected - flip_only).max() > 1e-4  # the shifted views change the average

    averaged = with_flip_average(model, shift)
    save_model(averaged, tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")  # safe_mode=True inside
    for m in (averaged, loaded, with_precision(loaded, "float32")):
        assert view_shift(m) == shift
        np.testing.assert_allclose(np.asarray(logit_model(m)(x)), expected, rtol=1e-5, atol=1e-5)
    assert loaded.count_params() == model.count_params() + (1 + 2 * 2 * 4) * 32 * 32  # frozen 0/1 matrices
    assert len(loaded.trainable_weights) == len(model.trainable_weights)
    assert view_shift(with_flip_average(model)) == 0 and view_shift(model) == 0
    raw = load_params().model_dump()
    raw["model"] = {**raw["model"], "flip_average": False, "view_shift": shift}
    with pytest.raises(ValueError, match="view_shift: each needs model.flip_average"):
        Params.model_validate(raw)


def test_without_flip_average_gives_back_the_trainable_single_view_network(tmp_path):
    model = build_model(
        ModelParams(architecture="resnet", widths=(4, 8), blocks_per_stage=1, dense_units=8, dropout=0.0)
    )
    x = np.random.default_rng(2).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    path = tmp_path / "m.keras"
    save_model(with_flip_average(model), path)
    single, was_averaged = without_flip_average(load_model(path))
    assert was_averaged and single.name == model.name
    np.testing.assert_allclose(np.asarray(single(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    assert [w.shape for w in single.weights] == [w.shape for w in model.weights]
    assert without_flip_average(model) == (model, False)


def test_loading_a_flip_averaged_model_draws_no_more_randomness_than_its_single_view(tmp_path):
    """So that fine-tuning a flip-averaged clean model repeats a single-view run's random stream."""
    import random

    model = build_model(
        ModelParams(architecture="resnet", widths=(4, 8), blocks_per_stage=1, dense_units=8, dropout=0.1)
    )
    save_model(model, tmp_path / "single.keras")
    save_model(with_flip_average(model), tmp_path / "flip.keras")
    draws = []
    for name in ("single.keras", "flip.keras"):
        keras.utils.set_random_seed(0)
        without_flip_average(load_model(tmp_path / name))
        draws.append((random.random(), np.random.random(), float(keras.random.uniform(()))))
    assert draws[0] == draws[1]
