"""One gallery being built: its inputs cut into chunks, each decoded (pixels, thumbnails, metadata),
encoded and saved under `OUT/.partial/` so that a stopped run resumes, then assembled into the gallery
files with `manifest.json` written last. The engines (koclip.search.indexing) run the chunks."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from koclip import domain, units
from koclip.api import KoCLIP
from koclip.atomic import open_inside, write_atomic
from koclip.errors import GalleryError, InvalidImageError, KoCLIPError
from koclip.images import open_image
from koclip.search import gallery, index_files, tuning
from koclip.search.exact import ADD_ROWS
from koclip.search.sources import Key, Source

THUMB_SIDE = 256
THUMB_QUALITY = 85
PARTIAL = ".partial"
MAX_SKIPPED_LISTED = 1_000  # unreadable inputs the manifest names (it counts them all), keeping it small
THUMBNAIL_NUMBER = re.compile(re.escape(gallery.THUMBS) + r"/(\d+)\.jpg")  # the names thumbnail_name gives


def thumbnail_name(position: int) -> str:
    """The gallery-relative path of the thumbnail of the image at `position`, e.g. thumbs/0000042.jpg."""
    return f"{gallery.THUMBS}/{position:07d}.jpg"


def thumbnail_jpeg(image: Image.Image) -> bytes:
    """A small JPEG of `image`, at most THUMB_SIDE pixels a side, to show beside results."""
    small = image.copy()
    small.thumbnail((THUMB_SIDE, THUMB_SIDE))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=THUMB_QUALITY)
    return buffer.getvalue()


@dataclass(frozen=True)
class Decoder:
    """Turns a batch of (position, key) into pixels, thumbnails and metadata; unreadable images
    are kept as rows with `ok` False, zero pixels and the reason in `record`."""

    source: Source
    transform: Any  # the model's image preprocessing (`KoCLIP.image_transform`)
    pixel_shape: tuple[int, ...]
    # For a model trained on generated scenes: mark the images unlike them (koclip.domain).
    check_domain: bool = False

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        positions = [int(p) for p in batch["position"]]
        keys = batch["key"].tolist()
        ok = np.zeros(len(keys), bool)
        unlike = np.zeros(len(keys), bool)
        records, thumbs, images = [], [], []
        for row, (position, key) in enumerate(zip(positions, keys)):
            try:
                raw, extra = self.source.read(key)
                image = open_image(raw)
            except InvalidImageError as exc:
                records.append(json.dumps({"source": key, "reason": str(exc)}, ensure_ascii=False))
                thumbs.append(b"")
                continue
            ok[row] = True
            unlike[row] = self.check_domain and domain.scene_likeness(image) < domain.THRESHOLD
            record = {
                "source": key,
                "width": image.width,
                "height": image.height,
                **extra,
                "thumbnail": thumbnail_name(position),
            }
            records.append(json.dumps(record, ensure_ascii=False))
            thumbs.append(thumbnail_jpeg(image))
            images.append(image)
        pixels = np.zeros((len(keys), *self.pixel_shape), np.float32)
        if images:
            pixels[ok] = self.transform(images)
        return {
            "position": np.array(positions, np.int64),
            "ok": ok,
            "unlike": unlike,
            "record": np.array(records, object),
            "thumb": np.array(thumbs, object),
            "pixels": pixels,
        }


def encode(model: KoCLIP, batch: dict[str, np.ndarray]) -> np.ndarray:
    """Embeddings for the readable rows of a decoded batch; zeros for the others."""
    vectors = np.zeros((len(batch["ok"]), model.dim), np.float32)
    if batch["ok"].any():
        vectors[batch["ok"]] = model.encode_pixels(batch["pixels"][batch["ok"]])
    return vectors


def remove(path: Path) -> None:
    """Delete a file or a folder, if it is there."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


