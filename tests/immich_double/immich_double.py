# SPDX-License-Identifier: GPL-3.0-or-later
"""Immich test double: a stand-in for the Immich server, for tests only.

The real Immich server (Node, PostgreSQL, Redis, machine learning) cannot run
on the test bed, so this double implements the part of Immich's HTTP API that
the proxy must carry and that `@immich/cli` and the apps call first:

  GET  /.well-known/immich            discovery document
  GET  /api/server/ping               {"res": "pong"}
  GET  /api/users/me                  needs x-api-key
  GET  /api/api-keys/me               needs x-api-key
  GET  /api/server/media-types
  POST /api/assets/bulk-upload-check  accepts unknown checksums, rejects known ones
  POST /api/assets                    multipart upload streamed to disk, SHA-1 checked
  GET  /api/socket.io/?EIO=4&transport=websocket   Engine.IO v4 / Socket.IO websocket

and test-only endpoints under /_double/ that say what the double received:

  ANY  /_double/echo                  method, path, headers and peer address as JSON
  GET  /_double/delay?seconds=N       answers after N seconds
  POST /_double/sink                  reads the body, answers its size and SHA-1
  GET  /_double/uploads               the uploads received so far
  GET  /_double/requests              method, path, Host and headers of the last 1000 requests received

Standard library only, so it runs inside the test containers on any Debian
python3. Every request is answered by a thread; bodies are never held in memory.
"""
from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import json
import os
import re
import socket
import ssl
import struct
import tempfile
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CHUNK = 1024 * 1024
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
API_KEY_HEADER = "x-api-key"

MEDIA_TYPES = {
    "image": [".avif", ".heic", ".heif", ".jpeg", ".jpg", ".png", ".webp", ".dng", ".tif", ".tiff", ".gif"],
    "video": [".3gp", ".avi", ".m4v", ".mkv", ".mov", ".mp4", ".mpg", ".webm"],
    "sidecar": [".xmp"],
}


class State:
    """What the double has received, shared by all request threads."""

    def __init__(self, name: str, upload_dir: str) -> None:
        self.name = name
        self.upload_dir = upload_dir
        self.lock = threading.Lock()
        self.uploads: list[dict] = []
        self.checksums: dict[str, str] = {}
        # What reached the double at all: a test can show that a request the
        # proxy must refuse (another Host name, say) never got here.
        self.requests: collections.deque = collections.deque(maxlen=1000)

    def record_upload(self, record: dict) -> str | None:
        with self.lock:
            duplicate_of = self.checksums.get(record["sha1"])
            if duplicate_of is None:
                self.checksums[record["sha1"]] = record["id"]
            self.uploads.append(record)
            return duplicate_of


class BodyReader:
    """Reads a request body, Content-Length or chunked, a piece at a time."""

    def __init__(self, rfile, headers) -> None:
        self.rfile = rfile
        self.chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        self.remaining = int(headers.get("Content-Length") or 0)
        self.chunk_left = 0
        self.done = not self.chunked and self.remaining == 0

    def read(self, size: int = CHUNK) -> bytes:
        if self.done:
            return b""
        if not self.chunked:
            data = self.rfile.read(min(size, self.remaining))
            self.remaining -= len(data)
            if not data or self.remaining == 0:
                self.done = True
            return data
        if self.chunk_left == 0:
            line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            self.chunk_left = int(line or b"0", 16)
            if self.chunk_left == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                self.done = True
                return b""
        data = self.rfile.read(min(size, self.chunk_left))
        self.chunk_left -= len(data)
        if self.chunk_left == 0:
            self.rfile.readline(16)
        if not data:
            self.done = True
        return data


