"""Encoding speed of full-size KoCLIP on this machine's CPU, against PyTorch eager and a NumPy floor.

Full-size models come from `koclip.random_model` (published shapes, random weights: the weights do
not change the cost). One run prints:

1. Steady state: a 12-token text query and image batches, koclip's Flax backend against its
   PyTorch twin (`backend="torch"`, eager) on the same weights, and which of them `backend="auto"`
   (the default of `koclip.load`) runs; for text, the floor is the text tower's linear layers
   alone as NumPy float32 matrix products.
2. First query of each text length bucket with Flax (PyTorch compiles nothing): compiled on the
   query's path (no warm-up, as before) against after `KoCLIP.warm_up()`; and the compilations
   caused by a stream of queries of 1 to 200 tokens after warm-up.
   And the opt-in precision="bfloat16" against float32 on PyTorch: speed and the lowest cosine
   between their embeddings.
3. koclip-mini: `koclip.load` + the first `classify` in a fresh process (PyTorch installed, no
   environment variable set), with an empty compilation cache and with the one a previous process
   left; with --baseline, also for that git revision, checked out in a temporary worktree.
4. The ONNX export (`backend="onnx"`, onnxruntime) beside Flax and PyTorch eager on the same
   weights: texts of 12, 40 and 130 tokens, the large image batch, and the first query of a length
   not seen before against that length's steady state (needs requirements-onnx.txt).

    python benchmarks/encode.py [--model koclip-base] [--repeats 5] [--images 64] [--baseline REV]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KOCLIP_COMPILATION_CACHE", "off")  # part 2 times real compiles, not cache loads

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import koclip  # noqa: E402
from koclip.models import backends  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORDS = "빨간 자동차가 비 오는 도로 위를 천천히 달리고 있고 사람들이 우산을 쓰고 걸어간다".split()
STREAM = 60  # queries of 1 to 200 tokens after warm-up
FRESH_PROCESS = """
import time
start = time.perf_counter()
import koclip
from PIL import Image
model = koclip.load("koclip-mini")
model.classify(Image.new("RGB", (64, 64), "red"), ["빨간 원", "파란 삼각형"])
print(time.perf_counter() - start)
"""


def text_of(model, tokens: int) -> str:
    """A query of exactly `tokens` tokens (special tokens included) for this model's tokenizer."""
    words: list[str] = []
    while model.text_processor.token_count(" ".join(words)) < tokens:
        words.append(WORDS[len(words) % len(WORDS)])
    while model.text_processor.token_count(" ".join(words)) > tokens and words:
        words.pop()
    text = " ".join(words)
    return text + " 비" * (tokens - model.text_processor.token_count(text))


