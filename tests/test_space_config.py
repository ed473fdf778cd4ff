"""What a Hugging Face Space reads: the README's header and requirements.txt."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from demo import settings
from koclip import hub, registry

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "koclip-base"  # what demo/models.py starts on when it can be had


def pins() -> dict[str, str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))


def space_header() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    header = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert header, "README.md must start with the Space's YAML header"
    return yaml.safe_load(header.group(1))


def test_the_readme_header_runs_app_py_with_the_pinned_streamlit():
    header = space_header()
    assert header["sdk"] == "streamlit" and header["app_file"] == "app.py"
    assert header["sdk_version"] == pins()["streamlit"]
    assert header["python_version"] == "3.11"


def test_the_header_links_and_preloads_only_what_the_app_uses():
    header = space_header()
    known = {info.repo_id for info in registry.MODELS.values() if info.repo_id} | {registry.KLUE_TOKENIZER}
    assert set(header["models"]) <= known and "koclip/koclip-base" in header["models"]
    assert header["datasets"] == [settings.gallery_dataset().name]
    assert 0 < len(header["short_description"]) <= 60 and header["tags"]
    preloaded = dict(line.split(" ", 1) for line in header["preload_from_hub"])
    assert set(preloaded) == {registry.MODELS[DEFAULT_MODEL].repo_id, registry.KLUE_TOKENIZER}
    # each file list is what koclip.load fetches from that repo, less files the repo lacks
    assert set(preloaded[registry.KLUE_TOKENIZER].split(",")) == set(hub.TOKENIZER_FILES)
    model_files = set(preloaded[registry.MODELS[DEFAULT_MODEL].repo_id].split(","))
    assert {"config.json", "flax_model.msgpack"} == model_files and model_files <= set(hub.WEIGHT_FILES)


def test_the_requirements_install_without_torch_cuda_or_transformers(tmp_path):
    # What a Space's CPU hardware would install, resolved but not installed. A torch asked for by
    # anything would come from PyPI as a CUDA build of several GB; transformers serves only the
    # PyTorch twin.
    report = tmp_path / "report.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            "-r",
            str(ROOT / "requirements.txt"),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"streamlit", "jax", "flax", "tokenizers", "datasets", "scikit-learn"} <= names
    assert not {name for name in names if name in ("torch", "transformers") or name.startswith(("nvidia-", "triton"))}


def test_the_readme_rehearsal_runs_without_transformers_or_torch(tmp_path):
    # The README lays the fake Hub cache from the app's own venv (requirements.txt), which has neither.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert ".venv/bin/python tests/fake_hub.py /tmp/hf-cache" in readme
    hide = "import sys, runpy; sys.modules.update(dict.fromkeys(['transformers', 'torch'])); "
    lay = (
        hide
        + f"sys.argv = ['fake_hub.py', {str(tmp_path / 'cache')!r}]; "
        + "runpy.run_path('tests/fake_hub.py', run_name='__main__')"
    )
    subprocess.run([sys.executable, "-c", lay], cwd=ROOT, check=True, capture_output=True, timeout=300)
    use = hide + (
        "import koclip, skimage.data; model = koclip.load('koclip-base'); assert model.backend.compiles; "
        "from PIL import Image; print(model.classify(Image.fromarray(skimage.data.chelsea()), ['고양이', '강아지']))"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", use], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "고양이" in done.stdout and "강아지" in done.stdout
