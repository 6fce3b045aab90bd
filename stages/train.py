"""DVC stage `train`: train the clean detector -> models/model.keras (resumes a killed run)."""

from pathlib import Path

from cifake.config import load_params
from cifake.dataset import Split
from cifake.determinism import set_determinism
from cifake.distribute import distribution_strategy
from cifake.errors import run_stage
from cifake.fakes import with_own_fakes
from cifake.fileio import read_json
from cifake.fitconfig import fit_config
from cifake.model import build_model
from cifake.runs import RunFiles, fingerprint, train_and_register

PROCESSED = Path("data/processed")
OWN_FAKES = Path("data/fakes/train")  # the fakes stage's, drawn in by `train.fakes`
FILES = RunFiles(
    model=Path("models/model.keras"),
    metrics=Path("metrics/train.json"),
    history=Path("metrics/plots/train_history.csv"),
    checkpoints=Path("checkpoints/train"),
    outbox=Path("checkpoints/mlflow-outbox"),  # MLflow records a stopped server missed: `cifake sync-tracking`
)


def main() -> None:
    params = load_params()
    set_determinism(params.seed)
    meta = read_json(PROCESSED / "meta.json")
    config = fit_config(params.train, params.seed)
    model_params = params.model.model_dump(exclude={"view_shift"})  # the robust model's views: fgsm_finetune's
    stage_params = {"seed": params.seed, "model": model_params, "train": params.train.model_dump()}
    strategy = distribution_strategy(config.strategy)
    with strategy.scope():
        model = build_model(params.model)
    train, fakes_sha = with_own_fakes(Split.load(PROCESSED / "train.npz"), OWN_FAKES, params.train.fakes, params.seed)
    train_and_register(
        model,
        train,
        Split.load(PROCESSED / "val.npz"),
        config,
        stage="train",
        stage_params=stage_params,
        meta=meta,
        files=FILES,
        experiment=params.tracking.experiment,
        registered_model=params.tracking.registered_model,
        alias=None,
        strategy=strategy,
        key=fingerprint(stage_params, meta["dataset_sha256"], fakes_sha),
        flip_average=params.model.flip_average,
    )


if __name__ == "__main__":
    run_stage(main)
