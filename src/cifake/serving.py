"""The detector as an MLflow model that takes image files: ``mlflow models serve`` and Spark run it.

:class:`ImageClassifier` (a pyfunc) takes a DataFrame with a binary column ``content``, a file's bytes in any
format and size ``cifake predict`` reads, and returns per row ``label`` (``Real``/``Fake``, empty on error),
``p_fake`` (NaN on error) and ``error`` (empty, or why the image could not be used). It decodes with
:func:`cifake.images.decode_image`, chooses the precision with :func:`cifake.inference.for_inference` and labels
with :func:`cifake.inference.label_name`: the code ``cifake predict`` runs, so a file gets the same label both
ways. A bad image fails its own row, never the batch. The ``.keras`` file is the model's one artifact and also
its ``keras`` flavour, so ``mlflow.keras.load_model`` still gives the Keras model. The Keras model is loaded
once per process (:func:`inference_model`); ``CIFAKE_TF_THREADS`` caps TensorFlow's threads in that process.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from cifake.errors import CifakeError
from cifake.fileio import sha256_file
from cifake.images import ImageError, decode_image

log = logging.getLogger(__name__)

COLUMN = "content"
OUTPUTS = ("label", "p_fake", "error")
ARTIFACT = "keras_model"
THREADS = "CIFAKE_TF_THREADS"  # TensorFlow threads per process (intra- and inter-op); unset: TensorFlow's default
BATCH = 256
# What a logged model needs beside this package (import name; its installed distribution is pinned): MLflow's
# own inference imports the model in a subprocess, 14 s in a cProfile of the `train` stage (under load).
MODEL_IMPORTS = ("mlflow", "keras", "numpy", "tensorflow", "pandas", "PIL")

_MODELS: dict[tuple[str, str], object] = {}  # (file sha256, precision) -> Keras model ready for inference


def signature():
    """The model's signature: binary ``content`` in; ``label``, ``p_fake``, ``error`` out; a ``threshold``."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(DataType.binary, COLUMN)]),
        outputs=Schema(
            [ColSpec(DataType.string, "label"), ColSpec(DataType.double, "p_fake"), ColSpec(DataType.string, "error")]
        ),
        params=ParamSchema([ParamSpec("threshold", DataType.double, 0.5)]),
    )


def limit_threads() -> None:
    """Cap TensorFlow's thread pools at ``$CIFAKE_TF_THREADS`` (before TensorFlow runs its first operation)."""
    wanted = os.environ.get(THREADS)
    if not wanted:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(wanted))
        tf.config.threading.set_inter_op_parallelism_threads(int(wanted))
    except RuntimeError:  # TensorFlow already ran in this process: its pools are fixed
        log.debug("TensorFlow is already initialised; %s=%s not applied", THREADS, wanted)


def inference_model(path: str | Path, precision: str = "auto"):
    """The Keras model in ``path``, ready for inference as ``cifake predict`` runs it; loaded once per process."""
    key = (sha256_file(path), precision)
    if key not in _MODELS:
        limit_threads()
        from cifake.inference import for_inference
        from cifake.model import load_model

        model, why = for_inference(load_model(path), precision)
        log.info("cifake model %s loaded in process %d; computes in %s", Path(path).name, os.getpid(), why)
        _MODELS[key] = model
    return _MODELS[key]


def classify_contents(model, contents: Sequence, threshold: float = 0.5, batch_size: int = BATCH) -> pd.DataFrame:
    """One row per item of ``contents`` (file bytes): ``label``, ``p_fake`` and ``error`` (see the module)."""
    from cifake.inference import label_name
    from cifake.model import predict_proba

    labels, p_fake, errors = [""] * len(contents), np.full(len(contents), np.nan), [""] * len(contents)
    good, pixels = [], []
    for i, data in enumerate(contents):
        try:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise ImageError(f"expected the file's bytes, got {type(data).__name__}")
            pixels.append(decode_image(bytes(data)))
            good.append(i)
        except ImageError as exc:
            errors[i] = str(exc) + (BASE64_HINT if _base64_text(data) else "")
    if good:
        p_fake[good] = predict_proba(model, np.stack(pixels), batch_size)
        for i in good:
            labels[i] = label_name(float(p_fake[i]), threshold)
    return pd.DataFrame({"label": labels, "p_fake": p_fake, "error": errors})


