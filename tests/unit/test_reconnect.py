"""A restarted server is seen at once: gRPC's own reconnect backoff (1 s growing x1.6 to 120 s, +-20 %)
made a channel that had failed for a while fail fast long after the server was back (measured: down
60 s, seen 12 s late; in the gateway, down 20 s, 7 s late). The SDK caps it at ``max_backoff_s``, the
gateway's channels at 1 s. One down window for both (20 s: gRPC's next try would be ~6 s late)."""

from __future__ import annotations

import asyncio
import time
from concurrent import futures

import grpc
from tritonclient.utils import InferenceServerException

from structbert_client import StructBertClient
from structbert_gateway.backend import TritonBackend
from structbert_gateway.errors import ApiError
from structbert_serving.embedded_server import free_port

DOWN_S = 20.0


def test_the_client_and_the_gateway_see_a_restarted_server_within_their_caps():
    url = f"127.0.0.1:{free_port()}"
    client = StructBertClient(url, protocol="grpc", max_backoff_s=0.5, timeout_s=2)
    loop = asyncio.new_event_loop()
    backend = loop.run_until_complete(_backend(url))

    def client_sees() -> bool:
        try:
            client._client.is_server_live()
        except InferenceServerException as exc:
            return "UNAVAILABLE" not in str(exc.status())
        return True

    async def gateway_kind() -> str:
        try:
            await backend.embed(["好"])
        except ApiError as exc:
            return exc.kind
        return "ok"

    probes = {"client": client_sees, "gateway": lambda: loop.run_until_complete(gateway_kind()) != "unavailable"}
    try:
        started = time.monotonic()
        while time.monotonic() - started < DOWN_S:
            assert not any(probe() for probe in probes.values()), "nothing listens yet"
            time.sleep(0.5)
        server = grpc.server(futures.ThreadPoolExecutor(2))  # no services: every call UNIMPLEMENTED
        server.add_insecure_port(url)
        server.start()
        up, seen = time.monotonic(), {}
        try:
            while len(seen) < len(probes) and time.monotonic() - up < 15:
                for name, probe in probes.items():
                    if name not in seen and probe():
                        seen[name] = time.monotonic() - up
                time.sleep(0.1)
        finally:
            server.stop(None)
        assert set(seen) == set(probes), f"unseen after 15 s: {set(probes) - set(seen)}"
        assert max(seen.values()) < 2.0, seen
    finally:
        loop.run_until_complete(backend.close())
        loop.close()


async def _backend(url: str) -> TritonBackend:  # grpc.aio channels belong to the loop that makes them
    return TritonBackend(url, pool_size=2, timeout_s=2)
