"""Text → Image: search a gallery of image embeddings with a Korean query, or with an image.

Every model can answer here without a command line: when it has no gallery yet, the sample photos
that ship with the installed packages are encoded on first use, and a visitor can add a collection
from the Hub or their own photos.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import streamlit as st

from demo import builds, galleries, inputs, models, results, settings
from koclip import domain
from koclip.data import samples
from koclip.errors import KoCLIPError
from koclip.search import gallery, jobs, sources

SCENE_QUERIES = ("빨간 원", "파란 삼각형", "노란 별", "큰 초록 사각형", "왼쪽에 보라 하트가 있다")
PHOTO_QUERIES = ("고양이", "커피 한 잔", "로켓", "우주비행사", "꽃")
GRID_COLUMNS = 5
MAX_K = 20
OWN = "own"  # the gallery key of this session's uploaded photos


def own_gallery(model) -> gallery.Gallery | None:
    """This session's uploaded photos, encoded once per set of files and model; None when there are none.

    Bounded per visitor (see galleries.encode_uploads)."""
    files = st.session_state.get(f"t2i_own_files_{st.session_state.get('t2i_own_round', 0)}") or []
    if not files:
        return None
    digest = hashlib.sha256(b"".join(hashlib.sha256(f.getvalue()).digest() for f in files)).hexdigest()
    cached = st.session_state.get("t2i_own")
    if cached is None or cached[0] != (model.name, digest):
        cached = st.session_state["t2i_own"] = ((model.name, digest), *galleries.encode_uploads(model, files))
    for note in cached[2]:
        st.warning(note, icon=":material/help:")
    return cached[1]


def build_progress(out: Path, what: str, preparing: str, retry_key: str, retry) -> None:
    """The progress bar of the build of `out`, refreshed every second; the page reruns when it ends.

    A failed build shows its error and a button that starts it again (builds.Builds bounds how often).
    """

    @st.fragment(run_every=1.0)
    def show() -> None:
        status = galleries.server_builds().get(out).status
        if status.phase == builds.PREPARING:
            st.progress(0.0, text=f"{what}: {preparing}…")
        elif status.phase == builds.ENCODING:
            eta = f"about {status.eta:.0f} s left" if status.eta is not None else "measuring speed"
            resumed = f" · resumed at {status.resumed_from:,}" if status.resumed_from else ""
            st.progress(
                status.done / max(status.total, 1),
                text=f"{what}: {status.done:,} of {status.total:,} images · {status.rate:.1f} images/s · "
                f"{eta}{resumed}",
            )
        elif status.phase == builds.FAILED:
            st.error(f"{what} could not be built: {status.error}")
            wait = galleries.server_builds().retry_in(out)
            if wait is None:
                st.button("Try again", key=retry_key, on_click=retry, icon=":material/refresh:")
            else:
                st.caption(f"Tried {builds.MAX_TRIES} times; it can be tried again in {wait / 60:.0f} min.")
        else:
            st.rerun()  # finished: the whole page redraws with the new gallery

    show()


def start_samples(model) -> builds.Build:
    return galleries.server_builds().start(
        galleries.samples_folder(model.name), samples.SampleSource(), model, batch_size=16
    )


def start_dataset(model, dataset: settings.GalleryDataset) -> builds.Build:
    source = sources.DatasetSource(dataset.name, dataset.split, dataset.image_column, dataset.caption_column)
    return galleries.server_builds().start(settings.embeddings_dir() / dataset.folder_name(model.name), source, model)


def collections_panel(model, on_disk: dict[str, str], have_gallery: bool) -> None:
    """Ways to get something to search: sample photos, a Hub dataset, the visitor's own photos."""
    dataset = settings.gallery_dataset()
    dataset_out = settings.embeddings_dir() / dataset.folder_name(model.name)
    if (dataset_out / jobs.PARTIAL).is_dir() and galleries.server_builds().get(dataset_out) is None:
        start_dataset(model, dataset)  # a build stopped by a restart: carry on where it was
    with st.expander("Add photos to search", expanded=not have_gallery, icon=":material/add_photo_alternate:"):
        sample_tab, hub_tab, own_tab = st.tabs(["Sample photos", "A collection from the Hub", "Your photos"])
        with sample_tab:
            photos = samples.sample_photos()
            st.write(
                f"{len(photos)} real photos that ship inside the installed Python packages (scikit-image, "
                f"scikit-learn, …), encoded with {model.name} once and then kept for every visitor."
            )
            samples_out = galleries.samples_folder(model.name)
            build = galleries.server_builds().get(samples_out)
            if build is not None and (build.status.running or build.status.phase == builds.FAILED):
                build_progress(
                    samples_out,
                    "Sample photos",
                    "reading the photos",
                    "t2i_retry_samples",
                    lambda: start_samples(model),
                )
            elif str(samples_out) in on_disk:
                st.success("Encoded: pick them in the **Gallery** box.", icon=":material/check:")
            elif st.button("Encode the sample photos", key="t2i_build_samples"):
                start_samples(model)
                st.rerun()
        with hub_tab:
            where = "on this server" if Path(dataset.name).exists() else "from the Hugging Face Hub"
            st.write(
                f"The `{dataset.name}` dataset, split `{dataset.split}`, {where}: read, encoded with "
                f"{model.name} and saved on this server, so every later visitor gets it at once. "
                "A Space operator picks the dataset with the `KOCLIP_GALLERY_DATASET` and `KOCLIP_GALLERY_SPLIT` "
                "variables."
            )
            build = galleries.server_builds().get(dataset_out)
            preparing = "reading the dataset" if Path(dataset.name).exists() else "downloading the dataset from the Hub"
            if build is not None and (build.status.running or build.status.phase == builds.FAILED):
                build_progress(
                    dataset_out, dataset.name, preparing, "t2i_retry_dataset", lambda: start_dataset(model, dataset)
                )
            elif st.button(f"Build a gallery from {dataset.name}", key="t2i_build_dataset"):
                start_dataset(model, dataset)
                st.rerun()
        with own_tab:
            st.write(f"Up to {galleries.MAX_UPLOADS} photos, searched in this session only and never saved.")
            round_ = st.session_state.setdefault("t2i_own_round", 0)
            st.file_uploader(
                "Your photos (jpg, png, webp)",
                type=["jpg", "jpeg", "png", "webp"],
                accept_multiple_files=True,
                key=f"t2i_own_files_{round_}",
            )
            st.button("Clear my photos", key="t2i_own_clear", on_click=clear_own_photos)


