"""`python -m koclip index`: encode an image collection into a gallery directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from koclip.commands import int_at_least
from koclip.scenes import MIN_SIZE

DETAILS = """\
SOURCE is one of:
  a folder        every .jpg, .jpeg, .png and .webp below it, in sorted path order
  a dataset       with --dataset: a Hugging Face Hub dataset, a folder load_dataset reads
                  (such as images with a metadata.jsonl, whose fields --caption-column can
                  name), or a folder written by save_to_disk
  scenes          generated scenes of coloured shapes (--n, --seed, --size); captions are the
                  first Korean caption of each scene. Write ./scenes for a folder of that name.
  samples         the real photos that ship inside the installed packages (scikit-image,
                  scikit-learn, matplotlib), with Korean captions. Write ./samples for a folder.

The gallery folder holds vectors.npy, metadata.jsonl, thumbs/ and manifest.json (plus
index.faiss for galleries of --ann-threshold images or more). Images that cannot be read are
skipped and listed in the manifest. An interrupted run resumes when started again with the
same arguments; the gallery can be searched only once the run has finished.

examples:
  python -m koclip index photos/ --model koclip-base --out embeddings/photos
  python -m koclip index scenes --n 2000 --model koclip-mini --out embeddings/scenes
  python -m koclip index samples --model koclip-base --out embeddings/koclip-base-samples
  python -m koclip index data/scenes --dataset --caption-column caption_ko --model koclip-mini --out embeddings/scenes-ds"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from koclip.gallery import ANN_THRESHOLD, DTYPES

    positive = int_at_least(1)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = DETAILS
    parser.add_argument("source", metavar="SOURCE", help="image folder, dataset (with --dataset), 'scenes' or 'samples'")
    parser.add_argument("--model", required=True, help="model name, Hub id or checkpoint folder")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="gallery folder to write")
    parser.add_argument("--batch-size", type=positive, default=64, help="images per batch (default: 64)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="stored vector type; float16 halves the file (default: float32)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished gallery in --out")
    parser.add_argument("--ann-threshold", type=positive, default=ANN_THRESHOLD, metavar="N",
                        help=f"build an approximate index for N images or more (default: {ANN_THRESHOLD})")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: this process; ray: a Ray Data pipeline (needs requirements-ray.txt)")
    parser.add_argument("--workers", type=positive, default=1, metavar="N", help="model actors for --engine ray (default: 1)")
    data = parser.add_argument_group("datasets")
    data.add_argument("--dataset", action="store_true", help="SOURCE is a dataset name or folder")
    data.add_argument("--split", default="train", help="dataset split (default: train)")
    data.add_argument("--image-column", default="image", help="column holding images (default: image)")
    data.add_argument("--caption-column", help="column holding captions to keep in the metadata")
    generated = parser.add_argument_group("generated scenes (SOURCE = scenes)")
    generated.add_argument("--n", type=positive, default=1000, help="number of scenes (default: 1000)")
    generated.add_argument("--seed", type=int_at_least(0), default=0, help="scene stream (default: 0)")
    generated.add_argument("--size", type=int_at_least(MIN_SIZE), default=64, help="image side in pixels (default: 64)")


def main(args: argparse.Namespace) -> int:
    from koclip import indexing

    if args.dataset:
        source = indexing.DatasetSource(args.source, args.split, args.image_column, args.caption_column)
    elif args.source == "scenes":
        source = indexing.SceneSource(args.n, args.seed, args.size)
    elif args.source == "samples":
        from koclip.samples import SampleSource

        source = SampleSource()
    else:
        source = indexing.FolderSource(Path(args.source))
    manifest = indexing.build(
        source, args.model, args.out, batch_size=args.batch_size, dtype=args.dtype, engine=args.engine,
        workers=args.workers, ann_threshold=args.ann_threshold, overwrite=args.overwrite,
    )
    skipped = len(manifest["skipped"])
    note = f", skipped {skipped} unreadable (listed in manifest.json)" if skipped else ""
    print(f"indexed {manifest['count']} images with {manifest['model']} into {args.out} "
          f"({manifest['index']} search{note})")
    return 0
