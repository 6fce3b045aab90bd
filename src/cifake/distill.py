"""Distillation: a frozen teacher's soft targets mixed into the loss targets of adversarial fine-tuning.

ARD (Goldblum et al. 2020) and RSLAD (Zi et al. 2021) keep a robust student close to a teacher's
predictions. Here the teacher (e.g. the best clean model) is scored once on every training image as
stored; :class:`cifake.batches.TrainingBatches` carries each image's target with it through augmentation
and everyday changes (both keep the label), and :meth:`cifake.training.Trainer.targets` mixes it in.
Unlike RSLAD, the attack still pushes against the true label.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from scipy.special import expit, logit

from cifake.model import predict_proba


def teacher_targets(teacher: keras.Model, x, temperature: float = 1.0) -> np.ndarray:
    """A teacher's soft targets: ``sigmoid(logit / temperature)`` of each image in ``x`` (pixels in [0, 255]).

    The teacher is used as it is saved (flip-averaged or not); ``temperature`` above 1 softens the targets.
    """
    p = np.clip(predict_proba(teacher, x).astype(np.float64), 1e-7, 1.0 - 1e-7)
    return expit(logit(p) / temperature).astype(np.float32)


def mixed_targets(target, teacher, weight: float, n_attacked, attacked: bool) -> tf.Tensor:
    """``(1 - weight) * target + weight * teacher`` on the clean share (images from ``n_attacked`` on) and,
    with ``attacked``, on the attacked share too; elsewhere ``target`` as it is."""
    soft = (1.0 - weight) * target + weight * tf.reshape(teacher, [-1])
    return soft if attacked else tf.concat([target[:n_attacked], soft[n_attacked:]], axis=0)
