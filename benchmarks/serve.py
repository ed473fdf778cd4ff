"""The search service's HTTP cost: text queries to `/knn-service` and `/v1/search/text` against
`gallery.search` called in this process, at 1, 8 and 32 concurrent clients.

The gallery has 100,000 rows shaped like a real one: koclip-mini's embeddings of the shipped 2,000
scenes, each repeated with small noise (clusters, as real CLIP embeddings are), with the shipped
thumbnails and captions, and the approximate index indexing would choose for it. The service runs
as `python -m koclip serve` does (uvicorn, its own process); clients keep one connection each.
The in-process floor runs the same queries on as many threads, through the same model and gallery;
GET /health (no model, no gallery) is the most requests per second HTTP alone allows on this machine
with these clients.

    python benchmarks/serve.py [--rows 100000] [--seconds 10] [--workdir /tmp/koclip-serve-bench]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import koclip  # noqa: E402
from koclip.search import gallery, jobs, tuning  # noqa: E402

SHIPPED = ROOT / "embeddings" / "koclip-mini-scenes"
QUERIES = [
    "빨간 원",
    "파란 삼각형",
    "노란 별",
    "큰 초록 사각형",
    "왼쪽에 보라 하트가 있다",
    "작은 주황 원",
    "흰 사각형과 검은 별",
]
CLIENTS = (1, 8, 32)
NOISE = 0.15  # per-row spread around its scene's embedding: rows of one scene stay each other's neighbours


def build(out: Path, rows: int, model) -> Path:
    """The benchmark gallery in `out`, made once and kept."""
    if (out / gallery.MANIFEST).is_file() and gallery.read_manifest(out)["count"] == rows:
        return out
    shutil.rmtree(out, ignore_errors=True)
    shipped = gallery.Gallery.open(SHIPPED)
    base = np.asarray(shipped.vectors, np.float32)
    rng = np.random.default_rng(0)
    which = np.arange(rows) % len(base)
    vectors = base[which] + rng.standard_normal((rows, base.shape[1])).astype(np.float32) * NOISE / np.sqrt(64)
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    (out / gallery.THUMBS).mkdir(parents=True)
    for i, row in enumerate(shipped.metadata):
        shutil.copyfile(SHIPPED / row["thumbnail"], out / gallery.THUMBS / f"{i}.jpg")
    metadata = [
        {
            "source": i,
            "caption": shipped.metadata[b]["caption"],
            "width": 64,
            "height": 64,
            "thumbnail": f"thumbs/{b}.jpg",
        }
        for i, b in enumerate(which)
    ]
    np.save(out / gallery.VECTORS, vectors)
    (out / gallery.METADATA).write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in metadata))
    captions = [row["caption"] for row in metadata]
    chosen, _how = jobs.search_index(
        out,
        np.load(out / gallery.VECTORS, mmap_mode="r"),
        lambda held: model.encode_text([captions[i] for i in held]),
        gallery.ANN_THRESHOLD,
        tuning.DEFAULT_BUDGET,
        tuning.TARGET_RECALL,
        lambda line: print("  " + line, file=sys.stderr),
    )
    manifest = gallery.new_manifest(
        model, rows, "float32", chosen["kind"] if chosen else gallery.EXACT, index_tuning=chosen
    )
    (out / gallery.MANIFEST).write_text(json.dumps(manifest, indent=2))
    return out


def run_clients(clients: int, seconds: float, ask) -> tuple[float, float, float]:
    """Requests per second, p50 and p99 latency (ms) of `clients` threads calling `ask(session, query)`."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(number: int) -> None:
        session = requests.Session()
        mine, done = [], 0
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            ask(session, QUERIES[(number + done) % len(QUERIES)])
            mine.append(time.perf_counter() - began)
            done += 1
        with lock:
            latencies.extend(mine)

    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return len(latencies) / elapsed, statistics.median(ordered) * 1e3, p99 * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/koclip-serve-bench"))
    parser.add_argument("--num-images", type=int, default=10, help="results per query")
    args = parser.parse_args()

    model = koclip.load("koclip-mini")
    print(f"building a {args.rows:,}-row gallery in {args.workdir} (once)…", file=sys.stderr)
    folder = build(args.workdir / "gallery", args.rows, model)
    opened = gallery.Gallery.open(folder)
    print(f"gallery: {len(opened):,} rows, index {opened.manifest['index']}", file=sys.stderr)
    k = args.num_images
    for query in QUERIES:  # compile every query length before timing
        gallery.search(model, opened, query, k)

    port = 18000 + int(time.time()) % 1000
    server = subprocess.Popen(
        [sys.executable, "-m", "koclip", "serve", "--gallery", f"bench={folder}", "--port", str(port), "--queue", "64"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        body = {"modality": "image", "num_images": k, "indice_name": "bench", "deduplicate": False}

        def knn(session, query):
            answer = session.post(f"{url}/knn-service", data=json.dumps({**body, "text": query}), timeout=60)
            assert answer.status_code == 200, answer.text[:200]

        def own(session, query):
            answer = session.post(f"{url}/v1/search/text", json={"text": query, "k": k, "gallery": "bench"}, timeout=60)
            assert answer.status_code == 200, answer.text[:200]

        def health(session, _query):
            assert session.get(f"{url}/health", timeout=60).status_code == 200

        def local(_session, query):
            gallery.search(model, opened, query, k)

        for query in QUERIES:  # the server's first queries compile too
            knn(requests, query)
        print(f"\ntext queries, top {k}, {args.seconds:.0f} s each; HTTP overhead = in-process rps / HTTP rps")
        print(f"{'clients':>7} | {'in-process rps':>14} {'p50 ms':>7} {'p99 ms':>7} | "
              f"{'/knn-service rps':>16} {'p50':>6} {'p99':>6} {'ratio':>6} | "
              f"{'/v1/search/text rps':>19} {'p50':>6} {'p99':>6} {'ratio':>6} | {'GET /health rps':>15}")  # fmt: skip
        for clients in CLIENTS:
            floor = run_clients(clients, args.seconds, local)
            back = run_clients(clients, args.seconds, knn)
            mine = run_clients(clients, args.seconds, own)
            bare = run_clients(clients, args.seconds, health)
            print(
                f"{clients:>7} | {floor[0]:>14.0f} {floor[1]:>7.1f} {floor[2]:>7.1f} | "
                f"{back[0]:>16.0f} {back[1]:>6.1f} {back[2]:>6.1f} {floor[0] / back[0]:>6.2f} | "
                f"{mine[0]:>19.0f} {mine[1]:>6.1f} {mine[2]:>6.1f} {floor[0] / mine[0]:>6.2f} | {bare[0]:>15.0f}"
            )
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
