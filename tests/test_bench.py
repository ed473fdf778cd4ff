"""`python -m koclip bench`: its figures equal CLIP_benchmark's own (run from PyPI's clip-benchmark on
the same embeddings, and on a koclip model through the adapter), data sets in the Hub's layouts are
read and refused clearly, peers load through their own libraries, and an interrupted run resumes."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import torch
from clip_benchmark.metrics import zeroshot_classification, zeroshot_retrieval
from PIL import Image

import koclip
from koclip import api
from koclip.bench import cache, data, encoders, report, run, scoring
from koclip.bench.adapter import ClipBenchmarkModel
from koclip.cli import main as cli
from koclip.data import scenes
from koclip.errors import KoCLIPError
from koclip.training import evaluate


def unit(rng, n, d=16):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class Rows(torch.utils.data.Dataset):
    """(image, target) pairs as CLIP_benchmark's data sets give them."""

    def __init__(self, images, targets, classes=()):
        self.images, self.targets, self.classes = images, targets, list(classes)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.targets[i]


def captions_collate(batch):  # CLIP_benchmark's image_captions_collate_fn
    images, texts = zip(*batch)
    return torch.stack(images), texts


class Lookup(torch.nn.Module):
    """CLIP_benchmark's model interface over fixed embeddings: an image is its embedding, a text's token its row."""

    def __init__(self, texts, text_embeddings):
        super().__init__()
        self.row = {t: i for i, t in enumerate(texts)}
        self.text_embeddings = torch.from_numpy(text_embeddings)

    def tokenizer(self, texts):
        return torch.tensor([self.row[t] for t in texts])

    def encode_text(self, tokens):
        return self.text_embeddings[tokens]

    def encode_image(self, images):
        return images


def clip_benchmark_retrieval(model, images, captions, batch_size=7):
    loader = torch.utils.data.DataLoader(Rows(images, captions), batch_size=batch_size, collate_fn=captions_collate)
    return zeroshot_retrieval.evaluate(model, loader, model.tokenizer, "cpu", amp=False, recall_k_list=[1, 5, 10])


def assert_same_retrieval(ours, theirs):
    for k in (1, 5, 10):
        assert ours["text_to_image"][f"R@{k}"] == pytest.approx(theirs[f"image_retrieval_recall@{k}"], abs=1e-6)
        assert ours["image_to_text"][f"R@{k}"] == pytest.approx(theirs[f"text_retrieval_recall@{k}"], abs=1e-6)


@pytest.mark.parametrize("rule", list(scoring.RULES))
def test_retrieval_equals_clip_benchmark_on_the_same_embeddings(rule):
    rng = np.random.default_rng(0)
    n = 40
    captions = [[f"caption {i}.{j}" for j in range(rng.integers(1, 5))] for i in range(n)]
    texts, owner = scoring.text_queries(captions, rule)
    # Texts lie near their images, so the recalls are neither 0 nor 1.
    image_emb = unit(rng, n)
    text_emb = image_emb[owner] + 2.5 * unit(rng, len(texts))
    text_emb /= np.linalg.norm(text_emb, axis=1, keepdims=True)
    ours = scoring.retrieval(text_emb, image_emb, owner)
    kept = [c if rule == "all-captions" else c[:1] for c in captions]
    theirs = clip_benchmark_retrieval(Lookup(texts, text_emb), list(torch.from_numpy(image_emb)), kept)
    assert_same_retrieval(ours, theirs)
    assert 0.05 < ours["text_to_image"]["R@1"] < 0.95


