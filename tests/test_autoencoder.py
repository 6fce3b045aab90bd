"""Real images redrawn through a generator's body (cifake.autoencoder)."""

import numpy as np
import pytest

from cifake.autoencoder import build_autoencoder, redraw, train_autoencoder
from cifake.gan import GanShape

from .conftest import killed_then_resumed

pytestmark = pytest.mark.model

SHAPE = GanShape(widths=(16, 8, 4), upsample="transpose")


def _reals(n=64, seed=0):
    """Smooth colour gradients: images an autoencoder can learn to redraw in a few steps."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, 32, dtype=np.float32)
    low, high = rng.uniform(0, 255, (2, n, 1, 1, 3)).astype(np.float32)
    rows = np.rint(low + (high - low) * ramp[None, None, :, None]).astype(np.uint8)
    return np.broadcast_to(rows, (n, 32, 32, 3)).copy()


def _train(tmp_path, epochs, shape=SHAPE, on_epoch=None, batch_size=16):
    return train_autoencoder(
        _reals(),
        shape,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=3.0e-3,
        precision="float32",
        seed=0,
        backup_dir=tmp_path / "backup",
        on_epoch=on_epoch,
    )


@pytest.mark.parametrize("upsample", ["nearest", "bilinear", "transpose"])
def test_the_decoder_is_a_generators_body(upsample):
    import keras

    network = build_autoencoder(GanShape((16, 8, 4), upsample))
    out = np.asarray(network(np.zeros((2, 32, 32, 3), np.float32)))
    assert out.shape == (2, 32, 32, 3) and np.all(np.abs(out) <= 1.0)
    kinds = {type(layer).__name__ for layer in network.layers}
    assert ("Conv2DTranspose" in kinds) == (upsample == "transpose")
    assert network.layers[-1].activation is keras.activations.tanh
    with pytest.raises(ValueError, match="unknown upsampling"):
        build_autoencoder(GanShape((16, 8, 4), "pixel_shuffle"))


def test_training_learns_to_redraw(tmp_path):
    real, losses = _reals(), []
    record = lambda row: losses.append(row["l1"])  # noqa: E731
    network = _train(tmp_path, 12, GanShape((32, 16, 8), "transpose"), record, batch_size=8)
    assert losses[-1] < 0.5 * losses[0]
    redrawn = redraw(network, real[:8])
    assert redrawn.shape == (8, 32, 32, 3) and redrawn.dtype == np.uint8
    own = np.abs(redrawn.astype(int) - real[:8]).mean()
    others = np.abs(redrawn.astype(int) - np.roll(real[:8], 1, axis=0)).mean()
    assert own < 0.5 * others  # each redraws its own photograph, not an average image


def test_a_killed_training_resumes_after_its_last_epoch(tmp_path):
    def train(epochs, on_epoch):
        return _train(tmp_path, epochs, on_epoch=on_epoch)

    seen, resumed, kept, network = killed_then_resumed(train, tmp_path / "backup")
    assert kept and seen == [1] and resumed == [2, 3]
    assert not (tmp_path / "backup").exists()
    assert network.dtype_policy.name == "float32"
