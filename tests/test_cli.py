"""`python -m koclip` in its own process: help and argument errors come before any heavy import,
search refuses queries its model cannot read, and the download command's advice fits it."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from koclip.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
GALLERY = str(ROOT / "embeddings" / "koclip-mini-scenes")
HEAVY = ("jax", "flax", "transformers", "torch", "datasets", "koclip.api")


def run(*argv: str, env: dict[str, str] | None = None, timeout: int = 300):
    """Run the command line; returns (exit status, stdout, stderr, the modules it imported)."""
    environ = {k: v for k, v in os.environ.items() if k != "USE_TORCH"} | (env or {})
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "koclip", *argv],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = result.stderr.splitlines()
    imported = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}
    stderr = "\n".join(line for line in lines if not line.startswith("import time:"))
    return result.returncode, result.stdout, stderr, imported


def assert_light(imported: set[str]) -> None:
    assert not imported & set(HEAVY), f"imported {sorted(imported & set(HEAVY))}"


@pytest.mark.parametrize(
    "argv",
    [["--help"], *([name, "--help"] for name in ("download", "scenes", "index", "search", "train", "eval", "bench"))],
)
def test_help_imports_nothing_heavy(argv):
    code, out, err, imported = run(*argv)
    assert code == 0 and "usage: python -m koclip" in out and not err
    assert_light(imported)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A text file, an empty folder, a folder that is no model, and an unfinished gallery."""
    root = tmp_path_factory.mktemp("args")
    (root / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()
    (root / "no-model").mkdir()
    (root / "no-model" / "weights.bin").write_bytes(b"")
    return root


LONG_QUERY = "빨간 원 " * 2500  # 10,000 characters: allowed, and must not slow down a refusal

# id: (the arguments, split as a shell would, and what the error message says). {tmp} holds the
# `files`, {out} is a path a command would write to, {long} is LONG_QUERY.
BAD_ARGUMENTS = {
    "search, no such gallery": (
        "search 빨간 --gallery {tmp}/missing",
        "{tmp}/missing is not a gallery: no such directory",
    ),
    "search, long query, no such gallery": ("search {long} --gallery {tmp}/missing", "is not a gallery"),
    "search, gallery not finished": ("search 빨간 --gallery {tmp}/empty", "empty has no manifest.json"),
    "search, no such image": (
        "search --image {tmp}/missing.png --gallery {gallery}",
        "--image {tmp}/missing.png: does not exist",
    ),
    "search, image is a folder": ("search --image {tmp}/empty --gallery {gallery}", "empty: is a folder, not a file"),
    "search, image unreadable": ("search --image {tmp}/notes.txt --gallery {gallery}", "not a readable image"),
    "search, unknown model": (
        "search 빨간 --gallery {gallery} --model koclip-huge",
        "'koclip-huge' is not a known model name (koclip-base",
    ),
    "search, model folder without config": (
        "search 빨간 --gallery {gallery} --model {tmp}/no-model",
        "no-model has no config.json, so it is not a model folder",
    ),
    "search, empty query": ("search '' --gallery {gallery}", "empty query"),
    "search, spaces only": ("search '  \t ' --gallery {gallery}", "empty query"),
    "search, query and image": (
        "search 빨간 --image {tmp}/notes.txt --gallery {gallery}",
        "give either a QUERY text or --image FILE, not both",
    ),
    "search, neither query nor image": ("search --gallery {gallery}", "give either a QUERY text or --image FILE"),
    "search, negative k": (
        "search 빨간 --gallery {gallery} --top-k -1",
        "argument --top-k: must be at least 1, got -1",
    ),
    "search, k not a number": (
        "search 빨간 --gallery {gallery} --top-k ten",
        "argument --top-k: not an integer: 'ten'",
    ),
    "index, no such folder": (
        "index {tmp}/missing --model koclip-mini --out {out}",
        "SOURCE {tmp}/missing: does not exist",
    ),
    "index, source is a file": ("index {tmp}/notes.txt --model koclip-mini --out {out}", "is a file, not a folder"),
    "index, unknown model": ("index scenes --model koclip-huge --out {out}", "'koclip-huge' is not a known model name"),
    "index, zero scenes": (
        "index scenes --n 0 --model koclip-mini --out {out}",
        "argument --n: must be at least 1, got 0",
    ),
    "index, zero batch": (
        "index scenes --batch-size 0 --model koclip-mini --out {out}",
        "argument --batch-size: must be at least 1",
    ),
    "index, scene options for a folder": (
        "index {tmp}/empty --n 5 --model koclip-mini --out {out}",
        "--n only applies with SOURCE scenes",
    ),
    "index, dataset options without --dataset": (
        "index scenes --split test --model koclip-mini --out {out}",
        "--split only applies with --dataset",
    ),
    "index, workers without ray": (
        "index scenes --workers 2 --model koclip-mini --out {out}",
        "--workers only applies with --engine ray",
    ),
    "index, no such dataset folder": (
        "index {tmp}/missing --dataset --model koclip-mini --out {out}",
        "no such folder, and not a Hugging Face Hub dataset name",
    ),
    "index, out holds a gallery": (
        "index scenes --model koclip-mini --out {gallery}",
        "already holds a gallery; pass --overwrite",
    ),
    "index, out is a file": (
        "index scenes --model koclip-mini --out {tmp}/notes.txt",
        "--out {tmp}/notes.txt is a file",
    ),
    "train, negative steps": ("train --steps -1 --out {out}", "argument --steps: must be at least 1, got -1"),
    "train, batch of one": ("train --batch-size 1 --out {out}", "argument --batch-size: must be at least 2"),
    "train, zero learning rate": (
        "train --learning-rate 0 --out {out}",
        "argument --learning-rate: must be more than 0",
    ),
    "train, learning rate not finite": ("train --learning-rate nan --out {out}", "must be a finite number"),
    "train, never evaluating": ("train --eval-every 0 --out {out}", "argument --eval-every: must be at least 1"),
    "train, unknown towers": ("train --towers huge --out {out}", "argument --towers: invalid choice: 'huge'"),
    "train, batch larger than the scenes": (
        "train --scenes 100 --out {out}",
        "--batch-size 128 needs --scenes 256 or more",
    ),
    "train, dataset options on scenes": ("train --split test --out {out}", "--split only applies with --data DATASET"),
    "train, scene options on a dataset": (
        "train --data {tmp}/empty --scenes 50 --out {out}",
        "--scenes only applies with --data scenes",
    ),
    "train, no such dataset folder": ("train --data {tmp}/missing --out {out}", "{tmp}/missing: no such folder"),
    "train, out is a file": ("train --out {tmp}/notes.txt", "--out {tmp}/notes.txt is a file"),
    "train, out holds a model": ("train --out {shipped}", "already holds a model; pass --overwrite"),
    "scenes, zero images": ("scenes --n 0 --out {out}", "argument --n: must be at least 1, got 0"),
    "scenes, grid too large": (
        "scenes --composite --grid 7 --out {out}",
        "argument --grid: must be between 1 and 6, got 7",
    ),
    "scenes, grid without composite": ("scenes --grid 2 --out {out}", "--grid only applies with --composite"),
    "scenes, used folder": ("scenes --out {tmp}/no-model", "no-model exists and is not an empty directory"),
    "download, unknown model": ("download koclip-huge", "'koclip-huge' is not a known model name"),
    "no such command": ("serch 빨간", "argument COMMAND: invalid choice: 'serch'"),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS, ids=list(BAD_ARGUMENTS))
def test_bad_arguments_are_refused_before_any_heavy_import(files, tmp_path, case):
    line, message = BAD_ARGUMENTS[case]
    output = tmp_path / "out"
    places = {
        "{tmp}": str(files),
        "{out}": str(output),
        "{gallery}": GALLERY,
        "{long}": LONG_QUERY,
        "{shipped}": str(ROOT / "koclip" / "assets" / "koclip-mini"),
    }
    argv = shlex.split(line)
    for place, value in places.items():
        argv = [arg.replace(place, value) for arg in argv]
    code, out, err, imported = run(*argv)
    assert code == 2 and not out
    assert message.replace("{tmp}", str(files)) in err
    assert "error: " in err and "Traceback" not in err
    assert_light(imported)
    assert not output.exists(), "a refused command wrote its output"


def test_an_offline_model_missing_from_the_cache_is_refused_before_any_heavy_import(tmp_path):
    code, out, err, imported = run(
        "search",
        "빨간 원",
        "--gallery",
        GALLERY,
        "--model",
        "koclip-base",
        env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)},
    )
    assert code == 2 and err.startswith("error: koclip/koclip-base is not in the Hugging Face cache")
    assert_light(imported)