class Job:
    """One gallery being built: its chunks, which of them are done, and the final assembly."""

    def __init__(self, out: Path, keys: Sequence[Key], batch_size: int, identity: dict[str, Any], first: int = 0):
        self.out = out
        self.partial = out / PARTIAL
        self.keys = list(keys)
        self.batch_size = batch_size
        self.identity = identity
        self.first = first  # the position of the first key: thumbnails are numbered from it

    @classmethod
    def start(
        cls, out: str | os.PathLike, keys: Sequence[Key], batch_size: int, identity: dict[str, Any], first: int = 0
    ) -> Job:
        """Prepare `out`, keeping the finished chunks of an interrupted run of the same job. The keys take the
        positions `first`, `first` + 1, … (an append numbers its thumbnails after the gallery's, which its
        `identity` names)."""
        # The inputs' digest: a folder whose files changed since the interrupted run starts over.
        digest = hashlib.sha256(json.dumps(list(keys), ensure_ascii=False).encode()).hexdigest()[:16]
        job = cls(Path(out), keys, batch_size, {**identity, "batch_size": batch_size, "inputs": digest}, first)
        if (job.out / gallery.MANIFEST).exists():
            raise gallery.occupied(job.out)
        if job.out.is_dir() and any(job.out.iterdir()) and not job.partial.is_dir():
            raise GalleryError(f"{job.out} is not empty and is not a gallery; choose another --out")
        stamp = job.partial / "job.json"
        if job.partial.is_dir() and (not stamp.is_file() or json.loads(stamp.read_text()) != job.identity):
            print(f"{job.out}: the unfinished run there used other settings; starting over", file=sys.stderr)
            shutil.rmtree(job.partial)
            remove(job.out / gallery.THUMBS)
        (job.out / gallery.THUMBS).mkdir(parents=True, exist_ok=True)
        job.partial.mkdir(exist_ok=True)
        write_atomic(stamp, json.dumps(job.identity, sort_keys=True).encode())
        return job

    @property
    def chunk_count(self) -> int:
        """How many chunks of batch_size keys the job has (the last may be shorter)."""
        return -(-len(self.keys) // self.batch_size)

    def chunk_length(self, index: int) -> int:
        """How many keys chunk `index` holds."""
        return min(self.batch_size, len(self.keys) - index * self.batch_size)

    def chunk(self, index: int) -> dict[str, np.ndarray]:
        """The (position, key) batch of chunk `index`, as the `Decoder` takes it."""
        start = index * self.batch_size
        keys = self.keys[start : start + self.batch_size]
        return {"position": self.first + np.arange(start, start + len(keys)), "key": np.array(keys)}

    def chunk_of(self, positions: np.ndarray) -> np.ndarray:
        """The number of the chunk that holds each of `positions`."""
        return (positions - self.first) // self.batch_size

    def _chunk_file(self, index: int, suffix: str) -> Path:
        return self.partial / f"{index:06d}{suffix}"

    def pending(self) -> list[int]:
        """The numbers of the chunks not finished yet, in order."""
        # The .json file is written after the chunk's vectors and thumbnails: it marks it done.
        return [i for i in range(self.chunk_count) if not self._chunk_file(i, ".json").is_file()]

    def commit(self, index: int, batch: dict[str, np.ndarray]) -> None:
        """Save a finished chunk: rows in position order, with a `vector` column."""
        ok = batch["ok"]
        for position, thumb in zip(batch["position"][ok], batch["thumb"][ok]):
            (self.out / thumbnail_name(int(position))).write_bytes(thumb)
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(batch["vector"][ok], np.float32))
        write_atomic(self._chunk_file(index, ".npy"), buffer.getvalue())
        records = [json.loads(r) for r in batch["record"]]
        done = {
            "rows": [r for r, good in zip(records, ok) if good],
            "skipped": [r for r, good in zip(records, ok) if not good],
            "unlike_training": int(batch["unlike"].sum()),
        }
        write_atomic(self._chunk_file(index, ".json"), json.dumps(done, ensure_ascii=False).encode())

    def finish(
        self,
        model: KoCLIP,
        dtype: str,
        source: dict[str, Any],
        ann_threshold: int,
        model_path: str | None = None,
        memory_budget: int = tuning.DEFAULT_BUDGET,
        target_recall: float = tuning.TARGET_RECALL,
        log: Callable[[str], None] = lambda message: None,
        base: gallery.Gallery | None = None,
        already_held: int = 0,
    ) -> dict[str, Any]:
        """Assemble the gallery files from the chunks, choose its search index (`search_index`), then write the
        manifest.

        With `base`, an opened gallery, the result is that gallery grown: its rows first, unchanged and in order,
        then the chunks' rows, with its thumbnails carried over (`carry_thumbnails`); the manifest's `appended`
        records how many rows were added, how many inputs the gallery held already (`already_held`) and what was
        done to the index. Its `skipped` lists the unreadable inputs of this run's source.
        """
        rows: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        unlike = 0
        for i in range(self.chunk_count):
            done = json.loads(self._chunk_file(i, ".json").read_text(encoding="utf-8"))
            rows += done["rows"]
            skipped += done["skipped"]
            unlike += done.get("unlike_training", 0)
        if not rows:
            first = skipped[0]
            raise KoCLIPError(
                f"none of the {len(skipped)} {'new ' if base else ''}inputs could be read as an image (the first, "
                f"{first['source']}: {first['reason']}); "
                + ("the gallery is unchanged" if base else "no gallery was written")
            )
        before = base.metadata if base is not None else []
        if base is not None:
            carry_thumbnails(base, self.out)
        tmp = self.out / (gallery.VECTORS + ".tmp")
        vectors = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(len(before) + len(rows), model.dim))
        for start in range(0, len(before), ADD_ROWS):  # a slice at a time: the old vectors may be memory-mapped
            stop = min(start + ADD_ROWS, len(before))
            vectors[start:stop] = base.vectors[start:stop]
        start = len(before)
        for i in range(self.chunk_count):
            part = np.load(self._chunk_file(i, ".npy"), allow_pickle=False)
            vectors[start : start + len(part)] = part
            start += len(part)
        vectors.flush()
        del vectors
        os.replace(tmp, self.out / gallery.VECTORS)
        rows = before + rows
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        write_atomic(self.out / gallery.METADATA, lines.encode())
        remove(self.out / gallery.INDEX_DIR)
        final = np.load(self.out / gallery.VECTORS, mmap_mode="r", allow_pickle=False)
        chosen, how = search_index(
            self.out,
            final,
            lambda held: caption_vectors(model, [rows[i] for i in held]),
            ann_threshold,
            memory_budget,
            target_recall,
            log,
            base.manifest if base is not None else None,
        )
        del final
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        manifest = gallery.new_manifest(
            model,
            len(rows),
            dtype,
            chosen["kind"] if chosen else gallery.EXACT,
            model_path=model_path,
            index_tuning=chosen,
            created=base.manifest.get("created", now) if base is not None else now,
            source=source,
            skipped=skipped[:MAX_SKIPPED_LISTED],
            skipped_count=len(skipped),
        )
        if not domain.trained_on_photos(model):  # images unlike the generated scenes the model knows
            manifest["unlike_training"] = unlike + (base.manifest.get("unlike_training", 0) if base else 0)
        if base is not None:
            added = len(rows) - len(before)
            manifest["appended"] = {"created": now, "added": added, "already_held": already_held, "index": how}
        write_atomic(self.out / gallery.MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2).encode())
        shutil.rmtree(self.partial)
        return manifest


