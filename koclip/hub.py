"""Finding a model's files: a local folder, the bundled model, the Hub cache, or a download.

Every failure ends in `ModelUnavailableError` / `UnknownModelError` with a message that says
what is missing, where it was looked for, and how to get it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from pathlib import Path

import requests
from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
)

from koclip import registry
from koclip.errors import ModelUnavailableError, UnknownModelError
from koclip.registry import ModelInfo

WEIGHT_FILES = [
    "config.json",
    "preprocessor_config.json",
    "flax_model.msgpack",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*.safetensors",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "pytorch_model-*.bin",
]
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"]


@dataclasses.dataclass(frozen=True)
class Resolved:
    """What `resolve` made of a model name: the name to show, the local checkpoint folder, and the registry entry
    (None for an unregistered folder or Hub id)."""

    name: str
    directory: Path
    info: ModelInfo | None  # None for an unregistered folder or Hub id


def offline() -> bool:
    """Whether the Hugging Face Hub is off limits: HF_HUB_OFFLINE as set now, or as huggingface_hub read it at
    import."""
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return value.upper() in ("1", "ON", "YES", "TRUE") or constants.HF_HUB_OFFLINE


def reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face Hub answers now, never waiting over `timeout` seconds."""
    answered: list[bool] = []

    def probe() -> None:
        try:
            requests.head(constants.ENDPOINT, timeout=timeout)
            answered.append(True)
        except requests.RequestException:
            pass

    # A thread bounds the wait: name resolution ignores the request timeout and can hang for long.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered)


def cache_dir() -> str:
    """The Hugging Face cache folder: HF_HUB_CACHE as set now, else huggingface_hub's default."""
    # Read at each call, not at import as huggingface_hub does, so HF_HUB_CACHE set later counts.
    return os.environ.get("HF_HUB_CACHE", constants.HF_HUB_CACHE)


def _how_to_get(name: str) -> str:
    return (
        f"To get it: on a machine with internet, run `python -m koclip download {name}` "
        f"(it fills the Hugging Face cache, {cache_dir()}), then copy that cache here or set HF_HUB_CACHE to it; "
        "or pass a local folder holding the checkpoint to koclip.load. "
        "`koclip-mini` ships with the package and always works offline."
    )


def _how_to_download(is_offline: bool) -> str:
    """The advice of the download command itself, which must not send its user back to it."""
    retry = (
        "if this machine can reach the Hub, or a Hub mirror (set HF_ENDPOINT to its address), unset "
        "HF_HUB_OFFLINE and run this command again"
        if is_offline
        else "check this machine's connection to the Hub, or set HF_ENDPOINT to the address of a Hub mirror it "
        "can reach, and run this command again"
    )
    return (
        f"To get it: {retry}; or run this command on a machine with internet access, then copy the Hugging Face "
        f"cache folder it fills there into {cache_dir()} here, or set HF_HUB_CACHE here to the copied folder."
    )


def cached(repo_id: str, patterns: list[str]) -> Path | None:
    """The snapshot of `repo_id` in the Hugging Face cache, or None; never downloads."""
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, cache_dir=cache_dir(), local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError):
        return None


def fetch(repo_id: str, patterns: list[str], *, name: str | None = None, downloading: bool = False) -> Path:
    """A local snapshot of `repo_id`: from the cache if it is there, else downloaded.

    `downloading`: the caller is the download command, whose advice on failure differs."""
    local = cached(repo_id, patterns)
    if local is not None:
        return local
    if offline():
        advice = _how_to_download(True) if downloading else _how_to_get(name or repo_id)
        raise ModelUnavailableError(
            f"{repo_id} is not in the Hugging Face cache ({cache_dir()}) and HF_HUB_OFFLINE is set, "
            f"so it was not downloaded. {advice}"
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, cache_dir=cache_dir(), etag_timeout=10))
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        raise ModelUnavailableError(f"the Hub has no accessible repository {repo_id}: {type(exc).__name__}") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError) as exc:
        reason = _unreachable_reason(exc)
        advice = _how_to_download(False) if downloading else _how_to_get(name or repo_id)
        raise ModelUnavailableError(
            f"{repo_id} is not in the Hugging Face cache ({cache_dir()}) and the Hub could not be reached "
            f"({reason}). {advice}"
        ) from None


def _unreachable_reason(exc: Exception) -> str:
    """Why the Hub could not be reached, in a few words (huggingface_hub's own messages run long)."""
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return f"{constants.ENDPOINT} answered HTTP {exc.response.status_code}"
    if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
        return f"no connection to {constants.ENDPOINT}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}" if str(exc) else type(exc).__name__


def is_cached(repo_id: str) -> bool:
    """Whether the Hugging Face cache holds `repo_id`'s config.json; never downloads."""
    return cached(repo_id, ["config.json"]) is not None


def resolve(name_or_path: str | os.PathLike, *, downloading: bool = False) -> Resolved:
    """Turn a short name, a Hub id or a folder into a folder holding config.json and weights."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        return Resolved(path.name, path, None)
    info = registry.lookup(text)
    if info is not None and info.path is not None:
        if not (info.path / "config.json").is_file():
            raise ModelUnavailableError(
                f"{info.name} should ship inside the package at {info.path}, but that folder has no config.json. "
                "Reinstall koclip, or rebuild it with the training command in the README."
            )
        return Resolved(info.name, info.path, info)
    if info is not None:
        return Resolved(info.name, fetch(info.repo_id, WEIGHT_FILES, name=info.name, downloading=downloading), info)
    if text.count("/") == 1 and not path.exists() and not text.startswith((".", "/", "~")):
        return Resolved(text, fetch(text, WEIGHT_FILES, downloading=downloading), None)
    known = ", ".join(registry.MODELS)
    raise UnknownModelError(
        f"{text!r} is not a known model name ({known}), a Hugging Face Hub id (owner/name), or an existing folder"
    )


def tokenizer_dir(resolved: Resolved, *, downloading: bool = False) -> Path:
    """The registry's tokenizer for a named model; else the folder's own, else klue/roberta-large's."""
    info = resolved.info
    if info is not None and info.tokenizer is not None:
        return fetch(info.tokenizer, TOKENIZER_FILES, name=resolved.name, downloading=downloading)
    if any((resolved.directory / f).is_file() for f in ("tokenizer.json", "vocab.txt")):
        return resolved.directory
    if info is not None:  # a bundled model must ship its tokenizer
        raise ModelUnavailableError(f"{resolved.directory} has no tokenizer.json or vocab.txt")
    return fetch(registry.KLUE_TOKENIZER, TOKENIZER_FILES, name=resolved.name, downloading=downloading)


def download(name: str) -> list[Path]:
    """Fetch a model and its tokenizer into the cache (the `download` command)."""
    info = registry.lookup(name)
    if info is not None and info.path is not None:
        return [resolve(name).directory]
    resolved = resolve(name, downloading=True)
    return [resolved.directory, tokenizer_dir(resolved, downloading=True)]


def revision(directory: Path) -> str:
    """The Hub commit of a snapshot folder in the Hugging Face cache; for any other folder, a digest
    of its weight and configuration files, so that other weights under the same name tell apart."""
    if directory.parent.name == "snapshots":
        return directory.name
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*")):
        if path.suffix in (".msgpack", ".safetensors", ".bin", ".json") and path.is_file():
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    return "sha256:" + digest.hexdigest()[:16]
