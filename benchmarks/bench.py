"""The overhead of `python -m koclip bench`: images per second through its whole image pipeline (rows
read from a saved dataset, JPEG decoding, preprocessing, encoding, each batch written to the
embedding cache) against the model alone on already-preprocessed batches, measured in the same run.

The dataset is made here as `datasets` stores a downloaded Hub dataset: 640x480 JPEG photos
(`galleries.coco_like_dataset`). Models: koclip-mini, and koclip-base's shapes with random weights.

    python benchmarks/bench.py [--models mini,base] [--images 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from galleries import coco_like_dataset, encode_floor  # noqa: E402

import koclip  # noqa: E402
from koclip.bench import cache, data  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mini,base")
    parser.add_argument("--images", type=int, default=256, help="photos in the dataset (a multiple of 64)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = coco_like_dataset(root / "coco-like", args.images)
        print("| model | images | harness, images/s | model alone, images/s | harness / model alone | s per 1,000 |")
        print("|---|---|---|---|---|---|")
        for name in args.models.split(","):
            model = koclip.load("koclip-mini") if name == "mini" else koclip.random_model("koclip-base")
            floor = encode_floor(model)
            rows = data.open_data(str(folder), split="train", text_column="caption")
            store = cache.EmbeddingCache(root / f"cache-{name}")
            start = time.perf_counter()
            store.embeddings(model, rows.identity, rows.size, rows.images, model.encode_image, 64, "images", False)
            rate = rows.size / (time.perf_counter() - start)
            print(
                f"| {model.name} | {rows.size} | {rate:.1f} | {floor:.1f} | {rate / floor:.2f} | {1000 / rate:.0f} |",
                flush=True,
            )
            del model


if __name__ == "__main__":
    main()
