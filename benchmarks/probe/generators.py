"""Steps that make the project's own fakes: a tiny diffusion model, small GANs, an autoencoder's redraws, warps."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import numpy as np

from .common import cifake, epoch_log, jpeg75, log, save_float32


def cmd_data(args) -> None:
    from cifake.generalisation import load_folder

    out = args.root / "cifake.npz"
    if out.exists():
        return
    arrays = {}
    for split in ("train", "test"):
        for cls in ("REAL", "FAKE"):
            arrays[f"{split}_{cls}"] = load_folder(args.cifake / split / cls)[0]
            log.info("%s/%s: %d images", split, cls, len(arrays[f"{split}_{cls}"]))
    np.savez(out.with_suffix(".partial.npz"), **arrays)  # type: ignore[arg-type]  # numpy stubs: a key may be allow_pickle
    out.with_suffix(".partial.npz").rename(out)


def cmd_diffusion(args) -> None:
    import keras

    from cifake.generators import DenoiserShape, Diffusion, build_denoiser

    folder = args.root / args.name
    if (folder / "denoiser.keras").exists():
        return
    keras.mixed_precision.set_global_policy(args.precision)
    real = cifake(args)["train_REAL"]
    keras.utils.set_random_seed(args.seed)
    denoiser = build_denoiser(DenoiserShape(tuple(args.widths), args.blocks, args.upsample))
    model = Diffusion(denoiser, seed=args.seed)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=args.lr, weight_decay=1.0e-4))
    backup = keras.callbacks.BackupAndRestore(str(folder / "backup"))
    start = time.time()
    epochs = epoch_log(folder)
    model.fit(real, batch_size=128, epochs=args.epochs, callbacks=[backup, epochs], verbose=0)
    save_float32(
        partial(build_denoiser, DenoiserShape(tuple(args.widths), args.blocks, args.upsample)),
        denoiser,
        folder / "denoiser.keras",
    )
    log.info("diffusion %s: %.1f min", args.name, (time.time() - start) / 60)


def cmd_gan(args) -> None:
    from cifake.gan import GanShape, generate, train_gan

    folder = args.root / args.name
    if (folder / "sample.npy").exists():
        return
    start = time.time()
    generator = train_gan(
        cifake(args)["train_REAL"], GanShape(tuple(args.widths), args.upsample, args.loss), epochs=args.epochs,
        batch_size=64, learning_rate=2.0e-4, precision=args.precision, seed=args.seed, backup_dir=folder / "backup",
        on_epoch=lambda row: log.info("%s", row),
    )  # fmt: skip
    generator.save(folder / "generator.keras")
    np.save(folder / "sample.partial.npy", jpeg75(generate(generator, args.count, seed=args.seed)))
    (folder / "sample.partial.npy").rename(folder / "sample.npy")
    _grid(folder, ("sample",))
    log.info("gan %s: %.1f min", args.name, (time.time() - start) / 60)


def cmd_ae(args) -> None:
    """An autoencoder with a generator's body (:mod:`cifake.autoencoder`); its fakes redraw the first
    ``--count`` real images, the same photographs the detector sees as real (paired)."""
    from cifake.autoencoder import redraw, train_autoencoder
    from cifake.gan import GanShape

    folder = args.root / args.name
    if (folder / "recon.npy").exists():
        return
    real = cifake(args)["train_REAL"]
    start = time.time()
    network = train_autoencoder(
        real, GanShape(tuple(args.widths), args.upsample), epochs=args.epochs, batch_size=128,
        learning_rate=args.lr, precision=args.precision, seed=args.seed, backup_dir=folder / "backup",
        on_epoch=lambda row: log.info("%s", row),
    )  # fmt: skip
    network.save(folder / "autoencoder.keras")
    np.save(folder / "recon.partial.npy", jpeg75(redraw(network, real[: args.count])))
    (folder / "recon.partial.npy").rename(folder / "recon.npy")
    _grid(folder, ("recon",))
    log.info("autoencoder %s: %.1f min", args.name, (time.time() - start) / 60)


def cmd_warp(args) -> None:
    """Real photographs with their shapes bent (a smooth random displacement field, ``--amplitude`` pixels at
    most, drawn on a ``--grid`` x ``--grid`` lattice): pseudo-fakes whose pixels and textures are real and whose
    objects are not, like a GAN's melted shapes (the self-blended-images idea, Shiohara & Yamasaki 2022)."""
    from scipy.ndimage import map_coordinates, zoom

    folder = args.root / args.name
    if (folder / "warped.npy").exists():
        return
    real = cifake(args)["train_REAL"][: args.count]
    rng = np.random.default_rng(args.seed + 2)
    scale = rng.uniform(0.3, 1.0, (len(real), 1, 1, 1)) * args.amplitude
    coarse = rng.uniform(-1.0, 1.0, (len(real), 2, args.grid, args.grid)) * scale
    field = zoom(coarse, (1, 1, 32 / args.grid, 32 / args.grid), order=3, mode="grid-wrap", grid_mode=True)
    rows, cols = np.mgrid[0:32, 0:32].astype(np.float32)
    out = np.empty_like(real)
    for i, image in enumerate(real.astype(np.float32)):
        where = [rows + field[i, 0], cols + field[i, 1]]
        for c in range(3):
            out[i, ..., c] = np.clip(np.rint(map_coordinates(image[..., c], where, order=3, mode="mirror")), 0, 255)
    np.save(folder / "warped.partial.npy", jpeg75(out))
    (folder / "warped.partial.npy").rename(folder / "warped.npy")
    _grid(folder, ("warped",))


def cmd_fakes(args) -> None:
    import keras

    from cifake.generators import resynthesise, sample

    folder = args.root / args.name
    denoiser = keras.saving.load_model(folder / "denoiser.keras", safe_mode=True)
    real = cifake(args)["train_REAL"]
    rng = np.random.default_rng(args.seed + 1)
    for kind in ("sample", "resynth"):
        out = folder / f"{kind}.npy"
        if out.exists():
            continue
        start = time.time()
        if kind == "sample":
            x = sample(denoiser, args.count, steps=args.steps, seed=args.seed)
        else:
            pick = rng.choice(len(real), args.count, replace=False)
            strength = rng.choice(np.asarray(args.strengths, np.float32), args.count)
            x = resynthesise(denoiser, real[pick], strength, steps=args.steps, seed=args.seed)
        np.save(folder / f"{kind}.partial.npy", jpeg75(x))
        (folder / f"{kind}.partial.npy").rename(out)
        log.info("%s/%s: %d images in %.1f min", args.name, kind, args.count, (time.time() - start) / 60)
    _grid(folder)


def _grid(folder: Path, kinds=("sample", "resynth")) -> None:
    from PIL import Image

    from cifake.fakes import grid

    for kind in kinds:
        Image.fromarray(grid(np.load(folder / f"{kind}.npy"), scale=2)).save(folder / f"{kind}_grid.png")
