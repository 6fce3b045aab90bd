"""Where training runs: the ``tf.distribute`` strategy of ``params.yaml`` and which process is the chief."""

from __future__ import annotations

import logging
import os

import tensorflow as tf

log = logging.getLogger(__name__)


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy named in ``params.yaml`` (``train.strategy``).

    ``none``: TensorFlow's default strategy (one device). ``mirrored``: synchronous
    data parallelism over all GPUs, or over all logical CPU devices when there is
    no GPU. ``multi_worker``: ``MultiWorkerMirroredStrategy``, which reads the
    cluster from the ``TF_CONFIG`` environment variable. Build or load the model
    inside ``strategy.scope()``; :func:`fit` then trains it on every replica.
    """
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            log.warning("multi_worker: TF_CONFIG is not set, so this process trains as a single worker")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; use none, mirrored or multi_worker")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process saves the model and logs to MLflow.

    True everywhere except on the non-chief workers of a ``multi_worker`` cluster:
    the chief is the task of type ``chief``, or worker 0 when ``TF_CONFIG`` names none.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if resolver is None or not cluster:
        return True
    if "chief" in cluster:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0