def carry_thumbnails(base: gallery.Gallery, out: Path) -> None:
    """Give the gallery folder `out` the thumbnails of the rows of `base`, under the same names: hard links, or
    copies where the file system has none. Only regular files under thumbs/, reached without a symbolic link, are
    carried (a crafted row could name vectors.npy or a link out of the gallery); a row whose thumbnail is none of
    them keeps its name and, as in `base`, shows no thumbnail."""
    for row in base.metadata:
        name = row["thumbnail"]
        if not name.startswith(gallery.THUMBS + "/"):
            continue
        try:
            opened = open_inside(base.path, name)
        except OSError:
            continue
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        remove(target)  # a finish run again after a crash
        with opened:
            try:
                os.link(base.path / name, target, follow_symlinks=False)
            except OSError:
                data = opened.read(gallery.MAX_THUMBNAIL_BYTES + 1)
                if len(data) <= gallery.MAX_THUMBNAIL_BYTES:  # a larger one is never shown
                    target.write_bytes(data)


def next_position(base: gallery.Gallery) -> int:
    """The position from which rows added to `base` number their thumbnails: after every thumbs/<number>.jpg its
    rows name, so that no new thumbnail takes an old one's name."""
    numbers = (THUMBNAIL_NUMBER.fullmatch(str(row["thumbnail"])) for row in base.metadata)
    return 1 + max((int(match[1]) for match in numbers if match), default=-1)


