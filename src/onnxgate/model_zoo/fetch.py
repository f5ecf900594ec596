"""Fetch zoo files into a content-addressed cache, checked against sha256 before use.

Downloads go to ``partial/<sha>.part`` and are renamed to ``sha256/<aa>/<sha>`` only once
complete and verified. An interrupted download resumes with an HTTP ``Range`` request
(in the same run after a retry, or in a later run from the kept ``.part``); connection
resets, timeouts and 5xx answers are retried with exponential backoff a bounded number
of times; a 404 fails that file only. A per-file ``fcntl`` lock lets two processes fetch
the same file at once without corrupting the cache: the second waits and reuses it.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from onnxgate._io import sha256_file
from onnxgate.errors import OnnxgateError

RETRIES = 4  # after the first attempt
BACKOFF_S = 0.5  # first wait; doubles each retry
TIMEOUT_S = 60.0
MAX_MANIFEST_BYTES = 64 * 1024**2
MAX_DOWNLOAD_BYTES = 16 * 1024**3  # when the manifest does not say how big a file is
CHUNK = 1 << 16
_URL_RE = re.compile(r"^(https?|file)://", re.IGNORECASE)


class FetchError(OnnxgateError):
    """One file could not be fetched (404, too many retries, checksum mismatch)."""


class ChecksumError(FetchError):
    """The downloaded bytes do not hash to the sha256 the manifest promises."""


class _Transient(Exception):
    """A failure worth retrying: connection reset, timeout, 5xx, truncated body."""


def default_cache_dir() -> Path:
    """``$ONNXGATE_CACHE``, else ``$XDG_CACHE_HOME/onnxgate``, else ``~/.cache/onnxgate``."""
    if os.environ.get("ONNXGATE_CACHE"):
        return Path(os.environ["ONNXGATE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "onnxgate"


def is_url(location: str) -> bool:
    return bool(_URL_RE.match(location))


def local_path(location: str) -> Path:
    """A plain path or a ``file://`` URL as a local path."""
    if location.lower().startswith("file://"):
        parsed = urllib.parse.urlparse(location)
        return Path(urllib.request.url2pathname(parsed.path))
    return Path(location).expanduser()


def resolve(manifest_location: str, ref: str) -> str:
    """Where ``ref`` (a manifest's ``model_path``) lives: URLs as they are, relative paths
    against the manifest's location (its URL or its directory)."""
    if is_url(ref) or os.path.isabs(ref):
        return ref
    if re.match(r"^https?://", manifest_location, re.IGNORECASE):
        return urllib.parse.urljoin(manifest_location, urllib.parse.quote(ref))
    base = local_path(manifest_location)
    base_dir = base if base.is_dir() else base.parent
    return str(base_dir / ref)


# -- HTTP ------------------------------------------------------------------------------


def _user_agent() -> str:
    from onnxgate import __version__

    return f"onnxgate/{__version__}"


