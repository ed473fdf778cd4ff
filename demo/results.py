"""Search results as cards of equal height, each with a score bar, and an enlarged view of one."""

from __future__ import annotations

import functools
import html
import io
from collections.abc import Callable
from typing import Any

import streamlit as st
from PIL import Image

CARD_SIDE = 256  # thumbnails are letterboxed into a square of this side, so every card is as tall
ENLARGED_SIDE = 512
LETTERBOX = (240, 242, 246)


# Keyed by the thumbnail's bytes, not its file: a gallery re-indexed under the same name shows its
# own pictures. The same results come back to many sessions; ~20 KB each.
@functools.lru_cache(maxsize=1024)
def square(thumbnail: bytes | None, side: int = CARD_SIDE) -> bytes:
    """The thumbnail (JPEG bytes, as Gallery.thumbnail gives it) scaled to fit a square and centred on
    it, as JPEG bytes; a blank square when there is none."""
    canvas = Image.new("RGB", (side, side), LETTERBOX)
    if thumbnail is not None:
        with Image.open(io.BytesIO(thumbnail), formats=("JPEG",)) as image:  # Gallery.thumbnail checked it
            scale = side / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.convert("RGB").resize(size, Image.BICUBIC)
            canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def one_line(text: str) -> None:
    """`text` on a single line, cut with an ellipsis where it does not fit; the whole of it on hover."""
    safe = html.escape(text)
    st.markdown(
        f'<div title="{safe}" style="white-space:nowrap;overflow:hidden;text-overflow:ellipsis;'
        f'font-size:0.85rem;color:rgba(49,51,63,0.75)">{safe or "&nbsp;"}</div>',
        unsafe_allow_html=True,
    )


@st.dialog("Result", width="large")
def enlarge(result: dict[str, Any], rank: int, where: str) -> None:
    left, right = st.columns([3, 2])
    left.image(square(result["picture"], ENLARGED_SIDE), width="stretch")
    with right:
        st.markdown(f"**#{rank}** · cosine similarity **{result['score']:.3f}**")
        if result.get("caption"):
            st.write(result["caption"])
        st.caption(f"Source: {result.get('source', 'unknown')} · row {result['index']} of {where}")
        if result.get("width") and result.get("height"):
            st.caption(f"Original size: {result['width']}×{result['height']} pixels")


def cards(
    results: list[dict[str, Any]], columns: int, key: str, where: str, more_like: Callable[[dict[str, Any]], None]
) -> None:
    """One card per result, best first: the picture (`picture`, thumbnail bytes or None), a bar for its
    score, a caption line, and buttons to enlarge it or to search for images like it (`more_like`,
    called with the result)."""
    grid = st.columns(columns)
    for rank, result in enumerate(results, 1):
        with grid[(rank - 1) % columns], st.container(border=True):
            st.image(
                square(result["picture"]),
                width="stretch",
                caption=None if result["picture"] is not None else "no picture: its thumbnail is missing or unfit",
            )
            st.progress(min(max(result["score"], 0.0), 1.0), text=f"#{rank} · {result['score']:.3f}")
            one_line(result.get("caption") or "")
            if st.button("Enlarge", key=f"{key}_enlarge_{rank}", icon=":material/open_in_full:", width="stretch"):
                enlarge(result, rank, where)
            st.button(
                "More like this",
                key=f"{key}_like_{rank - 1}",
                icon=":material/image_search:",
                on_click=more_like,
                args=(result,),
                width="stretch",
            )
