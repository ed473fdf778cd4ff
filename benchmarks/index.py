"""Indexing throughput: images per second for a folder of generated scene PNGs, per engine.

Times are end to end (model loading, compilation and, for Ray, starting the runtime and its
actors), as a user of `python -m koclip index` sees them. Prints a markdown table.

    python benchmarks/index.py --n 512 --engines local,ray
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from koclip.data import scenes
from koclip.registry import BUNDLED_DIR
from koclip.search import indexing, sources

ROOT = Path(__file__).resolve().parent.parent


def default_model(tmp: Path) -> str:
    """koclip-mini when it ships with the package, else a tiny random model written to `tmp`."""
    if (BUNDLED_DIR / "koclip-mini" / "config.json").is_file():
        return "koclip-mini"
    sys.path.insert(0, str(ROOT / "tests"))
    import tiny

    tiny.write_hybrid_clip(tmp / "tiny-conv", kind="conv")
    return str(tmp / "tiny-conv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model to index with (default: koclip-mini, or a tiny random model)")
    parser.add_argument("--n", type=int, default=512, help="images to index")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--engines", default="local,ray", help="comma-separated: local, ray")
    parser.add_argument("--workers", type=int, default=1, help="model actors for the Ray engine")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        model = args.model or default_model(tmp_path)
        folder = tmp_path / "images"
        folder.mkdir()
        for i in range(args.n):
            scenes.scene(0, i, size=args.size).image.save(folder / f"{i:06d}.png")
        print(f"{args.n} PNGs of {args.size}x{args.size}, model {model}, batch size {args.batch_size}\n")
        print("| engine | images | seconds | images/s |")
        print("|---|---|---|---|")
        for engine in args.engines.split(","):
            start = time.perf_counter()
            manifest = indexing.build(
                sources.FolderSource(folder),
                model,
                tmp_path / engine,
                batch_size=args.batch_size,
                engine=engine,
                workers=args.workers,
                progress=False,
            )
            seconds = time.perf_counter() - start
            label = f"ray ({args.workers} actor{'s' * (args.workers > 1)})" if engine == "ray" else engine
            print(f"| {label} | {manifest['count']} | {seconds:.1f} | {manifest['count'] / seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
