"""The search service over real HTTP on loopback: clip-retrieval's own ClipClient gets the rows and
scores gallery.search gives; KoCLIP's JSON API; hostile requests get clear JSON errors; a full
service answers 503 at once; 32 clients at once all get right answers."""

from __future__ import annotations

import base64
import io
import json
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import peers
import pytest
import requests
import servers
from PIL import Image

import koclip
from koclip.data import scenes
from koclip.search import gallery
from koclip.serve import clip_back
from koclip.serve.app import create_app
from koclip.serve.catalog import Folders, gallery_name
from koclip.serve.limits import Limits
from koclip.serve.service import SearchService

SCENES = Path(__file__).resolve().parent.parent / "embeddings" / "koclip-mini-scenes"
NAME = SCENES.name
QUERIES = ("빨간 원", "파란 삼각형", "노란 별", "큰 초록 사각형", "왼쪽에 보라 하트가 있다", "작은 주황 원과 흰 사각형")


@pytest.fixture(scope="module")
def model():
    return koclip.load("koclip-mini")


@pytest.fixture(scope="module")
def scenes_gallery():
    return gallery.Gallery.open(SCENES)


def service_for(model, limits: Limits | None = None, folders=None) -> SearchService:
    catalog = Folders(folders or {NAME: SCENES}, check=lambda g: gallery.check_made_with(model, g))
    return SearchService(model, catalog, limits or Limits(workers=2, queue=32))


@pytest.fixture(scope="module")
def url(model):
    with servers.asgi_app(create_app(service_for(model))) as base:
        yield base


def client(url, **options):
    ClipClient = peers.clip_client()
    return ClipClient(url=f"{url}/knn-service", indice_name=NAME, deduplicate=False, **options)


def rows(found):
    return [row["id"] for row in found], np.array([row["similarity"] for row in found])


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def assert_error(answer: requests.Response, status: int, *words: str) -> dict:
    assert answer.status_code == status, answer.text[:300]
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body["status"] == status and isinstance(body["error"], str)
    for word in words:
        assert word in body["error"], body["error"]
    return body


# ---------------------------------------------------------------- clip-retrieval's client


def test_clip_client_by_text_gets_gallery_search_rows_and_scores(url, model, scenes_gallery):
    for query in QUERIES:
        found = client(url, num_images=10).query(text=query)
        ids, scores = rows(found)
        expected = gallery.search(model, scenes_gallery, query, 10)
        assert ids == [hit.index for hit in expected]
        np.testing.assert_allclose(scores, [hit.score for hit in expected], atol=1e-6)
        assert all(row["caption"] == scenes_gallery.metadata[row["id"]]["caption"] for row in found)
        first = base64.b64decode(found[0]["image"])
        assert first == scenes_gallery.thumbnail(found[0]["id"])  # the thumbnail, as clip-back's base64 image


def test_clip_client_by_image_file_and_by_embedding(url, model, scenes_gallery, tmp_path):
    scene = scenes.scene(7, 5)
    picture = tmp_path / "scene.png"
    scene.image.save(picture)
    ids, scores = rows(client(url, num_images=8).query(image=str(picture)))  # ClipClient base64-encodes the file
    expected = gallery.search_image(model, scenes_gallery, scene.image, 8)
    assert ids == [hit.index for hit in expected]
    np.testing.assert_allclose(scores, [hit.score for hit in expected], atol=1e-5)

    vector = model.encode_text(["파란 삼각형"])[0]
    ids, scores = rows(client(url, num_images=5).query(embedding_input=[float(v) for v in vector]))
    expected = scenes_gallery.search_vectors(vector, 5)
    assert ids == [hit.index for hit in expected]
    np.testing.assert_allclose(scores, [hit.score for hit in expected], atol=1e-6)


