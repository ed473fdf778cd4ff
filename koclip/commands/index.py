"""`python -m koclip index`: encode an image collection into a gallery directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from koclip import units
from koclip.commands import (
    check_dataset,
    check_folder,
    check_model_argument,
    float_above,
    int_at_least,
    refuse_unused,
    terminal_safe,
)
from koclip.data.scenes import MIN_SIZE
from koclip.errors import InvalidInputError, KoCLIPError
from koclip.search import tuning
from koclip.search.gallery import ANN_THRESHOLD, DTYPES, EXACT, MANIFEST, occupied

# Options that count only with one kind of SOURCE, with their defaults.
DATASET_OPTIONS = {"split": "train", "image_column": "image", "caption_column": None}
SCENE_OPTIONS = {"n": 1000, "seed": 0, "size": 64}
RAY_OPTIONS = {"workers": 1}

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

The gallery folder holds vectors.npy, metadata.jsonl, thumbs/ and manifest.json. Galleries of
--ann-threshold images or more also get index/: the approximate index (IVF or plain 4-bit PQ
fast scan, or an HNSW graph) that searched fastest on 500 of the gallery's own rows (and their
captions, as text queries, where the source has captions) while reaching --target-recall, among
those that fit --memory-budget. The choice and its measured recall are printed and kept in
manifest.json. Images that cannot be read are skipped, named on stderr and listed in the manifest
(the first 1,000 of them). An interrupted run resumes when started again with the same arguments;
the gallery can be searched only once the run has finished. With --overwrite the old gallery stays
searchable until the new one, complete, takes its place.

With --append, SOURCE adds to the finished gallery in --out: the images it does not hold already
(matched by path in the folder, row or scene number, so SOURCE must be the gallery's own: the same
folder, dataset and split, or scene seed and size; a folder may have gained images, scenes --n may
be larger) are encoded and added after its rows, whose numbers stay valid. The model and --dtype
must be the gallery's. The grown gallery is built beside the old one, which stays searchable until
it takes its place; an interrupted append resumes when run again. A gallery that reaches
--ann-threshold gets its index tuned; one that has an index keeps its kind and parameters, rebuilt
on every row, until it has more than {growth} times the rows they were measured at (or they no
longer fit --memory-budget), when they are measured again.

examples:
  python -m koclip index photos/ --model koclip-base --out embeddings/photos
  python -m koclip index scenes --n 2000 --model koclip-mini --out embeddings/scenes
  python -m koclip index photos/ --model koclip-base --out embeddings/photos --append
  python -m koclip index samples --model koclip-base --out embeddings/koclip-base-samples
  python -m koclip index data/scenes --dataset --caption-column caption_ko --model koclip-mini \\
      --out embeddings/scenes-ds"""


def budget(text: str) -> int:
    """A --memory-budget size such as 512M or 4G, in bytes; argparse's error for text that is not a size."""
    try:
        return units.parse_size(text)
    except KoCLIPError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_index_options(parser: argparse.ArgumentParser) -> None:
    """--ann-threshold, --memory-budget and --target-recall: how a gallery's approximate index is chosen
    (`index`, and `gallery import`)."""
    parser.add_argument(
        "--ann-threshold",
        type=int_at_least(1),
        default=ANN_THRESHOLD,
        metavar="N",
        help=f"build an approximate index for N images or more (default: {ANN_THRESHOLD})",
    )
    parser.add_argument(
        "--memory-budget",
        type=budget,
        default=tuning.DEFAULT_BUDGET,
        metavar="SIZE",
        help=f"memory the approximate index may hold, e.g. 512M or 4G (default: {tuning.DEFAULT_BUDGET >> 30}G)",
    )
    parser.add_argument(
        "--target-recall",
        type=float_above(0, 1),
        default=tuning.TARGET_RECALL,
        metavar="R",
        help="recall@10 the approximate index must reach on held-out rows (default: %(default)s)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m koclip index`."""
    positive = int_at_least(1)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = DETAILS.format(growth=tuning.RETUNE_GROWTH)
    parser.add_argument(
        "source", metavar="SOURCE", help="image folder, dataset (with --dataset), 'scenes' or 'samples'"
    )
    parser.add_argument("--model", required=True, help="model name, Hub id or checkpoint folder")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="gallery folder to write")
    parser.add_argument("--batch-size", type=positive, default=64, help="images per batch (default: 64)")
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default=None,
        help="stored vector type; float16 halves the file (default: float32; with --append, the gallery's)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a finished gallery in --out")
    parser.add_argument(
        "--append",
        action="store_true",
        help="add the images of SOURCE that the gallery in --out lacks, after its rows (see below)",
    )
    add_index_options(parser)
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process; ray: a Ray Data pipeline (needs requirements-ray.txt)",
    )
    parser.add_argument(
        "--workers",
        type=positive,
        default=RAY_OPTIONS["workers"],
        metavar="N",
        help="model actors for --engine ray (default: %(default)s)",
    )
    data = parser.add_argument_group("datasets")
    data.add_argument("--dataset", action="store_true", help="SOURCE is a dataset name or folder")
    data.add_argument("--split", default=DATASET_OPTIONS["split"], help="dataset split (default: %(default)s)")
    data.add_argument(
        "--image-column", default=DATASET_OPTIONS["image_column"], help="column holding images (default: %(default)s)"
    )
    data.add_argument(
        "--caption-column",
        default=DATASET_OPTIONS["caption_column"],
        help="column holding captions to keep in the metadata",
    )
    generated = parser.add_argument_group("generated scenes (SOURCE = scenes)")
    generated.add_argument(
        "--n", type=positive, default=SCENE_OPTIONS["n"], help="number of scenes (default: %(default)s)"
    )
    generated.add_argument(
        "--seed", type=int_at_least(0), default=SCENE_OPTIONS["seed"], help="scene stream (default: %(default)s)"
    )
    generated.add_argument(
        "--size",
        type=int_at_least(MIN_SIZE),
        default=SCENE_OPTIONS["size"],
        help="image side in pixels (default: %(default)s)",
    )


