"""Locust load test over gRPC (tritonclient.grpc) for every public model.

gRPC must be made gevent-friendly before locust is imported, and the client closed in on_stop,
or locust hangs at exit:

    locust -f loadtest/locustfile_grpc.py --host grpc://127.0.0.1:8001 --headless -u 16 -r 4 --run-time 60s
"""

from __future__ import annotations

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from locustfile import TritonHttpUser  # noqa: E402


class GrpcUser(TritonHttpUser):
    protocol = "grpc"

    def _connect(self, url: str) -> list[str]:
        import tritonclient.grpc as triton

        self.triton = triton
        self.client = triton.InferenceServerClient(url)
        return [m.name for m in self.client.get_model_repository_index().models if m.state == "READY"]