def test_offline_download_does_not_send_its_user_back_to_itself(tmp_path):
    offline = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)}
    code, out, err, imported = run("download", "koclip-base", env=offline)
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: koclip/koclip-base is not in the Hugging Face cache")
    assert str(tmp_path) in err  # where it looked
    assert "python -m koclip download" not in err
    assert "unset HF_HUB_OFFLINE" in err and "HF_ENDPOINT" in err and "machine with internet access" in err
    assert_light(imported)


def test_search_answers_without_importing_pytorch_or_transformers():
    code, out, err, imported = run("search", "빨간 원", "--gallery", GALLERY, "--top-k", "3", "--json")
    assert code == 0, err
    results = json.loads(out)["results"]
    assert len(results) == 3 and all("빨간 원" in r["caption"] for r in results)
    assert "jax" in imported and "transformers" not in imported and "torch" not in imported


def test_the_torch_backend_still_gets_pytorch():
    code, out, err, imported = run(
        "eval", "--model", "koclip-mini", "--backend", "torch", "--n", "16", "--composites", "2", "--json"
    )
    assert code == 0, err
    assert "torch" in imported and json.loads(out)["zero_shot"]["color"] > 0.5


def test_a_query_the_model_cannot_read_gets_no_answer(capsys):
    assert cli(["search", "고양이", "--gallery", GALLERY]) == 2
    captured = capsys.readouterr()
    assert not captured.out
    assert captured.err.startswith("error: koclip-mini knows none of the words in the query (“고양이”)")
    assert cli(["search", "a red circle", "--gallery", GALLERY, "--json"]) == 2
    captured = capsys.readouterr()
    assert not captured.out and "(“a”, “red”, “circle”)" in captured.err