class MultipartStream:
    """Streams multipart/form-data: fields into a dict, the file part to disk."""

    def __init__(self, reader: BodyReader, boundary: bytes) -> None:
        self.reader = reader
        self.delimiter = b"\r\n--" + boundary
        self.buffer = b"\r\n"

    def _fill(self) -> bool:
        data = self.reader.read()
        self.buffer += data
        return bool(data)

    def parts(self, file_sink):
        """Yields (name, is_file, value); a file part's bytes go to file_sink."""
        delimiter = self.delimiter
        while True:
            while delimiter not in self.buffer:
                if not self._fill():
                    return
            self.buffer = self.buffer[self.buffer.index(delimiter) + len(delimiter):]
            while len(self.buffer) < 2 and self._fill():
                pass
            if self.buffer.startswith(b"--"):
                return
            while b"\r\n\r\n" not in self.buffer:
                if not self._fill():
                    return
            raw_headers, self.buffer = self.buffer[2:].split(b"\r\n\r\n", 1)
            disposition = ""
            for line in raw_headers.decode("utf-8", "replace").split("\r\n"):
                key, _sep, value = line.partition(":")
                if key.strip().lower() == "content-disposition":
                    disposition = value.strip()
            is_file = "filename=" in disposition
            value = bytearray()
            emit = file_sink if is_file else value.extend
            while True:
                index = self.buffer.find(delimiter)
                if index >= 0:
                    emit(self.buffer[:index])
                    self.buffer = self.buffer[index:]
                    break
                keep = len(delimiter)
                if len(self.buffer) > keep:
                    emit(self.buffer[:-keep])
                    self.buffer = self.buffer[-keep:]
                if not self._fill():
                    return
            name = re.search(r'name="([^"]*)"', disposition)
            yield (name.group(1) if name else "", is_file, bytes(value))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without TCP_NODELAY the body waits for the client's delayed
    # ACK (40 ms a response on Linux); Node, which Immich runs on, sets it too
    disable_nagle_algorithm = True
    server_version = "ImmichDouble/1"
    state: State

    def log_message(self, fmt, *args):  # noqa: D401 - keep the journal quiet
        return

    # -- helpers ------------------------------------------------------------
    def _json(self, status: int, payload) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Immich-Double", self.state.name)
        self.end_headers()
        self.wfile.write(body)

    def _drain(self) -> tuple[int, str]:
        reader = BodyReader(self.rfile, self.headers)
        digest = hashlib.sha1()
        size = 0
        while True:
            data = reader.read()
            if not data:
                break
            size += len(data)
            digest.update(data)
        return size, digest.hexdigest()

    def _authorised(self) -> bool:
        if self.headers.get(API_KEY_HEADER):
            return True
        self._drain()
        self._json(401, {"message": "Authentication required", "statusCode": 401})
        return False

    def _route(self):
        if not self.path.startswith("/_double/requests"):
            with self.state.lock:
                self.state.requests.append({"method": self.command, "path": self.path,
                                            "host": self.headers.get("Host"),
                                            "headers": [list(pair) for pair in self.headers.items()]})
        return urlsplit(self.path)

    # -- verbs --------------------------------------------------------------
    def do_GET(self):
        url = self._route()
        path = url.path
        if path == "/.well-known/immich":
            return self._json(200, {"api": {"endpoint": "/api"}})
        if path == "/api/server/ping":
            return self._json(200, {"res": "pong"})
        if path == "/api/server/media-types":
            return self._json(200, MEDIA_TYPES)
        if path == "/api/users/me":
            if self._authorised():
                self._json(200, {"id": "00000000-0000-4000-8000-000000000001", "email": "admin@example.org",
                                 "name": "Admin", "isAdmin": True})
            return None
        if path == "/api/api-keys/me":
            if self._authorised():
                self._json(200, {"id": "00000000-0000-4000-8000-000000000002", "name": "double",
                                 "permissions": ["all"]})
            return None
        if path.startswith("/api/socket.io"):
            return self._websocket(url)
        if path == "/_double/echo":
            return self._echo()
        if path == "/_double/delay":
            seconds = float(parse_qs(url.query).get("seconds", ["0"])[0])
            time.sleep(seconds)
            return self._json(200, {"delayed": seconds, "backend": self.state.name})
        if path == "/_double/uploads":
            with self.state.lock:
                return self._json(200, list(self.state.uploads))
        if path == "/_double/requests":
            with self.state.lock:
                return self._json(200, list(self.state.requests))
        return self._json(404, {"message": f"Cannot GET {path}", "statusCode": 404})

    def do_POST(self):
        path = self._route().path
        if path == "/api/assets/bulk-upload-check":
            return self._bulk_upload_check()
        if path == "/api/assets":
            return self._upload()
        if path == "/_double/echo":
            return self._echo()
        if path == "/_double/sink":
            started = time.monotonic()
            size, sha1 = self._drain()
            return self._json(200, {"bytes": size, "sha1": sha1, "seconds": time.monotonic() - started,
                                    "backend": self.state.name})
        self._drain()
        return self._json(404, {"message": f"Cannot POST {path}", "statusCode": 404})

    do_PUT = do_POST

    def do_CONNECT(self):
        # never a tunnel: recorded (a proxy that passed it on is found out) and refused
        self._route()
        self._json(405, {"message": "CONNECT is not served", "statusCode": 405})

    # -- endpoints ------------------------------------------------------------
    def _echo(self):
        size, sha1 = self._drain()
        self._json(200, {
            "backend": self.state.name,
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "peer": self.client_address[0],
            "body_bytes": size,
            "body_sha1": sha1,
        })

    def _bulk_upload_check(self):
        if not self._authorised():
            return
        reader = BodyReader(self.rfile, self.headers)
        raw = b"".join(iter(reader.read, b""))
        try:
            assets = json.loads(raw or b"{}").get("assets", [])
        except ValueError:
            return self._json(400, {"message": "body is not JSON", "statusCode": 400})
        results = []
        for asset in assets:
            checksum = str(asset.get("checksum", ""))
            if re.fullmatch(r"[A-Za-z0-9+/]{27}=", checksum):
                checksum = base64.b64decode(checksum).hex()
            with self.state.lock:
                known = self.state.checksums.get(checksum.lower())
            if known:
                results.append({"id": asset.get("id"), "action": "reject", "reason": "duplicate",
                                "assetId": known, "isTrashed": False})
            else:
                results.append({"id": asset.get("id"), "action": "accept"})
        self._json(200, {"results": results})

    def _upload(self):
        if not self._authorised():
            return
        content_type = self.headers.get("Content-Type", "")
        match = re.search(r"boundary=(?:\"([^\"]+)\"|([^;]+))", content_type)
        if "multipart/form-data" not in content_type or not match:
            self._drain()
            return self._json(400, {"message": "multipart/form-data expected", "statusCode": 400})
        boundary = (match.group(1) or match.group(2)).strip().encode()
        digest = hashlib.sha1()
        size = 0
        started = time.monotonic()
        handle, tmp_path = tempfile.mkstemp(dir=self.state.upload_dir, prefix="upload-")
        fields: dict[str, str] = {}
        with os.fdopen(handle, "wb") as out:
            def sink(piece: bytes) -> None:
                nonlocal size
                size += len(piece)
                digest.update(piece)
                out.write(piece)

            stream = MultipartStream(BodyReader(self.rfile, self.headers), boundary)
            for name, is_file, value in stream.parts(sink):
                if not is_file:
                    fields[name] = value.decode("utf-8", "replace")
        sha1 = digest.hexdigest()
        if size == 0:
            os.unlink(tmp_path)
            return self._json(400, {"message": "assetData is missing", "statusCode": 400})
        asset_id = str(uuid.uuid4())
        claimed = self.headers.get("x-immich-checksum", "")
        if re.fullmatch(r"[A-Za-z0-9+/]{27}=", claimed):
            claimed = base64.b64decode(claimed).hex()
        expected_size = fields.get("fileSize")
        record = {
            "id": asset_id,
            "backend": self.state.name,
            "bytes": size,
            "sha1": sha1,
            "checksum_header": claimed or None,
            "checksum_ok": (claimed.lower() == sha1) if claimed else None,
            "size_ok": (int(expected_size) == size) if expected_size and expected_size.isdigit() else None,
            "seconds": round(time.monotonic() - started, 3),
            "fields": fields,
            "path": tmp_path,
        }
        if claimed and not record["checksum_ok"]:
            os.unlink(tmp_path)
            record["path"] = None
            with self.state.lock:
                self.state.uploads.append(record)
            return self._json(400, {"message": "checksum does not match the uploaded file", "statusCode": 400})
        duplicate_of = self.state.record_upload(record)
        if duplicate_of:
            os.unlink(tmp_path)
            return self._json(200, {"id": duplicate_of, "status": "duplicate"})
        return self._json(201, {"id": asset_id, "status": "created"})

    # -- websocket (RFC 6455) carrying Engine.IO v4 / Socket.IO v5 -----------
    def _websocket(self, url):
        query = parse_qs(url.query)
        key = self.headers.get("Sec-WebSocket-Key")
        upgrade = self.headers.get("Upgrade", "").lower()
        if upgrade != "websocket" or not key or query.get("transport") != ["websocket"]:
            return self._json(400, {"code": 3, "message": "Bad request: websocket upgrade expected",
                                    "upgrade_header": upgrade or None})
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(HTTPStatus.SWITCHING_PROTOCOLS)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("X-Immich-Double", self.state.name)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        sid = uuid.uuid4().hex[:20]
        self._ws_send("0" + json.dumps({"sid": sid, "upgrades": [], "pingInterval": 25000,
                                        "pingTimeout": 20000, "maxPayload": 1000000}))
        self.connection.settimeout(120)
        try:
            while True:
                opcode, payload = self._ws_recv()
                if opcode == 0x8:
                    self._ws_send(payload, opcode=0x8)
                    return
                if opcode == 0x9:
                    self._ws_send(payload, opcode=0xA)
                    continue
                text = payload.decode("utf-8", "replace")
                if text == "2":
                    self._ws_send("3")
                elif text.startswith("40"):
                    self._ws_send("40" + json.dumps({"sid": uuid.uuid4().hex[:20]}))
                elif text.startswith("42"):
                    # echo Socket.IO events back, so a client can prove two-way traffic
                    self._ws_send(text)
        except (OSError, ConnectionError, struct.error):
            return

    def _ws_send(self, data, opcode: int = 0x1) -> None:
        payload = data.encode() if isinstance(data, str) else data
        header = bytes([0x80 | opcode])
        if len(payload) < 126:
            header += bytes([len(payload)])
        elif len(payload) < 65536:
            header += bytes([126]) + struct.pack("!H", len(payload))
        else:
            header += bytes([127]) + struct.pack("!Q", len(payload))
        self.wfile.write(header + payload)
        self.wfile.flush()

    def _ws_recv(self) -> tuple[int, bytes]:
        head = self.rfile.read(2)
        if len(head) < 2:
            raise ConnectionError("websocket closed by the client")
        first, second = head
        opcode = first & 0x0F
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self.rfile.read(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self.rfile.read(8))[0]
        mask = self.rfile.read(4) if second & 0x80 else b"\0\0\0\0"
        data = self.rfile.read(length)
        return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a proxy opening upstream connections under load would have SYNs
    # dropped and retried a second later; Node's (Immich's) is 511
    request_queue_size = 511

    def server_bind(self):
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        super().server_bind()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2283)
    parser.add_argument("--name", default=None, help="name reported in answers (default: the port)")
    parser.add_argument("--upload-dir", default=None)
    parser.add_argument("--tls-cert", default=None, help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--tls-key", default=None, help="the key of --tls-cert (PEM)")
    args = parser.parse_args()
    upload_dir = args.upload_dir or tempfile.mkdtemp(prefix="immich-double-")
    os.makedirs(upload_dir, exist_ok=True)
    Handler.state = State(args.name or f"double-{args.port}", upload_dir)
    server = Server((args.listen, args.port), Handler)
    if args.tls_cert:
        # An Immich behind its own TLS (an https:// backend), for the proxy's verification of it.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