def clear_own_photos() -> None:
    st.session_state["t2i_own_round"] = st.session_state.get("t2i_own_round", 0) + 1
    st.session_state.pop("t2i_own", None)
    if st.session_state.get("t2i_gallery") == OWN:
        st.session_state.pop("t2i_gallery")


def use_query(query: str) -> None:
    st.session_state["t2i_query"] = query
    st.session_state["t2i_mode"] = "Text"


def more_like(result: dict) -> None:
    st.session_state["t2i_like"] = (st.session_state["t2i_gallery"], result["index"])
    st.session_state["t2i_mode"] = "Image"


def forget_like() -> None:
    st.session_state.pop("t2i_like", None)


def follow_link() -> None:
    """On a session's first run, take the query, gallery and k from the link it was opened with."""
    if st.session_state.get("t2i_linked"):
        return
    st.session_state["t2i_linked"] = True
    params = st.query_params
    if params.get("q"):
        st.session_state["t2i_query"] = params["q"]
        st.session_state["t2i_mode"] = "Text"
    if params.get("k", "").isdigit():
        st.session_state["t2i_k"] = min(max(int(params["k"]), 1), MAX_K)
    st.session_state["t2i_wanted"] = params.get("gallery")


def pick_linked_gallery(labels: dict[str, str]) -> None:
    """Select the gallery a link named (by folder name), once, when this model has it."""
    wanted = st.session_state.pop("t2i_wanted", None)
    match = next((path for path in labels if path != OWN and Path(path).name == wanted), None)
    if match is not None:
        st.session_state["t2i_gallery"] = match


def share_link(query: str | None, chosen: str, k: int) -> None:
    """Put the search into the page's address, so that copying it shares the same results."""
    wanted = {"q": query, "gallery": None if chosen == OWN else Path(chosen).name, "k": str(k)}
    for name, value in wanted.items():
        if value is None:
            st.query_params.pop(name, None)
        elif st.query_params.get(name) != value:
            st.query_params[name] = value