BASE64_HINT = (
    " (this looks like base64 text: send images as dataframe_split or dataframe_records, whose binary columns "
    "MLflow decodes from base64; inputs and instances are passed on undecoded)"
)


def _base64_text(data) -> bool:
    """Whether ``data`` is the base64 text of something (what an undecoded request carries), not a file."""
    try:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        return len(raw) >= 8 and base64.b64decode(raw, validate=True) is not None
    except (binascii.Error, TypeError, ValueError):
        return False


class ImageClassifier(PythonModel):
    """The pyfunc: image files in, labels out (see the module). Holds only the path of its ``.keras`` artifact."""

    def load_context(self, context) -> None:
        self.model_file = context.artifacts[ARTIFACT]
        inference_model(self.model_file)  # loaded now, not at the first request

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException  # a request's fault: HTTP 400 with this message

        threshold = float((params or {}).get("threshold", 0.5))
        if not 0.0 < threshold < 1.0:
            raise MlflowException.invalid_parameter_value(f"threshold must be in (0, 1), got {threshold}")
        if not isinstance(model_input, pd.DataFrame) or COLUMN not in model_input.columns:
            raise MlflowException.invalid_parameter_value(
                f"expected a DataFrame with a binary column {COLUMN!r} (each image file's bytes)"
            )
        return classify_contents(inference_model(self.model_file), list(model_input[COLUMN]), threshold)


def model_requirements() -> list[str]:
    """Pinned requirements of a logged model: the installed distribution of each of :data:`MODEL_IMPORTS`."""
    from importlib import metadata

    providers = metadata.packages_distributions()
    pins = []
    for name in MODEL_IMPORTS:
        dist = providers.get(name, [name])[0]  # e.g. tensorflow is provided by tensorflow-cpu on some machines
        pins.append(f"{dist}=={metadata.version(dist)}")
    return pins


def save_model(path: str | Path, keras_file: str | Path, mlflow_model=None) -> None:
    """Write the MLflow model of ``keras_file`` into the new folder ``path``: this pyfunc and the ``keras`` flavour.

    The flavour protocol of ``mlflow.models.Model.log`` (see :func:`log_model`). Both flavours read the same
    copy of the file (``artifacts/<name>.keras``).
    """
    from importlib import metadata

    import mlflow.pyfunc
    from mlflow.models import Model

    mlflow_model = Model() if mlflow_model is None else mlflow_model
    with quiet_mlflow():
        mlflow.pyfunc.save_model(
            str(path),
            python_model=ImageClassifier(),
            artifacts={ARTIFACT: str(keras_file)},
            signature=signature(),
            pip_requirements=model_requirements(),
            mlflow_model=mlflow_model,
        )
    saved = mlflow_model.flavors["python_function"]["artifacts"][ARTIFACT]["path"]
    # mlflow.keras reads <data>.keras (mlflow/keras/load.py), the flavour's own layout since MLflow 2.11
    keras_flavour = {
        "keras_version": metadata.version("keras"),
        "data": saved.removesuffix(".keras"),
        "save_exported_model": False,
    }
    mlflow_model.add_flavor("keras", **keras_flavour)
    mlflow_model.save(os.path.join(path, "MLmodel"))


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """MLflow without its advice that does not apply here (to log code rather than a pickle, which holds no state
    but its class's name; to add an input example, where the signature says it all; not to use
    ``env_manager="local"``, which is chosen on purpose) and without progress bars for copying local files."""
    mlflow_log = logging.getLogger("mlflow")
    level = mlflow_log.level
    mlflow_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), mock.patch.dict(os.environ, {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}):
            warnings.filterwarnings("ignore", message=".*input example", category=UserWarning)
            yield
    finally:
        mlflow_log.setLevel(level)


def log_model(keras_file: str | Path, registered_name: str):
    """Log ``keras_file`` as an MLflow model of the active run (see :func:`save_model`) and register a version."""
    from mlflow.models import Model

    if Path(keras_file).suffix != ".keras":
        raise CifakeError(f"{keras_file}: expected a .keras file")
    return Model.log(
        artifact_path=None,  # deprecated in favour of name, but still a required argument
        name="model",
        flavor=sys.modules[__name__],
        registered_model_name=registered_name,
        keras_file=str(keras_file),
    )