def test_deduplicate_drops_rows_close_to_a_better_one(url, scenes_gallery):
    everything = client(url, num_images=60).query(text="빨간 원")
    ClipClient = peers.clip_client()
    kept = ClipClient(url=f"{url}/knn-service", indice_name=NAME, num_images=60).query(text="빨간 원")  # default: on
    ids = [row["id"] for row in everything]
    kept_ids = [row["id"] for row in kept]
    assert kept_ids == [i for i in ids if i in kept_ids]  # the order of the search, some rows left out
    vectors = np.asarray(scenes_gallery.vectors[ids], np.float32)
    dropped = clip_back.duplicates(vectors)
    assert kept_ids == [i for position, i in enumerate(ids) if position not in dropped]
    assert dropped, "scenes of the same two shapes should give near-duplicates"
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -1)
    for position in dropped:  # each one dropped is that close to another result (a chain leads to a kept one)
        assert similarity[position].max() >= clip_back.DEDUP_THRESHOLD
    kept_positions = [ids.index(i) for i in kept_ids]
    assert similarity[np.ix_(kept_positions, kept_positions)].max() < clip_back.DEDUP_THRESHOLD


def test_num_images_carry_metadata_and_num_result_ids_rows(url):
    body = {"text": "노란 별", "modality": "image", "num_images": 3, "num_result_ids": 7, "indice_name": NAME}
    found = requests.post(f"{url}/knn-service", data=json.dumps(body), timeout=30).json()
    assert len(found) == 7
    assert all("caption" in row and "image" in row for row in found[:3])
    assert all(set(row) == {"id", "similarity"} for row in found[3:])


def test_indices_list_and_metadata(url, scenes_gallery):
    assert requests.get(f"{url}/indices-list", timeout=10).json() == [NAME]
    answer = requests.post(f"{url}/metadata", json={"ids": [3, 0, 1999], "indice_name": NAME}, timeout=10).json()
    assert [item["id"] for item in answer] == [3, 0, 1999]
    for item in answer:
        assert item["metadata"]["caption"] == scenes_gallery.metadata[item["id"]]["caption"]
        assert base64.b64decode(item["metadata"]["image"]) == scenes_gallery.thumbnail(item["id"])


def test_ignored_options_are_named_in_a_header(url):
    answer = requests.post(
        f"{url}/knn-service",
        json={"text": "빨간 원", "modality": "image", "num_images": 2, "indice_name": NAME, "use_safety_model": True,
              "aesthetic_score": 9, "aesthetic_weight": 0.5},
        timeout=30,
    )  # fmt: skip
    assert answer.status_code == 200
    assert answer.headers["x-koclip-ignored"] == "use_safety_model,aesthetic_score,aesthetic_weight"


def test_text_the_model_cannot_read_gets_no_rows(url):
    answer = requests.post(
        f"{url}/knn-service", json={"text": "고양이", "modality": "image", "num_images": 5}, timeout=30
    )
    assert_error(answer, 422, "koclip-mini knows none of the words", "shapes and colours")
    own = requests.post(f"{url}/v1/search/text", json={"text": "고양이"}, timeout=30).json()
    assert own["results"] == []
    assert own["verdict"] == {"answerable": False, "unknown_words": ["고양이"], "truncated": False}
    partly = requests.post(f"{url}/v1/search/text", json={"text": "빨간 고양이", "k": 3}, timeout=30).json()
    assert len(partly["results"]) == 3 and partly["verdict"]["unknown_words"] == ["고양이"]
    assert "does not know" in partly["note"]


# ---------------------------------------------------------------- KoCLIP's own API


def test_json_api_search_similar_and_thumbnail(url, model, scenes_gallery):
    answer = requests.post(f"{url}/v1/search/text", json={"text": "큰 초록 사각형", "k": 4}, timeout=30).json()
    expected = gallery.search(model, scenes_gallery, "큰 초록 사각형", 4)
    assert [r["row"] for r in answer["results"]] == [hit.index for hit in expected]
    assert answer["model"] == "koclip-mini" and answer["gallery"] == NAME
    assert answer["verdict"] == {"answerable": True, "unknown_words": [], "truncated": False}

    scene = scenes.scene(7, 9).image
    encoded = base64.b64encode(png_bytes(scene)).decode()
    by_image = requests.post(f"{url}/v1/search/image", json={"image": f"data:image/png;base64,{encoded}"}, timeout=30)
    assert [r["row"] for r in by_image.json()["results"]] == [
        hit.index for hit in gallery.search_image(model, scenes_gallery, scene, 10)
    ]

    similar = requests.get(f"{url}/v1/galleries/{NAME}/rows/42/similar?k=5", timeout=30).json()
    assert [r["row"] for r in similar["results"]] == [hit.index for hit in scenes_gallery.similar(42, 5)]

    thumbnail = requests.get(answer["results"][0]["thumbnail"], timeout=10)
    assert thumbnail.headers["content-type"] == "image/jpeg"
    assert thumbnail.content == scenes_gallery.thumbnail(answer["results"][0]["row"])

    listed = requests.get(f"{url}/v1/galleries", timeout=10).json()
    assert listed == [{"name": NAME, "model": "koclip-mini", "count": 2000, "index": "exact", "error": None}]