def test_unknown_words_in_a_readable_query_are_named_and_the_rest_answered(capsys):
    assert cli(["search", "빨간 고양이", "--gallery", GALLERY, "--top-k", "3", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "warning: koclip-mini does not know “고양이”; that part of the query is ignored; "
        "koclip-mini knows shapes and colours only, such as 빨간 원 or 파란 삼각형\n"
    )
    assert [r["rank"] for r in json.loads(captured.out)["results"]] == [1, 2, 3]
    assert cli(["search", "빨간 원", "--gallery", GALLERY, "--top-k", "3"]) == 0
    captured = capsys.readouterr()
    assert not captured.err and captured.out.count("\n") == 4


def test_train_towers_are_the_ones_train_builds():
    from koclip.commands import train as command
    from koclip.training.train import SMALL_TOWERS

    assert command.TOWERS == (*SMALL_TOWERS, "pretrained")


def test_runs_from_the_folder_that_holds_a_clone_named_koclip(tmp_path):
    (tmp_path / "koclip").symlink_to(ROOT)  # `git clone … koclip`, then the command run beside it
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "koclip",
            "search",
            "빨간 원",
            "--gallery",
            "koclip/embeddings/koclip-mini-scenes",
            "--model",
            "koclip-mini",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "빨간 원" in result.stdout
