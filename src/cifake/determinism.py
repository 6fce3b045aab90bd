"""Seeded, deterministic runs: the same seed gives the same model and metrics on one machine.

(Across CPU types oneDNN may pick other kernels, so figures can differ in the last digits.)
"""

import keras
import tensorflow as tf


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
