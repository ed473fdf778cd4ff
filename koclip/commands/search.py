"""`python -m koclip search`: the gallery images that best match a text query, or an image."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from koclip.commands import check_file, check_model, check_query, int_at_least, terminal_safe
from koclip.errors import InvalidInputError

DETAILS = """\
The query is encoded with the gallery's model (from its manifest) unless --model names
another; a gallery can only be searched with the model that made it.

With --image, the gallery is ranked by image-image similarity to that image instead.

examples:
  python -m koclip search "빨간 원" --gallery embeddings/scenes
  python -m koclip search "바다 위의 배" --gallery embeddings/photos --top-k 5 --json
  python -m koclip search --image cat.jpg --gallery embeddings/photos"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = DETAILS
    parser.add_argument("query", metavar="QUERY", nargs="?", help="what to look for, in Korean")
    parser.add_argument("--image", type=Path, metavar="FILE", help="search with this image instead of a text")
    parser.add_argument("--gallery", type=Path, required=True, metavar="DIR", help="a folder made by `index`")
    parser.add_argument("--top-k", type=int_at_least(1), default=10, metavar="K", help="results to show (default: 10)")
    parser.add_argument("--model", help="model to encode the query with (default: the gallery's)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def check_words(model, query: str) -> None:
    """Refuse a query the model cannot read a word of (its ranking would mean nothing); warn of
    the words it cannot read in a query it partly reads."""
    from koclip.api import word_list

    unknown = model.unknown_words(query)
    listed = word_list([word[:30] for word in unknown])
    hint = f"; {model.name} knows {model.vocabulary}" if model.vocabulary else ""
    if unknown and not model.can_read(query):
        raise InvalidInputError(
            f"{model.name} knows none of the words in the query ({listed}), so it has no answer{hint}"
        )
    if unknown:
        print(terminal_safe(f"warning: {model.name} does not know {listed}; that part of the query is ignored{hint}"),
              file=sys.stderr)


def main(args: argparse.Namespace) -> int:
    from koclip import gallery

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
    check_model(model_name)

    from koclip.api import load

    model = load(model_name)
    if image is not None:
        hits = gallery.search_image(model, collection, image, args.top_k)
    else:
        if model.is_truncated(args.query):
            print(f"note: the query is longer than the {model.max_text_length} tokens {model.name} reads; "
                  "only its beginning is used", file=sys.stderr)
        check_words(model, args.query)
        hits = gallery.search(model, collection, args.query, args.top_k)
    results = [
        {"rank": rank, "index": hit.index, "score": round(hit.score, 6), **collection.item(hit.index)}
        for rank, hit in enumerate(hits, 1)
    ]
    if args.json:
        for result in results:
            result["thumbnail"] = str(result["thumbnail"])
        # Strict JSON: a score that is not a number was refused by the search already.
        print(json.dumps({"query": args.query or str(args.image), "gallery": str(args.gallery), "model": model.name,
                          "results": results}, ensure_ascii=False, indent=2, allow_nan=False))
        return 0
    print(f"{'rank':>4}  {'score':>7}  source")
    for result in results:
        caption = f"  {result['caption']}" if result.get("caption") else ""
        print(terminal_safe(f"{result['rank']:>4}  {result['score']:7.4f}  {result['source']}{caption}"))
    return 0
