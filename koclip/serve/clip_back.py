"""clip-retrieval's back-end protocol, as clip_retrieval/clip_back.py (2.45) answers it, so that its web
front end and `ClipClient` work against KoCLIP galleries unchanged.

  GET  /indices-list   the gallery names
  POST /knn-service    {text | image (base64) | image_url | embedding_input, modality, num_images,
                        num_result_ids, indice_name, deduplicate, ...}
                       → [{caption, url?, image (base64 JPEG), id, similarity}, ...]
  POST /metadata       {ids, indice_name} → [{id, metadata: {caption, url?, image}}, ...]

As clip-back does: text is used when it is not empty, else an image or its URL, else the embedding;
`num_result_ids` rows are searched, `num_images` of them (the first) carry metadata; `deduplicate`
drops every row whose image embedding is within 0.94 cosine of a better-ranked one, found as
connected components; `indice_name` defaults to the first gallery.

Accepted and ignored, since nothing here provides them: `use_mclip` (the text tower is the model's
own), `use_safety_model`, `use_violence_detector`, `aesthetic_score` and `aesthetic_weight`. The
answer's X-KoCLIP-Ignored header names those a request set.

Galleries hold image embeddings only, so `modality` "text" (clip-back's caption index) is refused.
"""

from __future__ import annotations

import base64
from collections import deque
from typing import Any

import numpy as np

from koclip.errors import InvalidInputError
from koclip.search.exact import Hit
from koclip.search.gallery import Gallery
from koclip.serve.service import Query, SearchService, whole

DEDUP_THRESHOLD = 0.94  # clip-back's get_non_uniques
IGNORED = ("use_mclip", "use_safety_model", "use_violence_detector", "aesthetic_score", "aesthetic_weight")
DEFAULT_NUM_IMAGES = 100  # clip-back's KnnService.query


def ignored(body: dict[str, Any]) -> list[str]:
    """The options of `body` that ask for something this service does not do."""
    return [key for key in IGNORED if body.get(key) not in (None, False, "", 0)]


def query_of(service: SearchService, body: dict[str, Any]) -> Query:
    """The query a /knn-service body asks for, in clip-back's order of precedence."""
    text = body.get("text")
    if text is not None and text != "":
        return service.text_query(text)
    if body.get("image") is not None or body.get("image_url") is not None:
        return service.image_query(body.get("image"), body.get("image_url"))
    if body.get("embedding_input") is not None:
        return service.embedding_query(body["embedding_input"])
    raise InvalidInputError("send one of text, image (base64), image_url and embedding_input")


def duplicates(vectors: np.ndarray) -> set[int]:
    """Positions of rows within DEDUP_THRESHOLD of a better-ranked row, through chains of such rows
    (connected components, as clip-back groups them): all but the best of each group."""
    close = (vectors @ vectors.T) >= DEDUP_THRESHOLD
    seen: set[int] = set()
    dropped: set[int] = set()
    for start in range(len(vectors)):
        if start in seen:
            continue
        seen.add(start)
        todo = deque([start])
        while todo:
            node = todo.popleft()
            for other in np.flatnonzero(close[node]):
                if int(other) not in seen:
                    seen.add(int(other))
                    dropped.add(int(other))
                    todo.append(int(other))
    return dropped


def _metadata(opened: Gallery, index: int) -> dict[str, Any]:
    """A row's metadata as clip-back's columns: caption, url (a source on the web), image (base64 JPEG)."""
    row = SearchService.describe(opened, index)
    out: dict[str, Any] = {}
    if "caption" in row:
        out["caption"] = row["caption"]
    source = row.get("source")
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        out["url"] = source
    thumbnail = opened.thumbnail(index)
    if thumbnail is not None:
        out["image"] = base64.b64encode(thumbnail).decode("ascii")
    return out


def knn(service: SearchService, body: Any) -> list[dict[str, Any]]:
    """The answer to a /knn-service request body."""
    if not isinstance(body, dict):
        raise InvalidInputError("the request body must be a JSON object")
    limit = service.limits.max_results
    num_images = whole(body.get("num_images", DEFAULT_NUM_IMAGES), "num_images", 1, limit)
    num_result_ids = whole(body.get("num_result_ids", num_images), "num_result_ids", 1, limit)
    name = body.get("indice_name") or service.default_gallery()
    if body.get("modality", "image") != "image":
        raise InvalidInputError(
            f"gallery {str(name)[:100]!r} holds image embeddings only; search it with modality 'image'"
        )
    opened = service.gallery(name)
    hits: list[Hit] = service.search(opened, query_of(service, body), max(num_result_ids, num_images))
    if body.get("deduplicate", False) and hits:
        vectors = np.asarray(opened.vectors[[hit.index for hit in hits]], np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        dropped = duplicates(vectors)
        hits = [hit for position, hit in enumerate(hits) if position not in dropped]
    results = []
    for rank, hit in enumerate(hits[:num_result_ids]):
        result = _metadata(opened, hit.index) if rank < num_images else {}
        result["id"] = hit.index
        result["similarity"] = hit.score
        results.append(result)
    return results


def metadata(service: SearchService, body: Any) -> list[dict[str, Any]]:
    """The answer to a /metadata request body: each id's metadata."""
    if not isinstance(body, dict):
        raise InvalidInputError("the request body must be a JSON object")
    ids = body.get("ids")
    if not isinstance(ids, list):
        raise InvalidInputError("ids must be a list of row numbers")
    whole(len(ids), "the number of ids", 0, service.limits.max_ids)
    name = body.get("indice_name") or service.default_gallery()
    opened = service.gallery(name)
    rows = [service.row(opened, row, name) for row in ids]
    return [{"id": row, "metadata": _metadata(opened, row)} for row in rows]
