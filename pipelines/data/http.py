"""An httpx transport for ``file://`` URLs, so one client reads local and remote archives."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

import httpx


class OutsideSource(httpx.TransportError):
    """A request outside the source: another scheme or host (a redirect), or a file whose real
    path (symlinks resolved) is not under the source's root."""


class FileStream(httpx.SyncByteStream):
    """A file's bytes in chunks, so a reader can stop early without the file read whole."""

    CHUNK = 64 * 1024

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle

    def __iter__(self) -> Iterator[bytes]:
        """The file's bytes, one chunk at a time."""
        while chunk := self.handle.read(self.CHUNK):
            yield chunk

    def close(self) -> None:
        """Close the file (httpx calls this when the response is closed)."""
        self.handle.close()


class FileTransport(httpx.BaseTransport):
    """Answers GET on ``file:///…`` with 200 and the file's bytes, or 404 if it is missing;
    only for files under `root` once symlinks are resolved (a symlink out is refused)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root.resolve() if root is not None else None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Serve the file under the root that the request's path names (404 if absent)."""
        path = Path(unquote(urlparse(str(request.url)).path))
        if request.method != "GET":
            return httpx.Response(405, request=request)
        if self.root is not None and not path.resolve().is_relative_to(self.root):
            raise OutsideSource(f"{path} resolves outside the source {self.root}")
        try:
            handle = path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return httpx.Response(404, request=request)
        size = os.fstat(handle.fileno()).st_size
        return httpx.Response(
            200, stream=FileStream(handle), headers={"Content-Length": str(size)}, request=request
        )


def client_url(url: str) -> str:
    """`url` as the client must see it: httpx drops the scheme of ``file:///path`` (no host)
    when merging URLs, so local paths are addressed as ``file://localhost/path``."""
    return "file://localhost/" + url.removeprefix("file:///") if url.startswith("file:///") else url


def make_client(timeout: float, concurrency: int, source: str | None = None) -> httpx.Client:
    """An HTTP client for ``http(s)://`` and ``file://`` with a pool sized to `concurrency`.

    With `source`, every request (redirects included) must stay on the source's scheme, host
    and port, and ``file://`` reads stay under its directory: a redirect elsewhere — another
    host, ``file://`` — or a symlink out of the mirror is refused, never followed.
    """
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    origin = httpx.URL(client_url(source)) if source else None
    root = Path(unquote(origin.path)) if origin is not None and origin.scheme == "file" else None

    def same_origin(request: httpx.Request) -> None:
        if origin is None:
            return
        url = request.url
        if (url.scheme, url.host, url.port) != (origin.scheme, origin.host, origin.port):
            raise OutsideSource(
                f"refused {url.scheme}://{url.host}/…: outside the source "
                f"{origin.scheme}://{origin.host}",
                request=request,
            )

    return httpx.Client(
        timeout=timeout,
        limits=limits,
        follow_redirects=True,
        max_redirects=3,
        mounts={"file://": FileTransport(root)},
        event_hooks={"request": [same_origin]},
        headers={"User-Agent": "mlops-platform/0.1 (+archive fetcher)"},
    )