def test_schema_health_cors_and_access_log(url, caplog):
    schema = requests.get(f"{url}/openapi.json", timeout=10).json()
    for path in ("/knn-service", "/indices-list", "/metadata", "/v1/search/text", "/v1/search/image"):
        assert path in schema["paths"]
    assert "verdict" in schema["components"]["schemas"]["Answer"]["properties"]
    assert requests.get(f"{url}/docs", timeout=10).status_code == 200
    assert requests.get(f"{url}/health", timeout=10).json() == {
        "status": "ok",
        "model": "koclip-mini",
        "galleries": [NAME],
        "requests": 0,
        "capacity": 34,
    }
    preflight = requests.options(
        f"{url}/knn-service",
        headers={"Origin": "https://rom1504.github.io", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "*"
    with caplog.at_level("INFO", logger="koclip.serve"):
        bad = requests.post(f"{url}/knn-service", data="{", headers={"Origin": "https://x.example"}, timeout=10)
    assert bad.headers["access-control-allow-origin"] == "*"  # errors carry CORS too, so pages can read them
    assert any('"POST /knn-service" 400' in line for line in caplog.messages)


# ---------------------------------------------------------------- hostile requests


def knn(url, **body):
    return requests.post(f"{url}/knn-service", json={"modality": "image", "num_images": 3, **body}, timeout=30)


def bomb() -> bytes:
    """A PNG whose header announces 100,000 x 100,000 pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(b"\0" * 100))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


def test_hostile_requests_get_clear_json_errors(url):
    limit = Limits().body_bytes
    assert_error(requests.post(f"{url}/knn-service", data=b"x" * (limit + 1), timeout=30), 413, "request body is over")

    def streamed():  # no Content-Length: refused as it streams in
        for _ in range(limit // (1 << 20) + 2):
            yield b" " * (1 << 20)

    assert_error(requests.post(f"{url}/knn-service", data=streamed(), timeout=30), 413, "request body is over")
    assert_error(knn(url, text="빨" * 10_000), 413, "10,000 characters", "at most 1,000")
    assert_error(knn(url, image="not base64!!"), 400, "not valid base64")
    assert_error(knn(url, image=base64.b64encode(bomb()).decode()), 400, "too large", "megapixels")
    assert_error(knn(url, image=base64.b64encode(b"GIF89a nothing").decode()), 400, "not")
    for private in ("http://127.0.0.1:1/cat.jpg", "http://169.254.169.254/latest/meta-data", "http://[::1]/x.png"):
        assert_error(knn(url, image_url=private), 400, "not a public internet address")
    assert_error(knn(url, image_url="file:///etc/passwd"), 400, "only http:// and https://")
    assert_error(knn(url, text="빨간 원", indice_name="../../etc"), 404, "no gallery named", NAME)
    assert_error(knn(url, text="빨간 원", num_images=10**9), 400, "num_images is 1,000,000,000", "at most 1,000")
    assert_error(knn(url, text="빨간 원", num_images="many"), 400, "whole number")
    assert_error(knn(url, text="빨간 원", modality="text"), 400, "image embeddings only")
    assert_error(knn(url), 400, "send one of text")
    assert_error(knn(url, embedding_input=[1.0] * 3), 400, "64")
    assert_error(knn(url, embedding_input=[0.0] * 64), 400, "not all zero")
    assert_error(requests.post(f"{url}/knn-service", data="[1, 2", timeout=10), 400, "not JSON")
    assert_error(requests.post(f"{url}/knn-service", data="[1, 2]", timeout=10), 400, "JSON object")
    nan = '{"modality": "image", "num_images": 2, "embedding_input": [NaN' + ", 0" * 63 + "]}"
    assert_error(requests.post(f"{url}/knn-service", data=nan, timeout=10), 400, "finite")
    assert_error(requests.post(f"{url}/metadata", json={"ids": [0, 5000]}, timeout=10), 400, "row 5000")
    assert_error(requests.post(f"{url}/metadata", json={"ids": list(range(2000))}, timeout=10), 400, "at most 1,000")
    assert_error(requests.post(f"{url}/v1/search/text", json={"k": 3}, timeout=10), 422, "text")
    assert_error(requests.get(f"{url}/v1/galleries/{NAME}/rows/99999/thumbnail", timeout=10), 400, "not in gallery")
    assert_error(requests.get(f"{url}/v1/galleries/..%2F..%2Fetc/rows/0/thumbnail", timeout=10), 404)
    assert_error(requests.get(f"{url}/no/such/route", timeout=10), 404)


def test_an_image_url_is_fetched_within_the_apps_budget(model, scenes_gallery):
    """A URL that answers with an image is searched (loopback allowed here only, for the test's server)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    scene = scenes.scene(7, 3).image
    body = png_bytes(scene)

    class Images(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    images = ThreadingHTTPServer(("127.0.0.1", 0), Images)
    threading.Thread(target=images.serve_forever, daemon=True).start()
    try:
        app = create_app(service_for(model, Limits(workers=1, queue=4, allow_loopback_urls=True)))
        with servers.asgi_app(app) as base:
            found = knn(base, image_url=f"http://127.0.0.1:{images.server_port}/scene.png", num_images=5).json()
    finally:
        images.shutdown()
    assert [row["id"] for row in found] == [hit.index for hit in gallery.search_image(model, scenes_gallery, scene, 5)]


# ---------------------------------------------------------------- load


class SlowCatalog:
    """The scenes gallery, whose every opening waits for `release`: requests that hold a worker."""

    def __init__(self, model):
        self.inner = Folders({NAME: SCENES})
        self.release = threading.Event()

    def names(self):
        return self.inner.names()

    def get(self, name):
        self.release.wait(20)
        return self.inner.get(name)


def test_a_full_service_answers_503_at_once_and_a_slow_request_504(model):
    catalog = SlowCatalog(model)
    limits = Limits(workers=1, queue=1, queue_seconds=1.0, request_seconds=1.5)
    with servers.asgi_app(create_app(SearchService(model, catalog, limits))) as base:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(knn, base, text="빨간 원")  # holds the one worker
            time.sleep(0.3)
            second = pool.submit(knn, base, text="빨간 원")  # waits in the queue
            time.sleep(0.3)
            began = time.monotonic()
            third = knn(base, text="빨간 원")
            assert time.monotonic() - began < 0.5, "a full service must answer at once"
            body = assert_error(third, 503, "busy")
            assert third.headers["retry-after"] == "1" and body
            assert requests.get(f"{base}/health", timeout=5).json()["requests"] == 2  # /health answers when full
            assert_error(second.result(), 503, "waited 1 s for a worker")
            assert_error(first.result(), 504, "longer than 2 s")
        catalog.release.set()
        time.sleep(0.2)
        assert knn(base, text="빨간 원").status_code == 200  # the stuck work ended; the service recovered
        assert requests.get(f"{base}/health", timeout=5).status_code == 200


def test_32_concurrent_clients_all_get_right_answers_with_bounded_memory(url, model, scenes_gallery):
    expected = {q: [hit.index for hit in gallery.search(model, scenes_gallery, q, 10)] for q in QUERIES}
    ClipClient = peers.clip_client()
    deadline = time.monotonic() + 8
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def run(number: int) -> int:
        done = 0
        clip = ClipClient(url=f"{url}/knn-service", indice_name=NAME, deduplicate=False, num_images=10)
        while time.monotonic() < deadline:
            query = QUERIES[(number + done) % len(QUERIES)]
            found = clip.query(text=query)
            assert isinstance(found, list), found
            assert [row["id"] for row in found] == expected[query]
            done += 1
        return done

    with ThreadPoolExecutor(32) as pool:
        answered = list(pool.map(run, range(32)))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert all(count >= 1 for count in answered), answered
    assert grown_mib < 300, f"peak memory grew {grown_mib:.0f} MiB under 32 clients"


# ---------------------------------------------------------------- the command


def test_serve_command_refuses_bad_galleries_before_loading(tmp_path, capsys):
    from koclip import cli

    assert cli.main(["serve", "--gallery", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["serve", "--gallery", f"a={SCENES}", "--gallery", f"a={SCENES}"]) == 2
    assert "two galleries are named a" in capsys.readouterr().err
    assert cli.main(["serve", "--gallery", f"bad name={SCENES}"]) == 2
    assert "cannot name a gallery" in capsys.readouterr().err
    assert gallery_name(f"x={SCENES}") == ("x", SCENES) and gallery_name(str(SCENES)) == (NAME, SCENES)


def test_a_gallery_of_another_model_is_refused_before_the_port_opens(space, capsys):
    from koclip import cli

    assert cli.main(["serve", "--gallery", str(SCENES), "--model", "koclip-base"]) == 2
    assert "was made with model koclip-mini, not koclip-base" in capsys.readouterr().err


def test_serve_command_starts_and_answers(tmp_path):
    import subprocess
    import sys

    port = servers.free_port()
    command = [sys.executable, "-m", "koclip", "serve", "--gallery", str(SCENES), "--port", str(port)]
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        servers.wait_healthy(f"http://127.0.0.1:{port}/health", lambda: process.poll() is None, seconds=90)
        found = client(f"http://127.0.0.1:{port}", num_images=3).query(text="빨간 원")
        assert len(found) == 3
    finally:
        process.terminate()
        process.wait(timeout=15)
    text = log.read_text()
    assert f"ClipClient(url='http://127.0.0.1:{port}/knn-service', indice_name='{NAME}')" in text
    assert '"POST /knn-service" 200' in text


# ---------------------------------------------------------------- beside the app


@pytest.mark.slow
def test_the_route_beside_the_app_answers_clip_client_as_gallery_search(model, scenes_gallery, tmp_path):
    with servers.streamlit_app({"KOCLIP_API": "1"}, tmp_path / "app.log") as app:
        servers.wait_healthy(f"{app.url}/api/health", seconds=120)  # waits for the pages' model load
        assert requests.get(f"{app.url}/api/indices-list", timeout=10).json() == [NAME]
        ids, scores = rows(client(f"{app.url}/api", num_images=10).query(text="노란 별"))
        expected = gallery.search(model, scenes_gallery, "노란 별", 10)
        assert ids == [hit.index for hit in expected]
        np.testing.assert_allclose(scores, [hit.score for hit in expected], atol=1e-6)
        answer = requests.post(f"{app.url}/api/v1/search/text", json={"text": "노란 별", "k": 2}, timeout=30).json()
        assert requests.get(answer["results"][0]["thumbnail"], timeout=10).content == scenes_gallery.thumbnail(ids[0])
        assert_error(knn(f"{app.url}/api", text="빨간 원", num_images=10**9), 400, "at most 1,000")
        assert requests.get(app.url, timeout=10).status_code == 200  # the pages are still there
    assert '"POST /api/knn-service" 200' in (tmp_path / "app.log").read_text()  # its access lines
    with servers.streamlit_app({}, tmp_path / "off.log") as app:  # without KOCLIP_API: no service
        answer = requests.post(f"{app.url}/api/knn-service", json={"text": "빨간 원"}, timeout=10)
        assert answer.status_code != 200 or not answer.text.startswith("[")


@pytest.mark.slow
def test_on_a_space_the_route_serves_koclip_base_galleries(space, own_embeddings, tmp_path):
    """The Space rehearsal: koclip-base from the Hub cache is the default, and its gallery is served."""
    import subprocess
    import sys

    out = own_embeddings / "koclip-base-samples"
    subprocess.run(
        [sys.executable, "-m", "koclip", "index", "samples", "--model", "koclip-base", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    base = koclip.load("koclip-base")
    samples = gallery.Gallery.open(out)
    with servers.streamlit_app({"KOCLIP_API": "1"}, tmp_path / "space.log") as app:
        servers.wait_healthy(f"{app.url}/api/health", seconds=180)
        health = requests.get(f"{app.url}/api/health", timeout=10).json()
        assert health["model"] == "koclip-base" and health["galleries"] == ["koclip-base-samples"]
        ClipClient = peers.clip_client()
        clip = ClipClient(url=f"{app.url}/api/knn-service", indice_name="koclip-base-samples", num_images=5,
                          deduplicate=False)  # fmt: skip
        ids, scores = rows(clip.query(text="고양이 한 마리"))
        expected = gallery.search(base, samples, "고양이 한 마리", 5)
        assert ids == [hit.index for hit in expected]
        np.testing.assert_allclose(scores, [hit.score for hit in expected], atol=1e-5)