def _open(url: str, *, start: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        if exc.code == 416:
            raise _RangeRefused() from None
        raise FetchError(f"HTTP {exc.code} {exc.reason} for {url}", "check the manifest's model_path") from None
    except urllib.error.URLError as exc:
        raise _Transient(f"{exc.reason}") from None
    except (ConnectionError, TimeoutError, http.client.HTTPException, OSError) as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from None


class _RangeRefused(Exception):
    """416: the kept partial file is no prefix the server can continue; start over."""


def _download_once(url: str, part: Path, *, limit: int, timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    if have > limit:
        part.unlink()
        have = 0
    try:
        resp = _open(url, start=have, timeout=timeout)
    except _RangeRefused:
        part.unlink(missing_ok=True)
        raise _Transient("server refused to resume (HTTP 416); starting over") from None
    with resp:
        resumed = have > 0 and resp.status == 206
        if resumed:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                raise _Transient(f"server resumed at the wrong offset ({resp.headers.get('Content-Range')!r})")
        else:
            have = 0
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        if expected is not None and have + expected > limit:
            raise FetchError(f"{url} is {have + expected} bytes, more than the {limit} the manifest allows", "check the manifest")
        written = 0
        with open(part, "ab" if resumed else "wb") as f:
            try:
                while chunk := resp.read1(CHUNK):  # read1: bytes received before a reset are kept
                    f.write(chunk)
                    written += len(chunk)
                    if have + written > limit:
                        raise FetchError(f"{url} sends more than the {limit} bytes the manifest allows", "check the manifest")
            except (ConnectionError, TimeoutError, http.client.HTTPException, OSError) as exc:
                raise _Transient(f"connection lost after {have + written} bytes ({type(exc).__name__})") from None
        if expected is not None and written < expected:
            raise _Transient(f"connection closed after {have + written} of {have + expected} bytes")


def _with_retries(url: str, action, *, retries: int, backoff: float) -> None:
    attempt = 0
    while True:
        try:
            action()
            return
        except _Transient as exc:
            if attempt >= retries:
                raise FetchError(
                    f"giving up on {url} after {attempt + 1} attempts: {exc}", "the server may be down; try again later"
                ) from None
            time.sleep(backoff * (2**attempt))
            attempt += 1


def download(
    location: str,
    part: Path,
    *,
    limit: int | None = None,
    retries: int = RETRIES,
    backoff: float = BACKOFF_S,
    timeout: float = TIMEOUT_S,
) -> None:
    """Fetch ``location`` (URL or path) into ``part``, resuming what ``part`` already holds."""
    limit = MAX_DOWNLOAD_BYTES if limit is None else limit
    if re.match(r"^https?://", location, re.IGNORECASE):
        _with_retries(location, lambda: _download_once(location, part, limit=limit, timeout=timeout), retries=retries, backoff=backoff)
        return
    src = local_path(location)
    if not src.is_file():
        raise FetchError(f"{str(src)!r} does not exist", "check the manifest's model_path and where the manifest is")
    if src.stat().st_size > limit:
        raise FetchError(f"{str(src)!r} is {src.stat().st_size} bytes, more than the {limit} the manifest allows", "check the manifest")
    with open(src, "rb") as s, open(part, "wb") as d:
        shutil.copyfileobj(s, d, CHUNK)


def download_bytes(url: str, *, retries: int = RETRIES, backoff: float = BACKOFF_S, timeout: float = TIMEOUT_S) -> bytes:
    """A small file (a manifest) into memory, with the same retries."""
    with tempfile.TemporaryDirectory(prefix="onnxgate-") as tmp:
        part = Path(tmp) / "download"
        download(url, part, limit=MAX_MANIFEST_BYTES, retries=retries, backoff=backoff, timeout=timeout)
        return part.read_bytes()


# -- the cache -------------------------------------------------------------------------


@dataclass
class Fetched:
    path: Path
    sha256: str
    hit: bool  # already in the cache: nothing was downloaded


@dataclass
class Cache:
    """``root/sha256/<aa>/<sha>`` blobs, ``root/partial/<sha>.part`` downloads, ``root/extracted/<sha>/`` trees."""

    root: Path
    retries: int = RETRIES
    backoff: float = BACKOFF_S
    timeout: float = TIMEOUT_S

    def blob(self, sha: str) -> Path:
        return self.root / "sha256" / sha[:2] / sha

    def lock(self, sha: str) -> contextlib.AbstractContextManager[None]:
        from onnxgate.model_zoo.manifest import locked

        return locked(self.root / "locks" / f"{sha}.lock")

    def fetch(self, location: str, *, sha256: str, size: int | None = None) -> Fetched:
        """The verified local copy of ``location``; downloads only if the cache lacks it."""
        blob = self.blob(sha256)
        if blob.is_file() and sha256_file(blob) == sha256:
            return Fetched(blob, sha256, hit=True)
        with self.lock(sha256):
            if blob.is_file():  # another process finished it while we waited, or it rotted
                if sha256_file(blob) == sha256:
                    return Fetched(blob, sha256, hit=True)
                blob.unlink()
            part = self.root / "partial" / f"{sha256}.part"
            part.parent.mkdir(parents=True, exist_ok=True)
            download(location, part, limit=size, retries=self.retries, backoff=self.backoff, timeout=self.timeout)
            actual = sha256_file(part)
            if actual != sha256:
                part.unlink(missing_ok=True)
                raise ChecksumError(
                    f"sha256 mismatch for {location}: the manifest says {sha256}, the download is {actual}; "
                    "the file was deleted",
                    "the file or the manifest changed; regenerate the manifest or report it to the publisher",
                )
            blob.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, blob)
        return Fetched(blob, sha256, hit=False)

    def extract(self, archive: Path, sha256: str, **limits: int) -> Path:
        """The archive's contents under ``root/extracted/<sha>/``, extracted once and safely."""
        from onnxgate.model_zoo.archive import safe_extract

        target = self.root / "extracted" / sha256
        if target.is_dir():
            return target
        with self.lock(sha256):
            if target.is_dir():
                return target
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{sha256[:12]}.", dir=target.parent))
            try:
                safe_extract(archive, tmp, **limits)
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return target
