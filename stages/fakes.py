"""DVC stage `fakes`: training fakes the project makes itself -> data/fakes/{train,heldout}/<generator>_<kind>/.

For each of `fakes.generators` it trains a tiny diffusion model on the training split's real images, then writes
JPEG quality 75 fakes (CIFAKE's encoding): `sample` from pure noise, and `resynth`, real images noised part-way
and denoised again; the `train` set from training images, the `heldout` set (for `evaluate`) from validation
images with other seeds. Each of `fakes.gans.generators` is a small GAN trained on the same images; it writes
`sample` fakes, each set with its own seed. One MLflow run logs each generator's losses per epoch and a grid of
its fakes.
A killed run resumes: a generator's training after its last finished epoch, finished folders are kept.
"""

import shutil
from functools import partial
from pathlib import Path

from PIL import Image

from cifake import tracking
from cifake.config import load_params
from cifake.dataset import Split
from cifake.determinism import set_determinism
from cifake.errors import run_stage
from cifake.fakes import grid, write_fakes
from cifake.fileio import read_json, replace_dir
from cifake.gan import GanShape, generate, load_generator, train_gan
from cifake.generalisation import load_folder
from cifake.generators import DenoiserShape, load_denoiser, make_fakes, train_denoiser
from cifake.inference import choose_precision
from cifake.model import save_model
from cifake.runs import fingerprint

PROCESSED = Path("data/processed")
OUT = Path("data/fakes")
WORK = Path("checkpoints/fakes")  # a killed run's trained generators and finished folders, until the stage ends


def trained(name: str, work: Path, train, load):
    """The generator ``name``: from ``work`` when a killed run finished it, else ``train()``'s, saved there."""
    saved = work / "generators" / f"{name}.keras"
    if saved.exists():
        return load(saved)
    saved.parent.mkdir(parents=True, exist_ok=True)
    model = train(backup_dir=work / "backup" / name, on_epoch=lambda row: log_losses(name, row))
    save_model(model, saved)
    return model


def log_losses(name: str, row: dict) -> None:
    """A generator's losses after an epoch, as ``<name>.<loss>`` metrics of the stage's MLflow run."""
    tracking.log_epoch({"epoch": row["epoch"]} | {f"{name}.{k}": v for k, v in row.items() if k != "epoch"})


def write_set(work: Path, which: str, folder: str, make) -> None:
    """``make()``'s fakes into ``work/out/<which>/<folder>``, unless a killed run wrote them already."""
    out = work / "out" / which / folder
    if not out.exists():
        made = make()
        write_fakes(made, out)
        print(f"fakes: {len(made)} {which} fakes of {folder}")


def diffusion_fakes(fk, epochs: int, counts: dict, reals: dict, seed: int, work: Path) -> None:
    """Each diffusion generator trained, and its kinds of fakes written for each set."""
    precision = choose_precision(fk.precision)[0]
    for g, (name, upsample) in enumerate(fk.generators.items()):
        shape = DenoiserShape(fk.widths, 1, upsample)
        settings = dict(epochs=epochs, batch_size=fk.batch_size, learning_rate=fk.learning_rate, precision=precision)
        denoiser = trained(
            name, work, partial(train_denoiser, reals["train"], shape, seed=seed + g, **settings), load_denoiser
        )
        for s, (which, count) in enumerate(counts.items()):
            for k, kind in enumerate(fk.kinds):
                folder_seed = seed + g + 7 * s + 31 * k
                make = partial(make_fakes, denoiser, kind, reals[which], count, fk.steps, fk.strengths, folder_seed)
                write_set(work, which, f"{name}_{kind}", make)
        write_grids(work / "out" / "grids", work / "out" / "train", name, fk.kinds)


def gan_fakes(fk, epochs: int, counts: dict, reals: dict, seed: int, work: Path) -> None:
    """Each GAN trained on the training reals, and its samples written for each set (another seed each)."""
    gans = fk.gans
    precision = choose_precision(fk.precision)[0]
    for g, (name, spec) in enumerate(gans.generators.items()):
        shape = GanShape(gans.widths, spec.upsample, spec.loss)
        settings = dict(
            epochs=epochs, batch_size=gans.batch_size, learning_rate=gans.learning_rate, precision=precision
        )
        generator = trained(
            name, work, partial(train_gan, reals["train"], shape, seed=seed + g, **settings), load_generator
        )
        for s, (which, count) in enumerate(counts.items()):
            write_set(work, which, f"{name}_sample", partial(generate, generator, count, seed=seed + g + 7 * s))
        write_grids(work / "out" / "grids", work / "out" / "train", name, ["sample"])


def main() -> None:
    params = load_params()
    fk, seed = params.fakes, params.seed
    on_sample = params.data.source == "sample"
    counts = {"train": fk.sample_images if on_sample else fk.images}
    counts["heldout"] = fk.sample_images if on_sample else fk.heldout_images
    set_determinism(seed)
    meta = read_json(PROCESSED / "meta.json")
    train, val = Split.load(PROCESSED / "train.npz"), Split.load(PROCESSED / "val.npz")
    reals = {"train": train.x[train.y == 0], "heldout": val.x[val.y == 0]}
    stage_params = {"seed": seed, "on_sample": on_sample, "fakes": fk.model_dump()}
    work = WORK / fingerprint(stage_params, meta["dataset_sha256"])[:16]  # other settings: another folder
    with tracking.stage_run("fakes", params.tracking.experiment, stage_params, meta):
        diffusion_fakes(fk, fk.sample_epochs if on_sample else fk.epochs, counts, reals, seed, work)
        gan_fakes(fk, fk.sample_epochs if on_sample else fk.gans.epochs, counts, reals, seed, work)
        tracking.log_artifacts(work / "out" / "grids")
        replace_dir(work / "out", OUT)
    shutil.rmtree(WORK)  # every output is in place: the work folder has served


def write_grids(grids: Path, train: Path, name: str, kinds) -> None:
    """A PNG grid of each of the generator's kinds of training fakes, as written (JPEG q75)."""
    grids.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        images, _ = load_folder(train / f"{name}_{kind}")
        Image.fromarray(grid(images)).save(grids / f"{name}_{kind}.png")


if __name__ == "__main__":
    run_stage(main)
