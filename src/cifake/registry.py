"""Registered versions of the detector in MLflow's model registry: logged, described, given aliases.

Every version is a ``.keras`` file logged by :func:`cifake.serving.log_model`: a pyfunc that takes image files
(``mlflow.pyfunc.load_model``, ``mlflow models serve``, ``mlflow.pyfunc.spark_udf``) whose artifact is the
file itself, also readable as a Keras model (``mlflow.keras.load_model``). The training stages register their
models here (through their :class:`cifake.outbox.Outbox`); :func:`register_files` registers given files, such as
the shipped ones (``cifake register``), the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cifake import tracking
from cifake.fileio import sha256_file

log = logging.getLogger(__name__)

SERVES = "images"  # the `serves` tag of versions whose pyfunc takes image files (earlier ones took pixels)


def register_model(
    model_file: str | Path,
    registered_name: str,
    description: str,
    alias: str | None = None,
    tags: dict | None = None,
) -> int:
    """Log ``model_file`` (a ``.keras`` file) in the active run and register a new version of it.

    Returns the version number. ``description`` is also kept in the version's ``training`` tag, so that
    :func:`cifake.tracking.describe_versions` can extend it later; ``tags`` (e.g. the file's ``model_sha256``)
    go on the version; ``alias`` (e.g. ``champion``) is moved to it.
    """
    from cifake.serving import log_model

    info = log_model(model_file, registered_name)
    version = int(info.registered_model_version)
    _describe_version(registered_name, version, description, alias, {**(tags or {}), "serves": SERVES})
    return version


def register_run_model(
    model_file: str | Path,
    run_id: str,
    registered_name: str,
    description: str,
    alias: str | None = None,
    tags: dict | None = None,
) -> int:
    """:func:`register_model` for the run ``run_id``, once: if the run already has a version, that one is
    described (and given the alias) again instead of a new one being made. Returns the version."""
    import mlflow

    client = mlflow.MlflowClient()
    found = client.search_model_versions(f"name = '{registered_name}' and run_id = '{run_id}'")
    if found:
        version = max(int(v.version) for v in found)
        _describe_version(registered_name, version, description, alias, tags)
        return version
    with mlflow.start_run(run_id=run_id):
        return register_model(model_file, registered_name, description, alias=alias, tags=tags)


def _describe_version(registered_name: str, version: int, description: str, alias: str | None, tags: dict | None):
    """Set a version's description and tags (``training`` repeats the description) and move ``alias`` to it."""
    import mlflow

    client = mlflow.MlflowClient()
    client.update_model_version(registered_name, str(version), description=description)
    for key, value in {**(tags or {}), "training": description}.items():
        client.set_model_version_tag(registered_name, str(version), key, str(value))
    if alias:
        client.set_registered_model_alias(registered_name, alias, str(version))


def register_files(
    files: list[Path], registered_name: str, experiment: str, champion: Path | None = None
) -> list[tuple[Path, int, bool]]:
    """Register each of ``files`` (e.g. the shipped models) as a version, the ``champion`` file with that alias.

    A file already registered (a version whose ``model_sha256`` tag is the file's and which serves images) is
    not registered twice: that version is reused (and given the alias). All new versions come from one MLflow
    run, ``register-<first file>``, in ``experiment``. Returns ``(file, version, new)`` per file.
    """
    import mlflow

    tracking.check_tracking_server()
    mlflow.set_tracking_uri(tracking.tracking_uri())
    mlflow.set_experiment(experiment)
    mlflow.set_experiment_tag(tracking.EXPERIMENT_KIND_TAG, "custom_model_development")  # as the stages' runs
    client = mlflow.MlflowClient()
    done, run = [], None
    for path in files:
        sha = sha256_file(path)
        alias = "champion" if champion is not None and path.resolve() == champion.resolve() else None
        query = f"name = '{registered_name}' and tags.model_sha256 = '{sha}' and tags.serves = '{SERVES}'"
        found = client.search_model_versions(query)
        if found:
            version = max(int(v.version) for v in found)
            if alias:
                client.set_registered_model_alias(registered_name, alias, str(version))
            done.append((path, version, False))
            continue
        run = run or mlflow.start_run(run_name=f"register-{path.stem}", tags={"stage": "register"})
        description = f"{path.name}, registered from {path.parent} by `cifake register` (sha256 {sha[:12]}…)"
        version = register_model(path, registered_name, description, alias, {"stage": "register", "model_sha256": sha})
        done.append((path, version, True))
    if run is not None:
        mlflow.end_run()
    return done
