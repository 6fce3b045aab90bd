"""The demo page (a Streamlit script, started by ``cifake demo``; its arguments are the model files).

Three sections on one page: Classify, Attack it, Everyday changes. All computing is
in :mod:`cifake.demo`; this script lays the results out and caches them.
"""

from __future__ import annotations

import sys

import streamlit as st

from cifake.demo import MAX_UPLOAD_MB, NEUTRAL, Upload, attack, change, classify, load_models, read_upload, shown
from cifake.generalisation import figures_for, ood_note
from cifake.images import ImageError


@st.cache_resource
def _models(paths: tuple[str, ...]):
    return load_models(paths)


@st.cache_data(max_entries=64, show_spinner=False)
def _read(name: str, data: bytes) -> Upload | str:
    """The decoded upload, or the message saying why it cannot be read."""
    try:
        return read_upload(name, data)
    except ImageError as exc:
        return str(exc)


@st.cache_data(max_entries=64, show_spinner="explaining ...", hash_funcs={Upload: lambda u: u.digest})
def _classify(_paths: tuple[str, ...], upload: Upload, threshold: float):
    return classify(_models(_paths), upload.pixels, threshold)


@st.cache_data(max_entries=64, show_spinner="attacking ...", hash_funcs={Upload: lambda u: u.digest})
def _attack(_paths: tuple[str, ...], upload: Upload, target: str, eps: int, threshold: float):
    return attack(_models(_paths), target, upload.pixels, eps, threshold)


def _p(p: float, threshold: float) -> str:
    return f"P(Fake) = {p:.6f} ({'≥' if p >= threshold else '<'} {threshold:g})"


def _classify_section(paths, uploads: list[Upload], threshold: float) -> None:
    st.header("Classify")
    if not uploads:
        st.info("Drop one or more images above: any size, any format Pillow reads.")
    for upload in uploads:
        st.subheader(upload.name)
        for note in upload.notes:
            st.warning(note)
        verdicts = _classify(paths, upload, threshold)
        columns = st.columns(1 + len(verdicts))
        columns[0].image(shown(upload.pixels), caption="what the network sees (32x32)", width=192)
        for column, verdict in zip(columns[1:], verdicts, strict=True):
            column.image(verdict.heat, caption=f"{verdict.model}: evidence for {verdict.label}", width=192)
            column.markdown(f"**{verdict.model}**: **{verdict.label}** · {_p(verdict.p_fake, threshold)}")


def _attack_section(paths, models, uploads: list[Upload], threshold: float) -> None:
    st.header("Attack it")
    st.caption("PGD-20 (the project's attacks.pgd), pushing the chosen model away from its decision.")
    if not uploads:
        return
    names = [u.name for u in uploads]
    upload = uploads[names.index(st.selectbox("image", names, key="attack_image"))]
    target = st.selectbox("model to attack (white-box; the others see a transfer attack)", list(models))
    eps = st.slider("ε (grey levels out of 255)", 1, 8, 4, key="eps")
    result = _attack(paths, upload, target, eps, threshold)
    left, right = st.columns(2)
    left.image(shown(result.adversarial), caption=f"attacked, ε = {eps}/255", width=192)
    right.image(shown(result.perturbation), caption=f"the change, amplified {127.5 / eps:.0f}x", width=192)
    for name in models:
        kind = "white-box" if name == target else "transfer"
        st.markdown(
            f"**{name}** ({kind}): P(Fake) {result.before[name]:.6f} → **{result.after[name]:.6f}** "
            f"({'Fake' if result.after[name] >= threshold else 'Real'})"
        )


def _change_section(models, uploads: list[Upload], threshold: float) -> None:
    st.header("Everyday changes")
    if not uploads:
        return
    names = [u.name for u in uploads]
    upload = uploads[names.index(st.selectbox("image", names, key="change_image"))]
    settings = {
        "jpeg": st.slider("JPEG quality (100 = none)", 10, 100, int(NEUTRAL["jpeg"]), key="jpeg"),
        "blur": st.slider("blur σ (pixels)", 0.0, 3.0, NEUTRAL["blur"], 0.1, key="blur"),
        "resize": st.slider("down-and-up resize to (pixels)", 8, 32, int(NEUTRAL["resize"]), key="resize"),
        "brightness": st.slider("brightness (grey levels)", -80, 80, int(NEUTRAL["brightness"]), key="brightness"),
        "contrast": st.slider("contrast", 0.3, 2.0, NEUTRAL["contrast"], 0.05, key="contrast"),
        "sharpen": st.slider("sharpening (%)", 0, 300, int(NEUTRAL["sharpen"]), 10, key="sharpen"),
    }
    changed, p_fake = change(models, upload.pixels, settings)
    st.image(shown(changed), caption="after the changes", width=192)
    for name, p in p_fake.items():
        st.markdown(f"**{name}**: {_p(p, threshold)}")


def main(paths: tuple[str, ...]) -> None:
    """The page."""
    st.set_page_config(page_title="cifake: real or generated?", layout="wide")
    st.title("cifake: a real photograph, or generated?")
    st.caption(f"Honest limits: {ood_note(figures_for(paths[0]))}. Each image is judged as the 32x32 thumbnail shown.")
    models = _models(paths)
    threshold = st.sidebar.slider("threshold: Fake at P(Fake) ≥", 0.05, 0.95, 0.5, 0.05)
    files = st.file_uploader(
        f"Images (any size, any format Pillow reads; up to {MAX_UPLOAD_MB} MB each)",
        accept_multiple_files=True,
        key="files",
    )
    uploads = []
    for file in files or []:
        got = _read(file.name, file.getvalue())
        if isinstance(got, str):
            st.error(f"{file.name}: cannot be used: {got}")
        else:
            uploads.append(got)
    _classify_section(paths, uploads, threshold)
    attack_column, change_column = st.columns(2)
    with attack_column:
        _attack_section(paths, models, uploads, threshold)
    with change_column:
        _change_section(models, uploads, threshold)


main(tuple(sys.argv[1:]))
