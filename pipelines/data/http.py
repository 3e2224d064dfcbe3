"""An httpx transport for ``file://`` URLs, so one client reads local and remote archives."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx


class FileTransport(httpx.BaseTransport):
    """Answers GET on ``file:///…`` with 200 and the file's bytes, or 404 if it is missing."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Serve the file under the root that the request's path names (404 if absent)."""
        path = Path(unquote(urlparse(str(request.url)).path))
        if request.method != "GET":
            return httpx.Response(405, request=request)
        try:
            content = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return httpx.Response(404, request=request)
        return httpx.Response(
            200, content=content, headers={"Content-Length": str(len(content))}, request=request
        )


def client_url(url: str) -> str:
    """`url` as the client must see it: httpx drops the scheme of ``file:///path`` (no host)
    when merging URLs, so local paths are addressed as ``file://localhost/path``."""
    return "file://localhost/" + url.removeprefix("file:///") if url.startswith("file:///") else url


def make_client(timeout: float, concurrency: int) -> httpx.Client:
    """An HTTP client for ``http(s)://`` and ``file://`` with a pool sized to `concurrency`."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.Client(
        timeout=timeout,
        limits=limits,
        follow_redirects=True,
        mounts={"file://": FileTransport()},
        headers={"User-Agent": "mlops-platform/0.1 (+archive fetcher)"},
    )
