"""The tiny diffusion model that makes the project's own training fakes (cifake.generators)."""

import numpy as np
import pytest

from cifake.generators import (
    DenoiserShape,
    build_denoiser,
    diffusion_rates,
    load_denoiser,
    make_fakes,
    resynthesise,
    sample,
    train_denoiser,
)
from cifake.model import save_model

from .conftest import killed_then_resumed

pytestmark = pytest.mark.model

SHAPE = DenoiserShape(widths=(8, 16), blocks=1, upsample="transpose")


def _reals(n=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _train(tmp_path, epochs, on_epoch=None):
    return train_denoiser(
        _reals(),
        SHAPE,
        epochs=epochs,
        batch_size=32,
        learning_rate=1.0e-3,
        precision="float32",
        seed=0,
        backup_dir=tmp_path / "backup",
        on_epoch=on_epoch,
    )


def test_the_schedule_runs_from_signal_to_noise():
    noise, signal = (np.asarray(v) for v in diffusion_rates(np.array([0.0, 0.5, 1.0], np.float32)))
    assert np.allclose(noise**2 + signal**2, 1.0, atol=1e-6)
    assert signal[0] > 0.9 and noise[-1] > 0.99 and np.all(np.diff(noise) > 0)


@pytest.mark.parametrize("upsample", ["nearest", "bilinear", "transpose"])
def test_denoiser_maps_an_image_and_a_variance_to_noise(upsample):
    denoiser = build_denoiser(DenoiserShape((8, 16), 1, upsample))
    out = denoiser([np.zeros((2, 32, 32, 3), np.float32), np.full((2, 1, 1, 1), 0.5, np.float32)])
    assert tuple(out.shape) == (2, 32, 32, 3)
    with pytest.raises(ValueError, match="unknown upsampling"):
        build_denoiser(DenoiserShape((8, 16), 1, "pixel_shuffle"))


def test_nearest_upsampling_is_keras_upsampling():
    import keras

    from cifake.generators import NearestUpsampling

    x = np.random.default_rng(0).random((2, 3, 5, 4)).astype(np.float32)
    assert np.array_equal(NearestUpsampling()(x).numpy(), keras.layers.UpSampling2D(2)(x).numpy())


def test_a_killed_training_resumes_after_its_last_epoch(tmp_path):
    def train(epochs, on_epoch):
        return _train(tmp_path, epochs, on_epoch=on_epoch)

    seen, resumed, kept, denoiser = killed_then_resumed(train, tmp_path / "backup")
    assert kept  # the kill left the backup behind
    assert seen == [1] and resumed == [2, 3]  # epoch 1 is not trained again
    assert not (tmp_path / "backup").exists()  # removed once training ended
    assert denoiser.dtype_policy.name == "float32"


def test_fakes_are_deterministic_images_of_the_right_shape(tmp_path):
    denoiser = _train(tmp_path, epochs=1)
    save_model(denoiser, tmp_path / "d.keras")
    loaded = load_denoiser(tmp_path / "d.keras")
    reals = _reals(8, seed=1)
    for kind in ("sample", "resynth"):
        a = make_fakes(denoiser, kind, reals, 6, steps=4, strengths=[0.3, 0.6], seed=5)
        b = make_fakes(loaded, kind, reals, 6, steps=4, strengths=[0.3, 0.6], seed=5)
        assert a.shape == (6, 32, 32, 3) and a.dtype == np.uint8
        assert np.array_equal(a, b)
        assert not np.array_equal(a, make_fakes(denoiser, kind, reals, 6, steps=4, strengths=[0.3, 0.6], seed=6))
    with pytest.raises(ValueError, match="unknown kind"):
        make_fakes(denoiser, "gan", reals, 2, steps=2, strengths=[0.5], seed=0)


def test_resynthesis_stays_closer_to_the_image_the_less_it_is_noised(tmp_path):
    denoiser = build_denoiser(SHAPE)  # untrained: predicts zero noise, so the image estimate is x_t / signal
    smooth = np.full((4, 32, 32, 3), 120, np.uint8)
    light = resynthesise(denoiser, smooth, np.full(4, 0.1, np.float32), steps=4, seed=0)
    heavy = resynthesise(denoiser, smooth, np.full(4, 0.9, np.float32), steps=4, seed=0)
    distance = lambda x: np.abs(x.astype(int) - smooth).mean()  # noqa: E731
    assert distance(light) < distance(heavy)
    assert sample(denoiser, 3, steps=2, seed=0).shape == (3, 32, 32, 3)
