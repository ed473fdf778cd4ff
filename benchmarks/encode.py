"""Encoding latency of full-size KoCLIP towers, Flax against PyTorch, with random weights.

The published weights are not needed to time the models: random weights of the same shapes cost
the same. Prints a markdown table: first-call latency (Flax includes compilation), steady-state
median, the compilations over 50 queries of varying length, and peak RSS.

    python benchmarks/encode.py [--models base,large] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from transformers import CLIPVisionConfig, RobertaConfig, ViTConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from koclip import convert  # noqa: E402
from koclip.api import KoCLIP  # noqa: E402
from koclip.backends import FlaxBackend, TorchBackend  # noqa: E402
from koclip.config import POSITIONS_FROM_ZERO, KoCLIPConfig  # noqa: E402
from koclip.model import init_params  # noqa: E402
from koclip.processing import ImageProcessorSpec, image_processor_for  # noqa: E402
from koclip.tokenizer import train_wordpiece  # noqa: E402

KLUE_ROBERTA_LARGE = RobertaConfig(
    vocab_size=32000, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
    max_position_embeddings=514, pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1,
)
VISION = {
    "base": (CLIPVisionConfig(), ImageProcessorSpec("clip", 224)),  # ViT-B/32 defaults
    "large": (ViTConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                        patch_size=16, image_size=224), ImageProcessorSpec("clip", 224)),
}
WORDS = "빨간 자동차가 비 오는 도로 위를 천천히 달리고 있고 사람들이 우산을 쓰고 걸어간다".split()


def query(n_words: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(n_words))


def timed(fn, repeats: int) -> tuple[float, float]:
    """(first call, median of the following calls) in seconds."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def build(name: str):
    vision, spec = VISION[name]
    config = KoCLIPConfig(KLUE_ROBERTA_LARGE, vision, projection_dim=512, text_positions=POSITIONS_FROM_ZERO)
    tokenizer = train_wordpiece(WORDS * 20, vocab_size=200)
    params = init_params(config)
    processor = image_processor_for(spec)
    flax_model = KoCLIP(f"koclip-{name} (random)", config, FlaxBackend(config, params), tokenizer, processor)
    torch_model = KoCLIP(f"koclip-{name} (random)", config, TorchBackend(config, convert.flax_to_torch(params)),
                         tokenizer, processor)
    return flax_model, torch_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="base,large")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large-batch", type=int, default=64, help="largest image batch")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (256, 320, 3), dtype=np.uint8)) for _ in range(args.large_batch)]

    print("| model | workload | Flax first call | Flax steady | PyTorch first call | PyTorch steady | Flax/PyTorch |")
    print("|---|---|---|---|---|---|---|")
    compile_lines = []
    for name in args.models.split(","):
        flax_model, torch_model = build(name)
        workloads = {
            "text x1": lambda m: m.encode_text([query(8)]),
            "text x16": lambda m: m.encode_text([query(8)] * 16),
            "image x1": lambda m: m.encode_image(images[:1]),
            "image x16": lambda m: m.encode_image(images[:16]),
            f"image x{args.large_batch}": lambda m: m.encode_image(images),
        }
        for label, work in workloads.items():
            f_first, f_steady = timed(lambda: work(flax_model), args.repeats)
            t_first, t_steady = timed(lambda: work(torch_model), args.repeats)
            print(f"| {name} | {label} | {f_first:.2f} s | {f_steady:.3f} s | {t_first:.2f} s | {t_steady:.3f} s "
                  f"| {f_steady / t_steady:.2f} |", flush=True)
        before = flax_model.backend.compilations
        lengths = [int(n) for n in rng.integers(1, 120, 50)]
        buckets = {flax_model.text_processor([query(n)])[0].shape[1] for n in lengths}
        start = time.perf_counter()
        for n in lengths:
            flax_model.encode_text([query(n)])
        compile_lines.append(
            f"- {name}: 50 queries of 1-120 words fell in {len(buckets)} length buckets and caused "
            f"{flax_model.backend.compilations - before} new compilations "
            f"(some buckets were compiled above already); {time.perf_counter() - start:.1f} s in all"
        )
        del flax_model, torch_model
    print()
    print("\n".join(compile_lines))
    print(f"- peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
