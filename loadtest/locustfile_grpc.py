"""Locust load test over gRPC (tritonclient.grpc) for every public model.

gRPC must be made gevent-friendly before locust is imported, and the client closed in on_stop,
or locust hangs at exit:

    locust -f loadtest/locustfile_grpc.py --host grpc://127.0.0.1:8001 --headless -u 16 -r 4 --run-time 60s
"""

from __future__ import annotations

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

from structbert_bench.locust_users import GrpcMixin, TritonHttpUser  # noqa: E402


class GrpcUser(GrpcMixin, TritonHttpUser):
    pass