@pytest.mark.parametrize("templates", [("{}",), ("이것은 {} 이다.",), data.TEMPLATE_SETS["ensemble"]])
def test_classification_equals_clip_benchmark_on_the_same_embeddings(templates):
    rng = np.random.default_rng(1)
    labels, n = list(data.CIFAR10_KO), 120
    prompts = [t.format(label) for label in labels for t in templates]
    prompt_emb = unit(rng, len(prompts)) * rng.uniform(0.5, 2, size=(len(prompts), 1)).astype(np.float32)
    classes = api.ensemble(prompt_emb, len(labels))
    targets = rng.integers(0, len(labels), n)
    image_emb = classes[targets] + 1.2 * unit(rng, n)
    image_emb /= np.linalg.norm(image_emb, axis=1, keepdims=True)
    ours = scoring.classification(image_emb, classes, targets)
    model = Lookup(prompts, prompt_emb)
    loader = torch.utils.data.DataLoader(Rows(list(torch.from_numpy(image_emb)), list(targets), labels), batch_size=16)
    their_templates = [t.replace("{}", "{c}") for t in templates]
    # CLIP_benchmark's classifier and logits, by its own functions. Its `accuracy` calls float() on a
    # one-element array, which NumPy 2 refuses, so top-k is read from its logits as `accuracy` reads it.
    weights = zeroshot_classification.zero_shot_classifier(
        model, model.tokenizer, labels, their_templates, "cpu", amp=False
    )
    logits, truth = zeroshot_classification.run_classification(model, weights, loader, "cpu", amp=False)
    top = logits.topk(5, 1, True, True)[1]
    assert ours["top1"] == pytest.approx((top[:, :1] == truth[:, None]).any(1).float().mean().item(), abs=1e-6)
    assert ours["top5"] == pytest.approx((top == truth[:, None]).any(1).float().mean().item(), abs=1e-6)
    recall = zeroshot_classification.balanced_accuracy_score(truth, logits.argmax(axis=1))
    assert ours["mean_per_class_recall"] == pytest.approx(recall, abs=1e-6)
    assert 0.1 < ours["top1"] < 0.95


@pytest.fixture(scope="module")
def mini():
    return koclip.load("koclip-mini", backend="flax")


@pytest.mark.parametrize("wrapped", [False, True], ids=["koclip pixels", "any encoder, RGB bytes"])
def test_a_model_through_the_adapter_scores_in_clip_benchmark_as_in_bench(mini, wrapped):
    scenes_ = data.open_data("scenes", scenes=60)
    # Identical captions of different scenes tie, and CLIP_benchmark's torch.topk orders ties its own way:
    # keep the captions no other scene has.
    counts = {}
    for texts in scenes_.captions:
        for text in set(texts):
            counts[text] = counts.get(text, 0) + 1
    keep = [i for i, texts in enumerate(scenes_.captions) if any(counts[t] == 1 for t in texts)]
    images = [scenes_.images(i, i + 1)[0] for i in keep]
    captions = [[t for t in scenes_.captions[i] if counts[t] == 1] for i in keep]
    rows = data.Data("unique", "retrieval", "generated", "-", "unique", len(keep), lambda a, b: images[a:b], captions)
    ours = run.score(mini, rows, cache.EmbeddingCache(None), batch_size=16, progress=False)
    adapted = ClipBenchmarkModel(Counting(mini) if wrapped else mini)
    assert adapted.preprocessed != wrapped
    theirs = clip_benchmark_retrieval(adapted, [adapted.transform(im) for im in images], captions, batch_size=16)
    figures = {(r["setting"], r["metric"]): r["value"] for r in ours}
    for k in (1, 5, 10):
        assert figures["all-captions", f"text_to_image R@{k}"] == pytest.approx(
            theirs[f"image_retrieval_recall@{k}"], abs=1e-6
        )
        assert figures["all-captions", f"image_to_text R@{k}"] == pytest.approx(
            theirs[f"text_retrieval_recall@{k}"], abs=1e-6
        )
    assert len(keep) > 30 and 0 < figures["all-captions", "text_to_image R@1"] < 1


