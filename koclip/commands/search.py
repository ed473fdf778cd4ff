"""`python -m koclip search`: the gallery images that best match a text query, or an image."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from koclip.commands import check_file, check_model_argument, check_query, int_at_least, terminal_safe
from koclip.errors import InvalidInputError

DETAILS = """\
The query is encoded with the gallery's model (from its manifest) unless --model names
another; a gallery can only be searched with the model that made it.

A query longer than the model reads is cut to its beginning, with a note. With --image,
the gallery is ranked by image-image similarity to that image instead.

Each result gives its rank, its row in the gallery (index) and its cosine similarity to the
query (score), then the row's metadata (source, caption, ...). A metadata field named rank,
index or score is shown as metadata_rank, metadata_index or metadata_score; in --json, a
metadata number that is not finite (NaN, Infinity) is null.

examples:
  python -m koclip search "빨간 원" --gallery embeddings/scenes
  python -m koclip search "바다 위의 배" --gallery embeddings/photos --top-k 5 --json
  python -m koclip search --image cat.jpg --gallery embeddings/photos"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m koclip search`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = DETAILS
    parser.add_argument("query", metavar="QUERY", nargs="?", help="what to look for, in Korean")
    parser.add_argument("--image", type=Path, metavar="FILE", help="search with this image instead of a text")
    parser.add_argument("--gallery", type=Path, required=True, metavar="DIR", help="a folder made by `index`")
    parser.add_argument("--top-k", type=int_at_least(1), default=10, metavar="K", help="results to show (default: 10)")
    parser.add_argument("--model", help="model to encode the query with (default: the gallery's)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


RESULT_FIELDS = ("rank", "index", "score")


def result(rank: int, index: int, score: float, metadata: dict) -> dict:
    """One result: the search's own fields first, then the metadata, whose fields cannot replace them."""
    renamed = {f"metadata_{key}" if key in RESULT_FIELDS else key: value for key, value in metadata.items()}
    return {"rank": rank, "index": index, "score": round(score, 6), **renamed}


def finite(value):
    """`value` with each float that is not finite (a gallery's JSON may hold NaN or Infinity) as
    None: strict JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value


def printable(text: str) -> str:
    """`text` with each lone surrogate as its \\uXXXX escape, which is valid inside a JSON string: a
    file name that is not UTF-8 or a gallery's JSON can hold one, and no output encoding can write it."""
    return re.sub("[\ud800-\udfff]", lambda match: f"\\u{ord(match.group()):04x}", text)


def check_words(model, query: str) -> None:
    """Refuse a query the model cannot read a word of (its ranking would mean nothing); warn of
    the words it cannot read in a query it partly reads."""
    from koclip.api import word_list

    verdict = model.verdict(query)
    listed = word_list([word[:30] for word in verdict.unknown])
    hint = f"; {model.name} knows {model.vocabulary}" if model.vocabulary else ""
    if not verdict.answerable:
        raise InvalidInputError(
            f"{model.name} knows none of the words in the query ({listed}), so it has no answer{hint}"
        )
    if verdict.unknown:
        print(
            terminal_safe(f"warning: {model.name} does not know {listed}; that part of the query is ignored{hint}"),
            file=sys.stderr,
        )


def main(args: argparse.Namespace) -> int:
    """Runs `python -m koclip search`; returns the exit status."""
    from koclip.search import gallery

    if (args.query is None) == (args.image is None):
        raise InvalidInputError("give either a QUERY text or --image FILE, not both or neither")
    image = None
    if args.image is not None:
        from koclip.images import open_image

        check_file(args.image, "--image")
        image = open_image(args.image)
    else:
        check_query(args.query)
    collection = gallery.Gallery.open(args.gallery)
    model_name = args.model or gallery.model_reference(collection.manifest)
    check_model_argument(model_name)

    from koclip.api import load

    model = load(model_name)
    if image is not None:
        hits = gallery.search_image(model, collection, image, args.top_k)
    else:
        if model.is_truncated(args.query):
            print(
                f"note: the query is longer than the {model.max_text_length} tokens {model.name} reads; "
                "only its beginning is used",
                file=sys.stderr,
            )
        check_words(model, args.query)
        hits = gallery.search(model, collection, args.query, args.top_k)
    results = [result(rank, hit.index, hit.score, collection.item(hit.index)) for rank, hit in enumerate(hits, 1)]
    if args.json:
        # Strict JSON: a score that is not a number was refused by the search already.
        out = {
            "query": args.query or str(args.image),
            "gallery": str(args.gallery),
            "model": model.name,
            "results": finite(results),
        }
        print(printable(json.dumps(out, ensure_ascii=False, indent=2, allow_nan=False, default=str)))
        return 0
    print(f"{'rank':>4}  {'score':>7}  source")
    for row in results:
        caption = f"  {row['caption']}" if row.get("caption") else ""
        print(printable(terminal_safe(f"{row['rank']:>4}  {row['score']:7.4f}  {row.get('source', '')}{caption}")))
    return 0
