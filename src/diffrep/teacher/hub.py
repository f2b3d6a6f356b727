"""Hugging Face ids (owner/name) as teachers, read from the local cache only: diffrep never downloads."""
from __future__ import annotations

import os
import re
from pathlib import Path

from diffrep.errors import UserError

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def is_hub_id(value: str) -> bool:
    """owner/name that is not a local path (a local folder of that name wins)."""
    return bool(_HUB_ID.fullmatch(value)) and not Path(value).exists()


def cache_dir() -> Path:
    """HF_HUB_CACHE (or HF_HOME/hub), read now rather than when huggingface_hub was imported."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path("~/.cache/huggingface/hub").expanduser()


def resolve(repo_id: str) -> Path:
    """The cached snapshot folder of a model repository; no network, so no time-out to wait for."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = cache_dir()
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        raise UserError(f"teacher {repo_id} is not a local path and not in the Hugging Face cache ({cache}; set "
                        f"HF_HUB_CACHE to use another); diffrep never downloads: run `hf download {repo_id}` "
                        f"(or `huggingface-cli download {repo_id}`) on a machine with network and copy its cache "
                        f"folder here") from None
