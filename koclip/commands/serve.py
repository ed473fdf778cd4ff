"""`python -m koclip serve`: galleries searched over HTTP, in clip-retrieval's protocol and KoCLIP's own."""

from __future__ import annotations

import argparse
import logging
import sys

from koclip.commands import check_folder, check_model_argument, float_above, int_at_least
from koclip.errors import InvalidInputError

DETAILS = """\
The model loads once, and its first text and image shapes compile, before the port opens; each
gallery is opened and checked whole first too, and one made with another model is refused.

Routes (all answer JSON; errors are {"error", "status"} with their HTTP status):
  GET  /health                          ready: the model and the galleries
  GET  /indices-list                    clip-retrieval: the gallery names
  POST /knn-service                     clip-retrieval: search by text, image (base64), image_url
                                        or embedding_input, as ClipClient and clip-retrieval's
                                        front end send it
  POST /metadata                        clip-retrieval: rows by id
  GET  /v1/galleries                    the galleries, with size and index
  POST /v1/search/text, /v1/search/image  KoCLIP's own API, with what the model made of the query
  GET  /v1/galleries/G/rows/R/similar   more like row R
  GET  /docs, /openapi.json             the schema of every route

Limits: --workers requests are answered at once and --queue more wait; past that a request gets
503 at once. Bodies over one image's budget get 413, texts over 1,000 characters 413, more than
1,000 results 400; URLs are fetched only from public addresses, as in the app.

examples:
  python -m koclip serve --gallery embeddings/koclip-mini-scenes --port 1234
  python -m koclip serve --gallery photos=embeddings/photos --model koclip-base --host 0.0.0.0
  curl -s localhost:1234/knn-service -d '{"text": "빨간 원", "modality": "image", "num_images": 3,
       "indice_name": "koclip-mini-scenes"}'"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m koclip serve`."""
    from koclip.serve.limits import Limits

    defaults = Limits()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = DETAILS
    parser.add_argument(
        "--gallery",
        action="append",
        required=True,
        metavar="[NAME=]DIR",
        help="a gallery folder made by `index`, named by its folder unless NAME= is given; repeat for more",
    )
    parser.add_argument("--model", help="model to encode queries with (default: the first gallery's)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int_at_least(1, 65535), default=1234, help="port (default: %(default)s)")
    parser.add_argument(
        "--workers",
        type=int_at_least(1, 64),
        default=defaults.workers,
        help="requests answered at once (default: %(default)s)",
    )
    parser.add_argument(
        "--queue",
        type=int_at_least(0, 1024),
        default=defaults.queue,
        help="requests that may wait for a worker (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float_above(0, 600),
        default=defaults.request_seconds,
        metavar="SECONDS",
        help="the most one request may take (default: %(default)s)",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="a web origin whose pages may call the service; repeat for more (default: any)",
    )


def main(args: argparse.Namespace) -> int:
    """Runs `python -m koclip serve`; returns the exit status."""
    from koclip.serve.catalog import gallery_name

    named = [gallery_name(text) for text in args.gallery]
    folders = dict(named)
    if len(folders) < len(named):
        twice = sorted({name for name, _ in named if [n for n, _ in named].count(name) > 1})
        raise InvalidInputError(f"two galleries are named {', '.join(twice)}; name them apart with --gallery NAME=DIR")
    for path in folders.values():
        check_folder(path, "--gallery")
    if args.model is not None:
        check_model_argument(args.model)

    import uvicorn

    from koclip.serve import standalone

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("koclip.serve").setLevel(logging.INFO)
    app, service = standalone.build(
        folders, args.model, workers=args.workers, queue=args.queue, request_seconds=args.timeout, cors=args.cors_origin
    )
    address = f"http://{args.host}:{args.port}"
    print(
        f"serving {len(folders)} galleries ({', '.join(folders)}) with {service.model.name} at {address}\n"
        f"  clip-retrieval: ClipClient(url='{address}/knn-service', indice_name='{next(iter(folders))}')\n"
        f"  schema: {address}/docs",
        file=sys.stderr,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=False,  # the service logs its own lines, with the time each took
        limit_concurrency=service.limits.capacity + 16,  # room for /health beside a full queue
        timeout_keep_alive=5,
        log_level="info",
    )
    return 0
