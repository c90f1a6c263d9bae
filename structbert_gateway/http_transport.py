"""Inference over Triton's KServe v2 HTTP endpoint on plain asyncio connections (keep-alive, a small
pool): no client threads, outputs in Triton's binary tensor extension (exact float32).

An alternative to gRPC (``--triton-protocol http``): measured here in isolation, a call through
``grpc.aio`` costs about 1.0 ms of CPU and this one 0.3 ms, with a p50 0.6-1.2 ms lower (grpc's
completion-queue thread hands every answer to the event loop; on a busy 2-core machine that hand-off
is what costs).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import numpy as np

from structbert_client.datatypes import datatype_of

from .errors import ApiError
from .wire import from_raw

_HEADER_LENGTH = "inference-header-content-length"
_STATUS_CODES = {400: "StatusCode.INVALID_ARGUMENT", 404: "StatusCode.NOT_FOUND", 429: "StatusCode.UNAVAILABLE",
                 503: "StatusCode.UNAVAILABLE", 504: "StatusCode.DEADLINE_EXCEEDED"}


class HttpError(Exception):
    """Triton answered with an error (its JSON ``{"error": ...}``), in the SDK's status vocabulary."""

    def __init__(self, message: str, status: str):
        super().__init__(message)
        self._status = status

    def status(self) -> str:
        return self._status

    def message(self) -> str:
        return str(self)


def _json_value(array: np.ndarray) -> list:
    if array.dtype == object:
        return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in array.reshape(-1)]
    return array.reshape(-1).tolist()


class HttpTransport:
    def __init__(self, url: str, *, pool_size: int = 4, timeout_s: float = 60.0,
                 headers: dict[str, str] | None = None):
        host, _, port = url.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        self.timeout_s = timeout_s
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._pool_size = pool_size

    async def _connection(self):
        while self._idle:
            reader, writer = self._idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self.host, self.port)

    def _release(self, conn) -> None:
        if len(self._idle) < self._pool_size * 16:
            self._idle.append(conn)
        else:
            conn[1].close()

    async def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        body = json.dumps({
            "inputs": [{"name": n, "shape": list(a.shape), "data": _json_value(a),
                        "datatype": datatype_of(a)}
                       for n, a in inputs.items()],
            "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in outputs]},
            ensure_ascii=False).encode()
        head = (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n{self.extra}\r\n").encode()
        try:
            conn = await asyncio.wait_for(self._connection(), self.timeout_s)
        except (OSError, asyncio.TimeoutError) as exc:
            raise HttpError(f"failed to connect to Triton at {self.host}:{self.port}: {exc}",
                            "StatusCode.UNAVAILABLE") from None
        reader, writer = conn
        try:
            status, headers, data = await asyncio.wait_for(self._exchange(reader, writer, head + body), self.timeout_s)
        except asyncio.TimeoutError:
            writer.close()
            raise
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            writer.close()
            raise HttpError(f"the connection to Triton failed: {exc!r}", "StatusCode.UNAVAILABLE") from None
        self._release(conn)
        if status != 200:
            try:
                message = json.loads(data).get("error", "")
            except ValueError:
                message = data.decode(errors="replace")
            raise HttpError(message, _STATUS_CODES.get(status, "StatusCode.INTERNAL"))
        split = int(headers.get(_HEADER_LENGTH, len(data)))
        header = json.loads(data[:split])
        result, offset = {}, split
        for out in header["outputs"]:
            size = out.get("parameters", {}).get("binary_data_size")
            if size is None:
                raise ApiError("backend", f"Triton returned {out['name']} without binary data")
            result[out["name"]] = from_raw(out["datatype"], out["shape"], data[offset: offset + size])
            offset += size
        return {name: result[name] for name in outputs}

    @staticmethod
    async def _exchange(reader, writer, request: bytes) -> tuple[int, dict[str, str], bytes]:
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            raise ValueError("Triton closed the connection")
        status = int(status_line.split()[1])
        headers = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await reader.readline()
                    break
                chunks.append(await reader.readexactly(size))
                await reader.readline()
            return status, headers, b"".join(chunks)
        return status, headers, await reader.readexactly(int(headers.get("content-length", "0")))

    async def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()
