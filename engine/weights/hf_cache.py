"""Finding model files in the local Hugging Face cache, and downloading them.

The cache lookup is done here, without huggingface_hub, so that models a
user already has load with the library absent and the network off. The
layout is the hub's: <cache>/models--ORG--NAME/refs/main holds a commit
hash, and snapshots/<hash>/ holds the files (links into blobs/).

Downloads go through huggingface_hub when it is installed. Before one starts,
a short connection probe checks that the hub can be reached at all, so that a
machine without a network fails in seconds rather than waiting on retries.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.request
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 3.0
_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


class HubUnavailable(Exception):
    """A download could not be attempted or did not finish; the message says why."""


def hub_cache_dir() -> Path:
    """The hub cache folder, chosen by the same variables huggingface_hub reads."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.path.expandvars(os.environ[variable])).expanduser()
    if os.environ.get("HF_HOME"):
        home = Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser()
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        home = Path(cache) / "huggingface"
    return home / "hub"


def repo_folder(repo_id: str, cache_dir: Path | None = None) -> Path:
    return (cache_dir or hub_cache_dir()) / ("models--" + repo_id.replace("/", "--"))


def cached_snapshot(repo_id: str, filenames: Sequence[str], cache_dir: Path | None = None) -> Path | None:
    """The cached snapshot folder of `repo_id` that holds every one of `filenames`, if any.

    The snapshot `refs/main` points at comes first; failing that (a partial
    download of a newer commit, or a cache copied without its refs), the most
    recent snapshot that is complete.
    """
    folder = repo_folder(repo_id, cache_dir)
    snapshots = folder / "snapshots"
    if not snapshots.is_dir():
        return None
    candidates: list[Path] = []
    ref = folder / "refs" / "main"
    if ref.is_file():
        candidates.append(snapshots / ref.read_text(encoding="utf-8").strip())
    others = [p for p in snapshots.iterdir() if p.is_dir() and p not in candidates]
    candidates += sorted(others, key=lambda p: p.stat().st_mtime, reverse=True)
    for snapshot in candidates:
        # is_file() follows the links into blobs/, so a dangling link does not count.
        if all((snapshot / name).is_file() for name in filenames):
            return snapshot
    return None


def offline_reason() -> str | None:
    """Why downloads are switched off by the environment, or None."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").strip().upper() in _TRUE_VALUES:
            return f"{variable}={os.environ[variable]} is set"
    return None


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def probe(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when a TCP connection to `endpoint`, or to the proxy set for it, opens within `timeout`; else why not.

    The hub client retries a failing request for about 20 s, hence this quick
    look first. It runs in a daemon thread because name resolution ignores
    socket timeouts and can stall for much longer on a machine with no network.
    """
    url = urlsplit(endpoint)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host = url.hostname or ""
    port = url.port or (80 if url.scheme == "http" else 443)
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{host} unreachable ({exc.strerror or exc})")

    thread = threading.Thread(target=connect, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"{host} did not answer within {timeout:g} s"


def download(repo_id: str, filenames: Sequence[str], tqdm_class: Any = None) -> Path:
    """Download `filenames` of `repo_id` into the hub cache and return their snapshot folder.

    `tqdm_class` draws the progress bars (huggingface_hub's default: tqdm on stderr).
    Raises HubUnavailable, saying why, when downloading is off, impossible or fails.
    """
    reason = offline_reason()
    if reason:
        raise HubUnavailable(f"download skipped: {reason}")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise HubUnavailable("download skipped: huggingface_hub is not installed "
                             "(pip install huggingface_hub)") from None
    endpoint = hub_endpoint()
    unreachable = probe(endpoint)
    if unreachable:
        raise HubUnavailable(f"download skipped: {unreachable}")
    paths = []
    for name in filenames:
        try:
            paths.append(Path(hf_hub_download(repo_id, name, endpoint=endpoint, cache_dir=hub_cache_dir(),
                                              tqdm_class=tqdm_class)))
        except Exception as exc:  # the hub raises many kinds (HTTP, disk, interrupted transfer)
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HubUnavailable(f"download of {repo_id}/{name} from {endpoint} failed: {detail}") from exc
    return paths[0].parent
