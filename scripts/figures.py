"""Render the figures of intro.md from a model's real output: PNGs in figures/.

    python scripts/figures.py                      # all four, with koclip-mini
    python scripts/figures.py --only text_to_patch

training_curve.png   loss (and held-out zero-shot accuracy) against step, from the model's
                     training_log.jsonl, which `python -m koclip train` writes
image_to_text.png    zero-shot classification of a generated blue triangle (`model.classify`)
text_to_image.png    the best matches for 빨간 원 in a gallery (`koclip.search.gallery.search`)
text_to_patch.png    a 3x3 board of shapes and the score of each cell for 빨간 원
                     (`koclip.patches.rank_patches`), as a heat map

Needs matplotlib (requirements-dev.txt) and a Korean font: Debian's fonts-noto-cjk.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # koclip is used from the checkout, not installed

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from PIL import Image  # noqa: E402

import koclip  # noqa: E402
from koclip.data import scenes  # noqa: E402
from koclip.patches import rank_patches  # noqa: E402
from koclip.search import gallery  # noqa: E402

FONT = "Noto Sans CJK KR"
DPI = 110
QUERY = "빨간 원"
# The classified image (a blue triangle) and its labels: two share a word with the right one.
SHAPE, COLOR, IMAGE_SEED = "삼각형", "파란", 3
LABELS = ["파란 삼각형", "파란 사각형", "초록 삼각형", "빨간 원", "노란 별"]
BOARD_SEED = 21  # a board with a red circle, another circle and two other red shapes
TOP_K = 8
NOT_PLOTTED = ("step", "seconds")
LOSS_NAMES = {"loss": "total", "contrastive": "contrastive", "label": "colour+shape pairs"}


def use_korean_font() -> None:
    if FONT not in {f.name for f in font_manager.fontManager.ttflist}:
        sys.exit(f"matplotlib finds no {FONT!r} font; install it (Debian: apt-get install fonts-noto-cjk)")
    plt.rcParams.update({"font.family": FONT, "axes.unicode_minus": False, "savefig.dpi": DPI})


def save(fig: plt.Figure, path: Path) -> None:
    """Write the figure as a PNG of at most 256 colours: a third of the size, with no visible loss."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    Image.open(buffer).convert("RGB").quantize(256).save(path, optimize=True)


def training_curve(model: koclip.KoCLIP, out: Path, _gallery: Path) -> None:
    path = model.directory / "training_log.jsonl"
    if not path.is_file():
        sys.exit(f"{path} is missing: `python -m koclip train` writes it beside the weights")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    numeric = [
        k
        for k in dict.fromkeys(k for r in records for k in r)
        if k not in NOT_PLOTTED and all(isinstance(r.get(k, 0), (int, float)) for r in records)
    ]
    # Loss terms are on every line; evaluations (zero-shot accuracy) only on some.
    losses = [k for k in numeric if all(k in r for r in records)]
    scores = [k for k in numeric if k not in losses]
    fig, axes = plt.subplots(1, 2 if scores else 1, figsize=(9.5 if scores else 5, 3.4), squeeze=False)
    for field in losses:
        axes[0, 0].plot([r["step"] for r in records], [r[field] for r in records], label=LOSS_NAMES.get(field, field))
    axes[0, 0].set(xlabel="step", ylabel="mean since the previous point", ylim=(0, None), title="training loss")
    axes[0, 0].legend(frameon=False)
    if scores:
        evaluated = [r for r in records if scores[0] in r]
        for field in scores:
            axes[0, 1].plot([r["step"] for r in evaluated], [r[field] for r in evaluated], marker="o", label=field)
        axes[0, 1].set(xlabel="step", ylabel="accuracy", ylim=(0, 1.03), title="zero-shot accuracy, held-out images")
        axes[0, 1].legend(frameon=False, fontsize="small")
    minutes = records[-1].get("seconds", 0) / 60
    fig.suptitle(f"{model.name}: {records[-1]['step']:,} steps" + (f", {minutes:.1f} minutes" if minutes else ""))
    fig.tight_layout()
    save(fig, out)