def xm3600_folder(root, n=24, seed=5):
    """A DatasetDict in floschne/xm3600's layout (a split per language; images as {bytes, path}
    records), of generated scenes with their Korean captions (ko) and English caption (en)."""
    import datasets

    gallery = scenes.generate(n, seed, 64)

    def png(image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    features = datasets.Features(
        {
            "image_id": datasets.Value("string"),
            "image_locale": datasets.Value("string"),
            "captions": datasets.Sequence(datasets.Value("string")),
            "captions_tokenized": datasets.Sequence(datasets.Value("string")),
            "captions_tokenized_lowercase": datasets.Sequence(datasets.Value("string")),
            "image": {"bytes": datasets.Value("binary"), "path": datasets.Value("null")},
        }
    )

    def split(language):
        captions = [s.captions_ko if language == "ko" else [s.caption_en] for s in gallery]
        return datasets.Dataset.from_dict(
            {
                "image_id": [f"{i:016x}" for i in range(n)],
                "image_locale": [language] * n,
                "captions": captions,
                "captions_tokenized": captions,
                "captions_tokenized_lowercase": captions,
                "image": [{"bytes": png(s.image), "path": None} for s in gallery],
            },
            features=features,
        )

    folder = root / "xm3600"
    datasets.DatasetDict({"ko": split("ko"), "en": split("en")}).save_to_disk(str(folder))
    return folder, gallery


def test_xm3600_layout_is_scored_and_first_caption_recall_matches_eval(tmp_path, mini, capsys):
    folder, gallery = xm3600_folder(tmp_path)
    argv = ["bench", "--model", "koclip-mini", "--backend", "flax", "--data", f"xm3600-ko={folder}"]
    assert cli([*argv, "--data", f"xm3600-en={folder}", "--cache", str(tmp_path / "c"), "--json"]) == 0
    out, err = capsys.readouterr()
    results = json.loads(out)["results"]
    got = {(r["dataset"], r["setting"], r["metric"]): r for r in results if r["model_revision"] != "published"}
    # Known answer: eval --data on the same folder (first caption of each row) gives the same text->image R@1.
    expected = evaluate.evaluate_dataset(mini, str(folder), "ko", "image", "captions", 100)["retrieval"]
    first = got["xm3600-ko", "first-caption", "text_to_image R@1"]
    assert first["value"] == pytest.approx(expected["text_to_image"]["R@1"], abs=1e-6)
    assert first["images"] == 24 and first["texts"] == 24 and first["model_revision"] == mini.revision
    assert first["rule"] == scoring.RULES["first-caption"]
    # Every caption counted: the reference computed here from the model's own embeddings.
    captions = [s.captions_ko for s in gallery]
    texts, owner = scoring.text_queries(captions, "all-captions")
    reference = scoring.retrieval(mini.encode_text(texts), mini.encode_image([s.image for s in gallery]), owner)
    assert got["xm3600-ko", "all-captions", "image_to_text R@5"]["value"] == pytest.approx(
        reference["image_to_text"]["R@5"], abs=1e-6
    )
    assert got["xm3600-ko", "all-captions", "text_to_image R@1"]["texts"] == len(texts)
    assert ("xm3600-en", "first-caption", "text_to_image R@1") in got
    assert any(r["model_revision"] == "published" and r["dataset"] == "xm3600-ko" for r in results)
    # The table shows the run, then the published rows with their source.
    assert cli([*argv, "--cache", str(tmp_path / "c")]) == 0
    table = capsys.readouterr().out
    assert "| koclip-mini | xm3600-ko (24) | first-caption |" in table
    assert (
        "xlm-roberta-base-ViT-B-32 (laion5b) [published]" in table
        and "openclip_multilingual_retrieval_results" in table
    )


def test_the_fake_hub_koclip_base_is_scored_with_its_revision_and_a_limit_reuses_the_cache(space, tmp_path, capsys):
    folder, _ = xm3600_folder(tmp_path, n=20)
    base = ["bench", "--model", "koclip-base", "--data", f"xm3600-ko={folder}", "--cache", str(tmp_path / "c")]
    assert cli([*base, "--json"]) == 0
    results = [r for r in json.loads(capsys.readouterr().out)["results"] if r["model_revision"] != "published"]
    assert {r["model"] for r in results} == {"koclip-base"} and {r["images"] for r in results} == {20}
    assert results[0]["model_revision"] == koclip.load("koclip-base").revision != "unsaved"
    chunks = sorted(p.name for p in (tmp_path / "c").glob("*/*.npy"))
    assert cli([*base, "--limit", "8", "--json"]) == 0
    assert {
        r["images"] for r in json.loads(capsys.readouterr().out)["results"] if r["model_revision"] != "published"
    } == {8}
    new = sorted(p.name for p in (tmp_path / "c").glob("*/*.npy"))
    assert len(new) - len(chunks) == 2  # only the 8-caption query lists are new; the images came from the cache


def test_missing_and_odd_columns_are_named(tmp_path):
    import datasets

    image = Image.new("RGB", (16, 16))
    datasets.Dataset.from_dict({"img": [image], "text": ["빨간 원"]}).save_to_disk(str(tmp_path / "a"))
    with pytest.raises(KoCLIPError, match=r"has no column 'image'; it has img, text"):
        data.open_data(f"xm3600-ko={tmp_path / 'a'}")
    datasets.Dataset.from_dict({"image": [image], "captions": [3]}).save_to_disk(str(tmp_path / "b"))
    with pytest.raises(KoCLIPError, match=r"must hold a caption or a list of captions; row 0 holds int"):
        data.open_data(str(tmp_path / "b"))
    datasets.Dataset.from_dict({"image": ["a.png"], "captions": ["x"]}).save_to_disk(str(tmp_path / "c"))
    with pytest.raises(KoCLIPError, match=r"holds Value\(.*string.*\), not images; its columns are image \(Value\)"):
        data.open_data(str(tmp_path / "c"))


def test_unreachable_hub_data_and_xtd10_say_what_is_missing_and_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty"))
    with pytest.raises(KoCLIPError) as caught:
        data.open_data("xm3600-ko")
    message = str(caught.value)
    assert "floschne/xm3600" in message and "--data xm3600-ko=FOLDER" in message and "\n" not in message
    assert cli(["bench", "--data", "xtd10-ko"]) == 2
    err = capsys.readouterr().err
    assert "xtd10-ko has no copy on the Hugging Face Hub" in err and "--data xtd10-ko=FOLDER" in err
    folder, _ = xm3600_folder(tmp_path, n=12)
    assert cli(["bench", "--data", f"xtd10-ko={folder / 'ko'}", "--cache", "off"]) == 0
    assert "warning: xtd10-ko: XTD10's 1,000 images come from COCO 2014" in capsys.readouterr().err


def test_a_transformers_peer_loads_with_its_own_processor_and_is_scored(tmp_path):
    import peers
    from transformers import CLIPModel, CLIPProcessor

    folder = peers.write_tiny_clip(tmp_path / "tiny-clip")
    peer = encoders.open_encoder(f"hf:{folder}")
    assert peer.name == f"hf:{folder}" and peer.revision.startswith("sha256:")
    rows = data.open_data("scenes", scenes=20)
    figures = run.score(peer, rows, cache.EmbeddingCache(None), batch_size=8, progress=False)
    # The reference: transformers' own model and processor, used as their documentation shows.
    model, processor = CLIPModel.from_pretrained(folder), CLIPProcessor.from_pretrained(folder)
    texts, owner = scoring.text_queries(rows.captions, "first-caption")
    with torch.no_grad():
        t = model.get_text_features(**processor(text=texts, padding=True, return_tensors="pt"))
        i = model.get_image_features(**processor(images=rows.images(0, 20), return_tensors="pt"))
    t, i = (torch.nn.functional.normalize(x, dim=-1).numpy() for x in (t, i))
    expected = scoring.retrieval(t, i, owner)
    got = {r["metric"]: r["value"] for r in figures if r["setting"] == "first-caption"}
    for direction in expected:
        for k, value in expected[direction].items():
            assert got[f"{direction} {k}"] == pytest.approx(value, abs=1e-6)


@pytest.mark.parametrize(
    "model, package",
    [
        ("open_clip:xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k", "open-clip-torch"),
        ("mclip:M-CLIP/XLM-Roberta-Large-Vit-B-32", "multilingual-clip"),
    ],
)
def test_a_missing_peer_library_is_one_line_saying_what_to_install(model, package, capsys):
    assert cli(["bench", "--model", model, "--scenes", "10", "--cache", "off"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {model} needs the {package} package, which is not installed: pip install {package}"


class Counting:
    """An encoder that counts image batches and can be made to stop after some, as Ctrl-C would."""

    def __init__(self, model, stop_after=None):
        self.model, self.stop_after, self.batches = model, stop_after, 0
        self.name, self.revision = model.name, model.revision

    def encode_text(self, texts):
        return self.model.encode_text(texts)

    def encode_image(self, images):
        if self.stop_after is not None and self.batches == self.stop_after:
            raise KeyboardInterrupt
        self.batches += 1
        return self.model.encode_image(images)


def test_an_interrupted_run_resumes_and_a_second_task_encodes_no_image(tmp_path, mini):
    rows = data.open_data("scenes", scenes=40)
    store = cache.EmbeddingCache(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run.score(Counting(mini, stop_after=3), rows, store, batch_size=8, progress=False)
    resumed = Counting(mini)
    figures = run.score(resumed, rows, store, batch_size=8, progress=False)
    assert resumed.batches == 2  # 5 batches of 8, 3 saved before the interrupt
    fresh = run.score(mini, rows, cache.EmbeddingCache(None), batch_size=8, progress=False)
    assert [r["value"] for r in figures] == pytest.approx([r["value"] for r in fresh], abs=1e-6)
    again = Counting(mini)
    run.score(again, data.open_data("scenes", scenes=24), store, batch_size=8, progress=False)  # a prefix: cached
    assert again.batches == 0
    # A damaged batch file is encoded again, not trusted.
    damaged = next(tmp_path.glob("*/000000008-000000016.npy"))
    damaged.write_bytes(b"not an array")
    repaired = Counting(mini)
    assert [r["value"] for r in run.score(repaired, rows, store, batch_size=8, progress=False)] == pytest.approx(
        [r["value"] for r in fresh], abs=1e-6
    )
    assert repaired.batches == 1


def test_cli_help_a_scene_run_in_json_and_compare(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli(["bench", "--help"])
    assert "--compare" in capsys.readouterr().out
    argv = ["bench", "--model", "koclip-mini", "--data", "scenes", "--data", "scenes-objects", "--scenes", "30"]
    assert cli([*argv, "--cache", str(tmp_path / "c"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert re.search(r"scenes images: 100%.* 30/30", err)
    results = json.loads(out)["results"]
    settings = {(r["dataset"], r["setting"]) for r in results}
    assert settings == {
        ("scenes", "all-captions"),
        ("scenes", "first-caption"),
        *(("scenes-objects", name) for name in data.TEMPLATE_SETS),
    }
    top1 = {r["setting"]: r["value"] for r in results if r["metric"] == "top1"}
    assert min(top1.values()) > 0.5  # koclip-mini knows its colours and shapes (chance: 1/40)
    path = tmp_path / "mini.json"
    path.write_text(out)
    assert cli(["bench", "--compare", str(path), str(path)]) == 0
    table = capsys.readouterr().out
    assert table.count("| koclip-mini | scenes-objects (30) | ensemble |") == 1
    assert cli(["bench", "--compare", str(path), "--model", "koclip-mini"]) == 2
    assert "--compare prints saved results" in capsys.readouterr().err
    assert cli(["bench", "--data", "nonesuch=/tmp"]) == 2
    assert "'nonesuch' is not a benchmark name" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    assert cli(["bench", "--compare", str(tmp_path / "bad.json")]) == 2
    assert "is not a result file written by `bench --json`" in capsys.readouterr().err


def test_the_published_rows_carry_their_source():
    rows = report.published_records()
    assert {r["model"] for r in rows} >= {"xlm-roberta-base-ViT-B-32 (laion5b) [published]"}
    assert all(r["rule"] == report.PUBLISHED_SOURCE and r["setting"] == "first-caption" for r in rows)