def steady(work, repeats: int) -> float:
    """Median seconds of `repeats` calls, after one untimed call."""
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def once(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def linear_floor(model, tokens: int, repeats: int):
    """The text tower's linear layers alone, as float32 NumPy products of a (tokens, width) input."""
    kernels = []

    def collect(tree):
        for key, value in tree.items():
            if isinstance(value, dict):
                collect(value)
            elif key == "kernel" and np.ndim(value) == 2:
                kernels.append(np.ascontiguousarray(value, np.float32))

    collect(model.backend.params["text_model"]["encoder"])
    rng = np.random.default_rng(0)
    inputs = {w.shape[0]: rng.standard_normal((tokens, w.shape[0]), dtype=np.float32) for w in kernels}
    return lambda: [inputs[w.shape[0]] @ w for w in kernels]


def fresh_process_seconds(cache: str, tree: Path) -> float:
    """The script above in a new interpreter that imports koclip from `tree` (a checkout)."""
    env = {k: v for k, v in os.environ.items() if k != "USE_TORCH"}
    env |= {"KOCLIP_COMPILATION_CACHE": cache, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS], cwd=tree, env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def steady_state(name: str, repeats: int, images: list[Image.Image]) -> None:
    flax_model = koclip.random_model(name, backend="flax")
    torch_model = koclip.random_model(name, backend="torch")
    auto = backends.resolve("auto", backends.weight_count(flax_model.backend.params))
    query = text_of(flax_model, 12)
    print(f'## 1. Steady state (koclip.load\'s backend="auto" runs {auto} for this model here)')
    print("| workload | Flax (XLA) | PyTorch eager | NumPy floor | Flax / PyTorch | fastest / floor |")
    print("|---|---|---|---|---|---|")
    flax_s = steady(lambda: flax_model.encode_text([query]), repeats)
    torch_s = steady(lambda: torch_model.encode_text([query]), repeats)
    floor_s = steady(linear_floor(flax_model, 12, repeats), repeats)
    print(
        f"| text, 12 tokens | {flax_s * 1e3:.0f} ms | {torch_s * 1e3:.0f} ms | {floor_s * 1e3:.0f} ms "
        f"| {flax_s / torch_s:.2f} | {min(flax_s, torch_s) / floor_s:.2f} |",
        flush=True,
    )
    for count in sorted({1, 16, len(images)}):
        batch = images[:count]
        times = max(1, repeats // (2 if count > 16 else 1))
        flax_s = steady(lambda: flax_model.encode_image(batch), times)
        torch_s = steady(lambda: torch_model.encode_image(batch), times)
        print(f"| images x{count} | {flax_s:.2f} s | {torch_s:.2f} s | – | {flax_s / torch_s:.2f} | – |", flush=True)

    half = koclip.random_model(name, backend="torch", precision="bfloat16")
    print('\n## 1b. precision="bfloat16" (opt-in, PyTorch): speed and agreement with float32')
    print("| workload | PyTorch float32 | PyTorch bfloat16 | speed-up | lowest cosine to float32 |")
    print("|---|---|---|---|---|")
    texts = [text_of(flax_model, n) for n in (4, 12, 30, 60)]
    workloads = {
        "text, 12 tokens": (lambda m: m.encode_text([query]), lambda m: m.encode_text(texts)),
        f"images x{len(images)}": (lambda m: m.encode_image(images), lambda m: m.encode_image(images)),
    }
    for label, (work, agreement) in workloads.items():
        full_s, half_s = steady(lambda: work(torch_model), 3), steady(lambda: work(half), 3)
        cosine = float((agreement(torch_model) * agreement(half)).sum(axis=1).min())
        print(f"| {label} | {full_s:.3f} s | {half_s:.3f} s | {full_s / half_s:.2f} | {cosine:.4f} |", flush=True)


def first_queries(name: str) -> None:
    cold = koclip.random_model(name, backend="flax", seed=1)
    buckets = [b for b in cold.text_processor.buckets if b <= 256]
    before = {b: once(lambda: cold.encode_text([text_of(cold, b)])) for b in buckets}
    warm = koclip.random_model(name, backend="flax", seed=2)
    start = time.perf_counter()
    warm.warm_up()
    warm_up_s = time.perf_counter() - start
    after = {b: once(lambda: warm.encode_text([text_of(warm, b)])) for b in buckets}
    settled = {b: steady(lambda: warm.encode_text([text_of(warm, b)]), 2) for b in buckets}
    print("\n## 2. First query of each length bucket, Flax (s)")
    print("| tokens | no warm-up (compiles on the query's path) | after warm_up() | steady | after / steady |")
    print("|---|---|---|---|---|")
    for b in buckets:
        print(f"| {b} | {before[b]:.2f} | {after[b]:.2f} | {settled[b]:.2f} | {after[b] / settled[b]:.2f} |")
    compiled = warm.backend.compilations
    lengths = np.random.default_rng(1).integers(1, 201, STREAM)
    for n in lengths:
        warm.encode_text([text_of(warm, int(n))])
    print(
        f"\nwarm_up() took {warm_up_s:.0f} s (in the background after a load); then {STREAM} queries of "
        f"{lengths.min()}–{lengths.max()} tokens compiled {warm.backend.compilations - compiled} times."
    )


def startup(baseline: str | None) -> None:
    print("\n## 3. koclip-mini: load + first classify in a fresh process, PyTorch installed (s)")
    print("| code | empty compilation cache | the cache a previous process left (median of 3) |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        trees = {"this checkout": ROOT}
        if baseline:
            trees = {baseline: Path(scratch) / "baseline", **trees}
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(trees[baseline]), baseline],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
        try:
            for label, tree in trees.items():
                with tempfile.TemporaryDirectory() as cache:
                    empty = fresh_process_seconds(cache, tree)
                    filled = statistics.median(fresh_process_seconds(cache, tree) for _ in range(3))
                print(f"| {label} | {empty:.2f} | {filled:.2f} |", flush=True)
        finally:
            if baseline:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(trees[baseline])], cwd=ROOT, capture_output=True
                )


