"""`model.save(..., safe_serialization=True)` and `model.push_to_hub`: safetensors that load back
exactly, uploaded by huggingface_hub's own client to a local HTTP server that answers as the Hub does."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from flax.traverse_util import flatten_dict

import koclip


def test_safetensors_load_back_exactly(tmp_path):
    model = koclip.load("koclip-mini", backend="flax")
    folder = model.save(tmp_path / "safe", safe_serialization=True)
    assert (folder / "model.safetensors").is_file() and not (folder / "flax_model.msgpack").exists()
    back = koclip.load(folder, backend="flax")
    ours, theirs = flatten_dict(model.backend.flax_params()), flatten_dict(back.backend.flax_params())
    assert ours.keys() == theirs.keys()
    for key in ours:
        np.testing.assert_array_equal(np.asarray(theirs[key]), np.asarray(ours[key]))
    np.testing.assert_array_equal(back.encode_text(["빨간 원"]), model.encode_text(["빨간 원"]))
    assert back.image_transform == model.image_transform and back.logit_scale == model.logit_scale


class FakeHub(BaseHTTPRequestHandler):
    """The Hub's answers to creating a repository, asking how to upload each file, and a commit."""

    repos: dict[str, dict[str, bytes]] = {}
    requests: list[str] = []

    def log_message(self, *args):
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.requests.append(f"POST {self.path}")
        if self.path == "/api/repos/create":
            repo = json.loads(body)
            repo_id = f"{repo.get('organization') or 'user'}/{repo['name']}"
            self.repos.setdefault(repo_id, {})
            return self._answer(200, {"url": f"http://{self.headers['Host']}/{repo_id}", "name": repo_id})
        parts = self.path.split("/")  # /api/models/OWNER/NAME/(preupload|commit)/main
        repo_id = "/".join(parts[3:5])
        if parts[5] == "preupload" and repo_id in self.repos:
            files = json.loads(body)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return self._answer(200, {"files": modes})
        if parts[5] == "commit" and repo_id in self.repos:
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    self.repos[repo_id][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            url = f"http://{self.headers['Host']}/{repo_id}/commit/{'a' * 40}"
            return self._answer(200, {"commitUrl": url, "commitOid": "a" * 40, "pullRequestUrl": None})
        return self._answer(404, {"error": f"no route {self.path}"})


@pytest.fixture
def fake_hub_endpoint(monkeypatch):
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    _http.reset_sessions()
    FakeHub.repos.clear()
    FakeHub.requests.clear()
    yield FakeHub
    server.shutdown()
    _http.reset_sessions()


def test_push_to_hub_uploads_a_folder_that_loads(fake_hub_endpoint, tmp_path):
    model = koclip.load("koclip-mini", backend="flax")
    url = model.push_to_hub("someone/my-koclip", token="hf_test")
    assert url.endswith("/someone/my-koclip/commit/" + "a" * 40)
    assert fake_hub_endpoint.requests == [
        "POST /api/repos/create",
        "POST /api/models/someone/my-koclip/preupload/main",
        "POST /api/models/someone/my-koclip/commit/main",
    ]
    uploaded = fake_hub_endpoint.repos["someone/my-koclip"]
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"} <= set(uploaded)
    folder = tmp_path / "downloaded"
    folder.mkdir()
    for name, data in uploaded.items():
        (folder / name).write_bytes(data)
    np.testing.assert_array_equal(
        koclip.load(folder, backend="flax").encode_text(["파란 별"]), model.encode_text(["파란 별"])
    )
