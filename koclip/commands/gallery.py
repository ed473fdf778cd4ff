"""`python -m koclip gallery export|import`: a gallery as a Hugging Face dataset or in clip-retrieval's index
layout, and a gallery built back from either without encoding anything."""

from __future__ import annotations

import argparse
from pathlib import Path

from koclip.commands import check_dataset, check_folder, check_model_argument
from koclip.errors import InvalidInputError
from koclip.search.gallery import read_manifest

FORMATS = ("hf", "clip-retrieval")

DETAILS = """\
formats:
  hf              a Hugging Face dataset in the Hub's own layout: data/train-*.parquet (columns
                  image, caption, source, width, height, embeddings) and a README.md card naming
                  the model and revision. datasets.load_dataset(OUT, split="train") reads it and
                  add_faiss_index("embeddings", metric_type=faiss.METRIC_INNER_PRODUCT) searches it;
                  `huggingface-cli upload OWNER/NAME OUT . --repo-type dataset` publishes it.
  clip-retrieval  clip-retrieval's index folder: img_emb/img_emb_0.npy, metadata/metadata_0.parquet
                  (image_path, caption, url), images/ (the thumbnails), image.index (faiss) and
                  koclip_gallery.json (the model); `clip-retrieval back` serves it.

Imports encode nothing: the vectors are taken as they are, after checking that they are the
model's width, finite and of length 1, and the gallery is searched with the model that made them
(named by the card or koclip_gallery.json; --model, when given, must be the same). For another
model, encode the images anew with `python -m koclip index`. Galleries of --ann-threshold rows or
more get the approximate index indexing would choose (see `python -m koclip index --help`).

OUT is written beside its place and put there whole; an existing OUT is replaced only with
--overwrite, and only when it is a gallery (import) or an earlier export of the same format.

examples:
  python -m koclip gallery export embeddings/photos out/photos-hf --format hf
  python -m koclip gallery import out/photos-hf embeddings/photos-copy
  python -m koclip gallery import OWNER/NAME embeddings/from-hub --model koclip-base
  python -m koclip gallery export embeddings/photos out/photos-index --format clip-retrieval
  python -m koclip gallery import out/photos-index embeddings/photos-again"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m koclip gallery`."""
    from koclip.commands.index import add_index_options

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = DETAILS
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export",
        help="write a gallery as a Hugging Face dataset or a clip-retrieval index",
        description="Write the gallery GALLERY in another format at OUT.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=DETAILS,
    )
    export.add_argument("gallery", type=Path, metavar="GALLERY", help="the gallery folder to export")
    export.add_argument("out", type=Path, metavar="OUT", help="the folder to write")
    export.add_argument(
        "--format",
        choices=FORMATS,
        default="hf",
        help="hf: a Hugging Face dataset; clip-retrieval: its index layout (default: %(default)s)",
    )
    export.add_argument("--overwrite", action="store_true", help="replace OUT when it holds an earlier export")
    imports = actions.add_parser(
        "import",
        help="build a gallery from such a dataset or index, encoding nothing",
        description="Build the gallery OUT from SRC, an export of either format, without encoding anything.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=DETAILS,
    )
    imports.add_argument(
        "src",
        metavar="SRC",
        help="a clip-retrieval index folder, a Hugging Face dataset folder, or a Hub dataset id (owner/name)",
    )
    imports.add_argument("out", type=Path, metavar="OUT", help="the gallery folder to write")
    imports.add_argument(
        "--format",
        choices=("auto", *FORMATS),
        default="auto",
        help="what SRC is; auto: clip-retrieval when the folder holds img_emb/, metadata/, image.index or "
        "koclip_gallery.json, else a Hugging Face dataset (default: %(default)s)",
    )
    imports.add_argument(
        "--model",
        metavar="NAME",
        help="the model that made SRC's embeddings (name, Hub id or folder); must match what SRC records, and is "
        "needed when it records none (a dataset card without a koclip block, a clip-retrieval index without "
        "koclip_gallery.json)",
    )
    imports.add_argument("--overwrite", action="store_true", help="replace the gallery in OUT")
    add_index_options(imports)


def _export(args: argparse.Namespace) -> int:
    check_folder(args.gallery, "GALLERY")
    read_manifest(args.gallery)  # a missing or damaged gallery is refused before anything heavy is imported
    if args.out.resolve() == args.gallery.resolve():
        raise InvalidInputError(f"OUT {args.out} is the gallery itself; choose another folder")
    if args.format == "hf":
        from koclip.search import hf_dataset as writer
    else:
        from koclip.search import clip_retrieval as writer
    writer.check_target(args.out, args.overwrite)
    out = writer.export(args.gallery, args.out, overwrite=args.overwrite)
    print(f"wrote {args.gallery} as {args.format} to {out}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from koclip.search import clip_retrieval, portable

    source = Path(args.src)
    layout = args.format == "clip-retrieval" or (
        args.format == "auto" and source.is_dir() and clip_retrieval.is_layout(source)
    )
    if layout:
        check_folder(source, "SRC")
    else:
        check_dataset(args.src, "SRC")
    portable.check_gallery_target(args.out, args.overwrite)
    if args.model is not None:
        check_model_argument(args.model)
    options = {
        "overwrite": args.overwrite,
        "ann_threshold": args.ann_threshold,
        "memory_budget": args.memory_budget,
        "target_recall": args.target_recall,
    }
    if layout:
        manifest = clip_retrieval.import_layout(source, args.out, args.model, **options)
    else:
        from koclip.search import hf_dataset

        manifest = hf_dataset.import_dataset(args.src, args.out, args.model, **options)
    missing = manifest["without_thumbnail"]
    note = f", {missing:,} without a thumbnail (their images could not be read)" if missing else ""
    print(
        f"imported {manifest['count']:,} vectors of {manifest['model']} into {args.out} "
        f"({manifest['index']} search{note}); nothing was encoded"
    )
    return 0


def main(args: argparse.Namespace) -> int:
    """Runs `python -m koclip gallery`; returns the exit status."""
    return _export(args) if args.action == "export" else _import(args)
