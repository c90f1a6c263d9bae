"""Locust users for every public model (imported by ``loadtest/locustfile*.py``; importing this
module imports locust, which monkey-patches the process: only locustfiles import it)."""

from __future__ import annotations

import os
import time

import numpy as np
from locust import User, between, events, task

from structbert_client.api import PUBLIC_MODELS

from .workloads import Sampler


class TritonHttpUser(User):
    abstract = True
    wait_time = between(0.0, 0.05)
    protocol = "http"

    def _connect(self, url: str) -> list[str]:
        """Create self.triton / self.client; return the names of the READY models."""
        import tritonclient.http as triton

        self.triton = triton
        self.client = triton.InferenceServerClient(url, connection_timeout=60, network_timeout=120)
        return [m["name"] for m in self.client.get_model_repository_index() if m.get("state") == "READY"]

    def on_start(self):
        url = self.host.split("://", 1)[-1].rstrip("/")
        ready = self._connect(url)
        wanted = [m for m in os.environ.get("STRUCTBERT_MODELS", ",".join(PUBLIC_MODELS)).split(",") if m]
        self.models = [m for m in wanted if m in ready]
        if not self.models:
            raise RuntimeError(f"none of {wanted} is loaded on {url}")
        self.sampler = Sampler()

    def on_stop(self):
        self.client.close()

    def _inputs(self, model: str):
        tensors = []
        for name, values in self.sampler.inputs(model).items():
            array = np.array([[v.encode() for v in values]], dtype=object)  # one row: [1, values]
            t = self.triton.InferInput(name, list(array.shape), "BYTES")
            t.set_data_from_numpy(array)
            tensors.append(t)
        return tensors

    @task
    def infer(self):
        model = self.models[int(time.monotonic_ns()) % len(self.models)]
        inputs = self._inputs(model)
        start = time.perf_counter()
        exc = None
        try:
            self.client.infer(model, inputs, outputs=[self.triton.InferRequestedOutput(PUBLIC_MODELS[model].outputs[0])])
        except Exception as error:
            exc = error
        events.request.fire(request_type=self.protocol, name=model, response_time=(time.perf_counter() - start) * 1000,
                            response_length=0, exception=exc, context={})


class GrpcMixin:
    """The same user over gRPC (call ``grpc.experimental.gevent.init_gevent()`` before locust is imported)."""

    protocol = "grpc"

    def _connect(self, url: str) -> list[str]:
        import tritonclient.grpc as triton

        self.triton = triton
        self.client = triton.InferenceServerClient(url)
        return [m.name for m in self.client.get_model_repository_index().models if m.state == "READY"]