def image_to_text(model: koclip.KoCLIP, out: Path, _gallery: Path) -> None:
    image = scenes.single_object(SHAPE, COLOR, size_px=192, seed=IMAGE_SEED)
    ranked = model.classify(image, LABELS)
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.5, 2.8), gridspec_kw={"width_ratios": [1, 1.8]})
    left.imshow(image)
    left.set_axis_off()
    names, probs = [label for label, _ in ranked][::-1], [p for _, p in ranked][::-1]
    bars = right.barh(names, probs, color=["#4c72b0" if n != ranked[0][0] else "#dd8452" for n in names])
    right.bar_label(bars, labels=[f"{p:.1%}" if p >= 0.001 else "<0.1%" for p in probs], padding=3)
    right.set(xlim=(0, 1.18), xlabel="probability")
    right.spines[["top", "right"]].set_visible(False)
    right.set_title("each label read as “이것은 {} 이다.”", fontsize="medium")
    fig.tight_layout()
    save(fig, out)


def text_to_image(model: koclip.KoCLIP, out: Path, gallery_dir: Path) -> None:
    photos = gallery.Gallery.open(gallery_dir)
    hits = gallery.search(model, photos, QUERY, k=TOP_K)
    cols = 4
    fig, axes = plt.subplots(len(hits) // cols, cols, figsize=(8, 5.4))
    for rank, (hit, ax) in enumerate(zip(hits, axes.flat), start=1):
        row = photos.item(hit.index)
        ax.imshow(Image.open(row["thumbnail"]))
        ax.set_axis_off()
        caption = "\n".join(textwrap.wrap(row.get("caption", ""), 15))
        ax.text(
            0.5,
            -0.04,
            f"{rank}. cosine {hit.score:.3f}",
            transform=ax.transAxes,
            ha="center",
            va="top",
            fontsize="small",
            fontweight="bold",
        )
        ax.text(0.5, -0.15, caption, transform=ax.transAxes, ha="center", va="top", fontsize="small")
    fig.suptitle(f"“{QUERY}”: the {len(hits)} best of {len(photos):,} generated scenes")
    fig.subplots_adjust(left=0.02, right=0.98, top=0.9, bottom=0.12, wspace=0.15, hspace=0.6)
    save(fig, out)


def text_to_patch(model: koclip.KoCLIP, out: Path, _gallery: Path) -> None:
    board = scenes.composite(BOARD_SEED)
    ranking = rank_patches(model, board.image, QUERY, 3, 3)
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.8, 3.6), gridspec_kw={"width_ratios": [1, 1.25]})
    left.imshow(board.image)
    for x in np.linspace(0, board.image.width, 4)[1:-1]:
        left.axvline(x - 0.5, color="white", linewidth=1)
        left.axhline(x - 0.5, color="white", linewidth=1)
    left.set_axis_off()
    left.set_title("3×3 board", fontsize="medium")
    heat = ranking.cosine.reshape(ranking.rows, ranking.cols)
    shown = right.imshow(heat, cmap="viridis")  # the colour map of the app's heat map
    middle = (heat.min() + heat.max()) / 2
    for (r, c), value in np.ndenumerate(heat):
        right.text(c, r, f"{value:.2f}", ha="center", va="center", color="black" if value > middle else "white")
    right.set_xticks([])
    right.set_yticks([])
    right.set_title(f"“{QUERY}” against each cell", fontsize="medium")
    fig.colorbar(shown, ax=right, fraction=0.046, pad=0.04, label="cosine similarity")
    fig.tight_layout()
    save(fig, out)


FIGURES = {f.__name__: f for f in (training_curve, image_to_text, text_to_image, text_to_patch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="koclip-mini", help="model name or folder")
    parser.add_argument(
        "--gallery",
        type=Path,
        default=ROOT / "embeddings" / "koclip-mini-scenes",
        help="gallery that text_to_image searches; made with the same model",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "figures", help="folder the PNGs go to")
    parser.add_argument("--only", nargs="+", choices=sorted(FIGURES), help="render only these figures")
    args = parser.parse_args()
    use_korean_font()
    model = koclip.load(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or FIGURES:
        path = args.out / f"{name}.png"
        FIGURES[name](model, path, args.gallery)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
