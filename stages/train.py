"""DVC stage `train`: train the clean detector -> models/model.keras."""

from cifake.cli import run_stage
from cifake.config import load_params
from cifake.training import FitConfig
from cifake.pipeline import train_and_record


def main() -> None:
    params = load_params()
    config = FitConfig(**params.train.model_dump(), seed=params.seed)
    train_and_record(
        params,
        stage="train",
        config=config,
        stage_params={"seed": params.seed, "model": params.model.model_dump(), "train": params.train.model_dump()},
        init_model=None,
        out_model="models/model.keras",
        out_metrics="metrics/train.json",
        out_history="metrics/plots/train_history.csv",
        alias=None,
    )


if __name__ == "__main__":
    run_stage(main)
