"""The small GANs that make the project's own training fakes of a second family (cifake.gan)."""

import numpy as np
import pytest

from cifake.gan import Gan, GanShape, build_discriminator, build_generator, generate, train_gan

from .conftest import killed_then_resumed

pytestmark = pytest.mark.model

SHAPE = GanShape(widths=(16, 8, 4), upsample="transpose", loss="ns", latent=8)


def _reals(n=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _train(tmp_path, epochs, shape=SHAPE, on_epoch=None):
    return train_gan(
        _reals(),
        shape,
        epochs=epochs,
        batch_size=32,
        learning_rate=1.0e-3,
        precision="float32",
        seed=0,
        backup_dir=tmp_path / "backup",
        on_epoch=on_epoch,
    )


@pytest.mark.parametrize("upsample", ["nearest", "bilinear", "transpose"])
def test_generator_maps_a_latent_to_a_32px_image_in_range(upsample):
    generator = build_generator(GanShape((16, 8, 4), upsample, "ns", 8))
    out = np.asarray(generator(np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)))
    assert out.shape == (2, 32, 32, 3) and out.dtype == np.float32
    assert np.all(np.abs(out) <= 1.0)
    with pytest.raises(ValueError, match="unknown upsampling"):
        build_generator(GanShape((16, 8, 4), "pixel_shuffle"))


def test_the_hinge_discriminator_is_spectrally_normalised():
    import keras

    def normalised(shape):
        layers = build_discriminator(shape).layers
        return sum(isinstance(layer, keras.layers.SpectralNormalization) for layer in layers)

    assert normalised(GanShape((16, 8, 4), loss="hinge")) == 4  # three convolutions and the logit
    assert normalised(GanShape((16, 8, 4), loss="ns")) == 0
    with pytest.raises(ValueError, match="unknown GAN loss"):
        build_discriminator(GanShape((16, 8, 4), loss="wasserstein"))


@pytest.mark.parametrize("loss", ["ns", "hinge"])
def test_a_training_step_moves_both_networks(loss):
    import keras

    shape = GanShape((16, 8, 4), "nearest", loss, 8)
    gan = Gan(build_generator(shape), build_discriminator(shape), loss)
    gan.compile(keras.optimizers.Adam(1.0e-3), keras.optimizers.Adam(1.0e-3))
    before = [w.copy() for w in (gan.generator.get_weights()[0], gan.discriminator.get_weights()[0])]
    logs = gan.train_on_batch(_reals(16), return_dict=True)
    after = (gan.generator.get_weights()[0], gan.discriminator.get_weights()[0])
    assert all(not np.array_equal(b, a) for b, a in zip(before, after, strict=True))
    assert set(logs) == {"d_loss", "g_loss"} and all(np.isfinite(v) for v in logs.values())


def test_the_losses_reward_what_each_network_wants():
    import tensorflow as tf

    for loss in ("ns", "hinge"):
        gan = Gan(build_generator(SHAPE), build_discriminator(SHAPE), loss)
        confident = gan._loss_pair(tf.constant([5.0]), tf.constant([-5.0]))  # D tells them apart
        fooled = gan._loss_pair(tf.constant([-5.0]), tf.constant([5.0]))  # D has them the wrong way round
        assert float(confident[0]) < float(fooled[0])  # the discriminator's loss
        assert float(confident[1]) > float(fooled[1])  # the generator's loss


def test_a_killed_training_resumes_after_its_last_epoch(tmp_path):
    def train(epochs, on_epoch):
        return _train(tmp_path, epochs, on_epoch=on_epoch)

    seen, resumed, kept, generator = killed_then_resumed(train, tmp_path / "backup")
    assert kept  # the kill left the backup behind
    assert seen == [1] and resumed == [2, 3]  # epoch 1 is not trained again
    assert not (tmp_path / "backup").exists()  # removed once training ended
    assert generator.dtype_policy.name == "float32"


def test_generated_images_are_deterministic_uint8(tmp_path):
    generator = _train(tmp_path, epochs=1)
    a, b = generate(generator, 5, seed=3), generate(generator, 5, seed=3)
    assert a.shape == (5, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, generate(generator, 5, seed=4))