st.title("Text → Image")
st.caption("Retrieval: the images of a gallery whose embeddings lie closest to a query, in words or as an image.")
follow_link()
model = models.current_model()

on_disk, damaged = galleries.disk_galleries(model.name)
own = own_gallery(model)
labels = on_disk | ({OWN: "Your photos (this session only)"} if own is not None else {})
if not labels:
    start_samples(model)  # every model answers: the sample photos take seconds to encode
collections_panel(model, on_disk, bool(labels))
if not labels:
    st.info(f"There is no gallery made with **{model.name}** yet: the sample photos above are being encoded.")
    st.stop()

if damaged:
    with st.expander(
        f"{len(damaged)} damaged {'gallery' if len(damaged) == 1 else 'galleries'} left out", icon=":material/report:"
    ):
        for name, reason in damaged.items():
            st.markdown(f"**{inputs.quote(name)}**: {inputs.quote(reason, 400)}")
pick_linked_gallery(labels)
if st.session_state.get("t2i_gallery") not in labels:
    st.session_state.pop("t2i_gallery", None)
chosen = st.selectbox("Gallery", list(labels), format_func=labels.get, key="t2i_gallery")
try:
    collection = own if chosen == OWN else galleries.open_gallery(chosen)
except KoCLIPError as exc:  # a damaged or unfinished gallery
    st.error(str(exc))
    st.stop()

unlike = collection.manifest.get("unlike_training", 0) if chosen != OWN else 0
if unlike:
    st.warning(domain.gallery_warning(model.name, unlike, len(collection)), icon=":material/help:")
mode = st.radio("Search with", ("Text", "Image"), horizontal=True, key="t2i_mode")
st.session_state.setdefault("t2i_k", 10)
k = st.slider("Top k", 1, MAX_K, key="t2i_k")
start = time.perf_counter()
try:
    if mode == "Text":
        examples = PHOTO_QUERIES if domain.trained_on_photos(model) else SCENE_QUERIES
        st.write("Examples:")
        for column, example in zip(st.columns(len(examples)), examples, strict=True):
            column.button(example, on_click=use_query, args=(example,), key=f"t2i_example_{example}", width="stretch")
        st.session_state.setdefault("t2i_query", examples[0])
        query = inputs.query_input(model, "t2i_query")
        if query is None:
            st.query_params.pop("q", None)  # the address must not share an earlier query as if it were this one
            st.stop()
        hits = inputs.answer(model, lambda: gallery.search(model, collection, query, k))
        asked = f"“{inputs.quote(query)}”"
    else:
        like = st.session_state.get("t2i_like")
        if like is not None and like[0] == chosen and like[1] < len(collection):
            left, right = st.columns([1, 4])
            left.image(results.square(collection.thumbnail(like[1])), width="stretch")
            right.write("Images most like this one, by image–image similarity:")
            right.button("Search with another image", on_click=forget_like, key="t2i_like_clear")
            hits = collection.similar(like[1], k)
            asked = "this image"
        else:
            upload = st.file_uploader(
                "Query image (jpg, png, webp)", type=["jpg", "jpeg", "png", "webp"], key="t2i_query_image"
            )
            image = inputs.open_upload(upload) if upload else None
            if image is None:
                st.info("Upload an image, or press **More like this** under a result, to find similar images.")
                st.stop()
            st.image(image, width=160)
            inputs.warn_if_unfamiliar(model, image)
            hits = inputs.answer(model, lambda: gallery.search_image(model, collection, image, k))
            asked = "your image"
except KoCLIPError as exc:  # a damaged gallery, or a model that does not fit it
    st.error(str(exc))
    st.stop()
elapsed = time.perf_counter() - start
found = [
    collection.item(hit.index) | {"score": hit.score, "index": hit.index, "picture": collection.thumbnail(hit.index)}
    for hit in hits
]
st.session_state["t2i_results"] = found
st.caption(f"{asked}: {len(found)} best of {len(collection):,} · {elapsed * 1000:.0f} ms")
share_link(query if mode == "Text" else None, chosen, k)
results.cards(found, GRID_COLUMNS, "t2i", labels[chosen], more_like)