def onnx_beside(name: str, repeats: int, images: list[Image.Image]) -> None:
    from koclip import export

    flax_model = koclip.random_model(name, backend="flax")
    torch_model = koclip.random_model(name, backend="torch")
    with tempfile.TemporaryDirectory() as scratch:
        source = flax_model.save(Path(scratch) / "source")
        onnx_model = koclip.load(export.to_onnx(str(source), Path(scratch) / "onnx"))
        models = {"Flax (XLA)": flax_model, "PyTorch eager": torch_model, "ONNX Runtime": onnx_model}
        print("\n## 4. ONNX Runtime beside Flax and PyTorch eager (steady state)")
        print("| workload | " + " | ".join(models) + " | ONNX / fastest other |")
        print("|---|---|---|---|---|")
        for tokens in (12, 40, 130):
            query = text_of(flax_model, tokens)
            cosine = float((onnx_model.encode_text([query]) * flax_model.encode_text([query])).sum())
            assert cosine > 0.9999, f"the ONNX export disagrees with Flax (cosine {cosine})"
            secs = {label: steady(lambda m=m: m.encode_text([query]), repeats) for label, m in models.items()}
            others = min(v for k, v in secs.items() if k != "ONNX Runtime")
            cells = " | ".join(f"{v * 1e3:.0f} ms" for v in secs.values())
            print(f"| text, {tokens} tokens | {cells} | {secs['ONNX Runtime'] / others:.2f} |", flush=True)
        times = max(1, repeats // 2)
        secs = {label: steady(lambda m=m: m.encode_image(images), times) for label, m in models.items()}
        others = min(v for k, v in secs.items() if k != "ONNX Runtime")
        cells = " | ".join(f"{len(images) / v:.1f} images/s" for v in secs.values())
        print(f"| images x{len(images)} | {cells} | {others / secs['ONNX Runtime']:.2f} (speed) |", flush=True)
        fresh = koclip.load(Path(scratch) / "onnx")
        query = text_of(fresh, 77)  # a length no earlier query had
        first = once(lambda: fresh.encode_text([query]))
        settled = steady(lambda: fresh.encode_text([query]), repeats)
        print(f"\nONNX Runtime, first query of 77 tokens, fresh session: {first:.2f} s, {first / settled:.2f}x steady")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="koclip-base", choices=("koclip-base", "koclip-large"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=64, help="the large image batch")
    parser.add_argument("--parts", default="1,2,3,4", help="which parts to run (default: all)")
    parser.add_argument(
        "--baseline", metavar="REV", help="part 3: also time this git revision, in a temporary worktree"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    print(f"{os.cpu_count()} cores; {args.model} with random weights; medians of {args.repeats}\n")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (256, 320, 3), dtype=np.uint8)) for _ in range(args.images)]
    if "1" in parts:
        steady_state(args.model, args.repeats, images)
    if "2" in parts:
        first_queries(args.model)
    if "3" in parts:
        startup(args.baseline)
    if "4" in parts:
        onnx_beside(args.model, args.repeats, images)


if __name__ == "__main__":
    main()