def main(args: argparse.Namespace) -> int:
    """Runs `python -m koclip index`; returns the exit status."""
    scenes = args.source == "scenes" and not args.dataset
    if not args.dataset:
        refuse_unused(args, DATASET_OPTIONS, "--dataset")
    if not scenes:
        refuse_unused(args, SCENE_OPTIONS, "SOURCE scenes")
    if args.engine != "ray":
        refuse_unused(args, RAY_OPTIONS, "--engine ray")
    if args.dataset:
        check_dataset(args.source, "SOURCE")
    elif args.source not in ("scenes", "samples"):
        check_folder(Path(args.source), "SOURCE")
    if args.out.exists() and not args.out.is_dir():
        raise InvalidInputError(f"--out {args.out} is a file; give a folder for the gallery")
    if args.append and args.overwrite:
        raise InvalidInputError("--append adds to the gallery and --overwrite replaces it; pass one of them")
    if args.append:
        from koclip.search.indexing import check_appendable

        check_appendable(args.out, args.dtype)
    elif (args.out / MANIFEST).is_file() and not args.overwrite:
        raise occupied(f"--out {args.out}")
    check_model_argument(args.model)

    from koclip.search import indexing, sources

    if args.dataset:
        source = sources.DatasetSource(args.source, args.split, args.image_column, args.caption_column)
    elif scenes:
        source = sources.SceneSource(args.n, args.seed, args.size)
    elif args.source == "samples":
        from koclip.data.samples import SampleSource

        source = SampleSource()
    else:
        source = sources.FolderSource(Path(args.source))
    manifest = indexing.build(
        source,
        args.model,
        args.out,
        batch_size=args.batch_size,
        dtype=args.dtype,
        engine=args.engine,
        workers=args.workers,
        ann_threshold=args.ann_threshold,
        memory_budget=args.memory_budget,
        target_recall=args.target_recall,
        overwrite=args.overwrite,
        append=args.append,
    )
    appended = manifest.get("appended")
    if appended is not None and not appended["added"]:
        print(
            terminal_safe(
                f"nothing to add: the {appended['already_held']:,} images of {args.source} are in {args.out} already"
            )
        )
        return 0
    for record in manifest["skipped"]:
        print(terminal_safe(f"skipped {record['source']}: {record['reason']}"), file=sys.stderr)
    skipped = manifest["skipped_count"]
    unlisted = skipped - len(manifest["skipped"])
    if unlisted:
        print(f"skipped {unlisted:,} more unreadable inputs", file=sys.stderr)
    note = f", skipped {skipped:,} unreadable (listed in manifest.json)" if skipped else ""
    if manifest.get("unlike_training"):
        from koclip import domain

        print(
            terminal_safe(
                "warning: " + domain.gallery_warning(manifest["model"], manifest["unlike_training"], manifest["count"])
            ),
            file=sys.stderr,
        )
    chosen = manifest.get("index_tuning")
    captions = f" and {chosen['caption_queries']} of their captions" if chosen and chosen["caption_queries"] else ""
    measured = (
        (
            f": recall@10 {chosen['recall@10']:.3f}, at least {chosen['recall@10_floor']:.3f} for new queries, "
            f"on {chosen['held_out']} held-out rows{captions}, "
            f"p50 {chosen['p50_ms']:.2f} ms"
        )
        if chosen
        else ""
    )
    if appended is None:
        print(
            f"indexed {manifest['count']} images with {manifest['model']} into {args.out} "
            f"({manifest['index']} search{measured}{note})"
        )
        return 0
    if appended["index"] == tuning.REBUILT and chosen:
        kept = "kept as" if manifest["index"] == EXACT else "rebuilt with the parameters"
        how = f", {kept} tuned at {chosen['tuned_count']:,} rows"
    else:
        how = {tuning.TUNED: ", tuned for the first time", tuning.RETUNED: ", retuned"}.get(appended["index"], "")
    already = f"; {appended['already_held']:,} were there already and skipped" if appended["already_held"] else ""
    print(
        f"appended {appended['added']:,} images with {manifest['model']} to {args.out}, {manifest['count']:,} in all"
        f"{already} ({manifest['index']} search{how}{measured}{note})"
    )
    return 0