def search_index(
    out: Path,
    vectors: np.ndarray,
    texts_of: Callable[[np.ndarray], np.ndarray],
    ann_threshold: int,
    memory_budget: int,
    target_recall: float,
    log: Callable[[str], None],
    before: dict[str, Any] | None = None,
) -> tuple[dict[str, Any] | None, str]:
    """Choose the search index of the gallery `vectors` and save it in the gallery folder `out`; returns its
    tuning, for the manifest's index_tuning (None for a gallery searched exactly without measuring), and which of
    EXACT_SEARCH, TUNED, RETUNED and REBUILT (tuning's) happened.

    Galleries under `ann_threshold` rows (and tuning.MIN_ROWS) are searched exactly. Others get the index
    `tuning.choose` measures fastest at `target_recall` within `memory_budget` (`texts_of(rows)` embeds held-out
    rows' captions as queries), with the row count it was measured at as tuned_count; except a gallery grown from
    one whose manifest (`before`) records a tuning: while it has at most tuning.RETUNE_GROWTH times the rows its
    index was tuned at, and that index still fits the budget, the index is rebuilt on every row with the kind and
    parameters chosen then, and tuned_count is kept.
    """
    count, dim = vectors.shape
    if count < max(ann_threshold, tuning.MIN_ROWS):
        return None, tuning.EXACT_SEARCH
    how, tuned = tuning.TUNED, tuning.tuned_count(before) if before is not None else None
    if tuned is not None:
        earlier, kind = before["index_tuning"], before["index"]
        memory = tuning.estimate(kind, count, dim, earlier["params"]) if kind != gallery.EXACT else 0
        if count > tuning.RETUNE_GROWTH * tuned:
            log(f"{count:,} rows, over {tuning.RETUNE_GROWTH} times the {tuned:,} its index was tuned at: retuning")
            how = tuning.RETUNED
        elif memory > memory_budget:
            log(
                f"its {kind} index would need about {units.size_text(memory)} for {count:,} rows, over the "
                f"{units.size_text(memory_budget)} budget: retuning"
            )
            how = tuning.RETUNED
        else:
            kept = f"rebuilding its {kind} index with the parameters chosen then" if kind != gallery.EXACT else ""
            log(
                f"{count:,} rows, within {tuning.RETUNE_GROWTH} times the {tuned:,} its index was tuned at: "
                + (kept or "keeping the exact search chosen then")
            )
            chosen = {**earlier, "kind": kind, "tuned_count": tuned}
            if kind != gallery.EXACT:
                index = tuning.rebuild(vectors, kind, earlier["params"])
                index_files.save(index, out)
                chosen.update(params=index.params(), memory_bytes=index.memory())
            return chosen, tuning.REBUILT
    log(
        f"choosing a search index for {count:,} rows (memory budget {units.size_text(memory_budget)}, "
        f"target recall@10 {target_recall})"
    )
    choice = tuning.choose(vectors, memory_budget, target_recall, log=log, texts_of=texts_of)
    if choice.index is not None:
        index_files.save(choice.index, out)
    log(f"chose {choice.describe()}")
    return {**choice.manifest(), "tuned_count": count}, how


def caption_vectors(model: KoCLIP, rows: list[dict[str, Any]]) -> np.ndarray:
    """Text embeddings of the rows' captions (rows without one are left out): queries like a visitor's."""
    captions = [row["caption"] for row in rows if isinstance(row.get("caption"), str) and row["caption"].strip()]
    return model.encode_text(captions) if captions else np.zeros((0, model.dim), np.float32)
