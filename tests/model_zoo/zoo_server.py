"""A real HTTP file server on 127.0.0.1 for the zoo tests, with faults to inject per path.

Faults are consumed one per request, in order: ``"503"``, ``"404"``, ``"reset:N"``
(send the headers and N bytes of the body, then reset the connection), ``"wrong"``
(serve the file with its bytes flipped), ``"slow"`` (send in small chunks, slowly),
``"trickle"`` (one byte every half second).
Range requests (``bytes=N-``) are honoured with 206. Every request is logged.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class ZooServer:
    root: Path
    faults: dict[str, list[str]] = field(default_factory=dict)
    log: list[tuple[str, str | None, int]] = field(default_factory=list)  # (path, Range header, status)
    httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def requests_for(self, suffix: str) -> list[tuple[str, str | None, int]]:
        return [r for r in self.log if r[0].endswith(suffix)]


def _handler(server: ZooServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?")[0].lstrip("/")
            rng = self.headers.get("Range")
            queue = server.faults.get(path) or []
            fault = queue.pop(0) if queue else None
            if fault in ("503", "404"):
                server.log.append((path, rng, int(fault)))
                body = b"injected\n"
                self.send_response(int(fault))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            f = server.root / path
            if not f.is_file():
                server.log.append((path, rng, 404))
                self.send_error(404)
                return
            data = f.read_bytes()
            if fault == "wrong":
                data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
            start = 0
            if rng and rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[len("bytes="):-1])
            if start >= len(data) and start:
                server.log.append((path, rng, 416))
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206 if start else 200
            server.log.append((path, rng, status))
            self.send_response(status)
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            body = data[start:]
            if fault and fault.startswith("reset:"):
                n = int(fault.split(":")[1])
                self.wfile.write(body[:n])
                self.wfile.flush()
                time.sleep(0.2)  # let the client read what was sent before the reset discards it
                # RST instead of FIN: the client sees "connection reset by peer"
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            if fault == "trickle":  # one byte every 0.5 s: never idle long enough for a read timeout
                for i in range(len(body)):
                    try:
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(0.5)
                return
            if fault == "slow":
                for i in range(0, len(body), 256):
                    self.wfile.write(body[i:i + 256])
                    self.wfile.flush()
                    time.sleep(0.01)
                return
            self.wfile.write(body)

    return Handler


def start(root: Path) -> ZooServer:
    server = ZooServer(Path(root))
    server.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    server.httpd.daemon_threads = True
    threading.Thread(target=server.httpd.serve_forever, daemon=True).start()
    return server


def stop(server: ZooServer) -> None:
    if server.httpd is not None:
        server.httpd.shutdown()
        server.httpd.server_close()
