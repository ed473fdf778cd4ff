"""How long a visitor waits for the galleries Text → Image builds: the sample photos, and a
Hub-style image dataset, built exactly as the app builds them (`builds.Builds`, in the background).

The dataset is made here and saved with `datasets` as a Hub dataset would arrive: COCO-sized JPEG
photos (640x480, cut from the sample photos) with captions. Each build is compared with a floor
measured in the same run: the model encoding already-preprocessed pixels, nothing else.

Models: koclip-mini (shipped), and a full-size koclip-base with random weights (ViT-B/32 and
klue/roberta-large shapes; the weights do not change the cost).

    python benchmarks/galleries.py [--models mini,base] [--images 256]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import koclip  # noqa: E402
from demo import builds  # noqa: E402
from koclip.data import samples
from koclip.search import sources


def coco_like_dataset(path: Path, n: int) -> Path:
    """n JPEG photos of 640x480 with captions, saved as `datasets` stores a downloaded Hub dataset."""
    import datasets

    rng = np.random.default_rng(0)
    photos = [koclip.open_image(p.path) for p in samples.sample_photos()]
    rows = []
    for i in range(n):
        photo = photos[i % len(photos)]
        scale = rng.uniform(1.0, 1.6)
        big = photo.resize((int(640 * scale), int(480 * scale)))
        x, y = int(rng.integers(0, big.width - 639)), int(rng.integers(0, big.height - 479))
        buffer = io.BytesIO()
        big.crop((x, y, x + 640, y + 480)).save(buffer, format="JPEG", quality=90)
        rows.append({"bytes": buffer.getvalue(), "path": None})
    data = datasets.Dataset.from_dict({"image": rows, "caption": [f"사진 {i}" for i in range(n)]})
    data.cast_column("image", datasets.Image()).save_to_disk(str(path))
    return path


def encode_floor(model: koclip.KoCLIP, repeats: int = 3) -> float:
    """Images per second of the model alone, on preprocessed batches of 64."""
    pixels = model.preprocess([Image.new("RGB", (640, 480), (90, 120, 150))] * 64)
    model.encode_pixels(pixels)  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.encode_pixels(pixels)
        times.append(time.perf_counter() - start)
    return 64 / statistics.median(times)


def timed_build(out: Path, source, model: koclip.KoCLIP, batch_size: int) -> tuple[float, builds.Status]:
    start = time.perf_counter()
    status = builds.Builds().start(out, source, model, batch_size=batch_size).wait()
    if status.phase != builds.FINISHED:
        raise SystemExit(f"the build failed: {status.error}")
    return time.perf_counter() - start, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mini,base")
    parser.add_argument("--images", type=int, default=256, help="photos in the Hub-style dataset")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = coco_like_dataset(root / "coco-like", args.images)
        source = sources.DatasetSource(str(dataset), "train", "image", "caption")
        count = len(samples.sample_photos())
        print("| model | gallery | images | wall time | images/s | model alone, images/s | build / model alone |")
        print("|---|---|---|---|---|---|---|")
        for name in args.models.split(","):
            model = koclip.load("koclip-mini") if name == "mini" else koclip.random_model("koclip-base", backend="flax")
            floor = encode_floor(model)
            # First use on a fresh server: the build includes compiling the batch shapes it meets.
            wall, status = timed_build(root / f"{name}-samples", samples.SampleSource(), model, batch_size=16)
            print(
                f"| {model.name} | sample photos (first use) | {count} | {wall:.1f} s | {count / wall:.1f} | "
                f"{floor:.1f} | {count / wall / floor:.2f} |",
                flush=True,
            )
            wall, status = timed_build(root / f"{name}-dataset", source, model, batch_size=64)
            print(
                f"| {model.name} | Hub-style dataset, 640x480 JPEG | {args.images} | {wall:.1f} s | "
                f"{status.rate:.1f} | {floor:.1f} | {status.rate / floor:.2f} |",
                flush=True,
            )
            del model


if __name__ == "__main__":
    main()
