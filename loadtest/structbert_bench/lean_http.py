"""A lean client for Triton's HTTP/REST inference protocol (KServe v2 with Triton's binary tensor
extension), for the one-client overhead measurement: requests are encoded before the clock starts and
sent on one keep-alive socket, outputs come back as binary tensors. What remains on the clock is the
serving path and a ``sendall``/``recv`` pair, not a client library (tritonclient's own cost is
0.4-0.9 ms a request on a 2-core VM; issue 16 measured with a C load generator for the same reason).
"""

from __future__ import annotations

import json
import socket

import numpy as np

from structbert_client.datatypes import NUMPY as _DTYPES


class LeanHttpError(RuntimeError):
    """The server answered with an error status (the message is Triton's)."""


def decode_bytes(raw: bytes, count: int) -> np.ndarray:
    """A BYTES tensor in Triton's binary layout: each element a 4-byte little-endian length, then the bytes."""
    out, pos = [], 0
    for _ in range(count):
        n = int.from_bytes(raw[pos:pos + 4], "little")
        out.append(raw[pos + 4:pos + 4 + n])
        pos += 4 + n
    return np.array(out, dtype=object)


def decode_response(body: bytes, header_length: int | None) -> dict[str, np.ndarray]:
    """Outputs by name from a response body: the JSON header, then each binary output in order."""
    header = json.loads(body[:header_length] if header_length is not None else body)
    pos = header_length or len(body)
    outputs = {}
    for output in header.get("outputs", []):
        shape = [int(d) for d in output["shape"]]
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:  # JSON data (the server was not asked for binary)
            array = np.array(output["data"], dtype=object if output["datatype"] == "BYTES"
                             else _DTYPES[output["datatype"]])
        else:
            raw = body[pos:pos + size]
            pos += size
            array = (decode_bytes(raw, int(np.prod(shape))) if output["datatype"] == "BYTES"
                     else np.frombuffer(raw, dtype=_DTYPES[output["datatype"]]))
        outputs[output["name"]] = array.reshape(shape)
    return outputs


class LeanHttpClient:
    """``encode(row)`` once per request (strings as [1, 1] BYTES inputs), then ``infer(encoded)``."""

    def __init__(self, url: str, model: str, timeout_s: float = 120):
        host, port = url.rsplit(":", 1)
        self.model = model
        self._address = (host, int(port))
        self._timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._buffer = b""

    def __enter__(self) -> LeanHttpClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def encode(self, row: dict[str, str]) -> bytes:
        body = json.dumps({
            "inputs": [{"name": name, "shape": [1, 1], "datatype": "BYTES", "data": [text]} for name, text in row.items()],
            "parameters": {"binary_data_output": True},
        }, ensure_ascii=False).encode()
        head = (f"POST /v2/models/{self.model}/infer HTTP/1.1\r\nHost: {self._address[0]}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        return head.encode() + body

    def _connect(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.create_connection(self._address, timeout=self._timeout_s)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._buffer = b""
        return self._sock

    def _read(self, sock: socket.socket) -> None:
        chunk = sock.recv(1 << 16)
        if not chunk:
            self.close()
            raise ConnectionError("the server closed the connection")
        self._buffer += chunk

    def infer(self, encoded: bytes) -> dict[str, np.ndarray]:
        sock = self._connect()
        sock.sendall(encoded)
        while b"\r\n\r\n" not in self._buffer:
            self._read(sock)
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if "content-length" not in headers:  # Triton answers with a length; anything else is not a Triton reply
            self.close()
            raise LeanHttpError(f"no Content-Length in the answer: {lines[0]}")
        length = int(headers["content-length"])
        self._buffer = rest
        while len(self._buffer) < length:
            self._read(sock)
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "200":
            try:
                message = json.loads(body).get("error", body.decode(errors="replace"))
            except ValueError:
                message = body.decode(errors="replace")
            raise LeanHttpError(f"{' '.join(status[1:])}: {message}")
        if headers.get("connection", "").lower() == "close":
            self.close()
        header_length = headers.get("inference-header-content-length")
        return decode_response(body, int(header_length) if header_length is not None else None)
