"""Locust load test over HTTP (tritonclient.http, gevent-native) for every public model.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --headless -u 16 -r 4 \
        --run-time 60s --csv build/locust/run --html build/locust/run.html
    # ramping load: add the shape file
    locust -f loadtest/locustfile.py,loadtest/ramp_shape.py --host http://127.0.0.1:8000 --headless ...

STRUCTBERT_MODELS=sentence_similarity,zero_shot_classification picks the models (default: every
public model the server has loaded).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from locust import User, between, events, task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_data import Sampler

PUBLIC = ["text_embedding", "sentence_similarity", "pair_classification", "zero_shot_classification",
          "information_extraction"]
OUTPUTS = {"text_embedding": "EMBEDDING", "sentence_similarity": "SCORE", "pair_classification": "PROBS",
           "zero_shot_classification": "RESULT", "information_extraction": "RESULT"}


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
        wanted = [m for m in os.environ.get("STRUCTBERT_MODELS", ",".join(PUBLIC)).split(",") if m]
        self.models = [m for m in wanted if m in ready]
        if not self.models:
            raise RuntimeError(f"none of {wanted} is loaded on {url}")
        self.sampler = Sampler()

    def on_stop(self):
        self.client.close()

    def _inputs(self, model: str):
        tensors = []
        for name, values in self.sampler.inputs(model).items():
            array = np.array([[v.encode()] for v in values], dtype=object)
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
            self.client.infer(model, inputs, outputs=[self.triton.InferRequestedOutput(OUTPUTS[model])])
        except Exception as error:
            exc = error
        events.request.fire(request_type=self.protocol, name=model, response_time=(time.perf_counter() - start) * 1000,
                            response_length=0, exception=exc, context={})


class HttpUser(TritonHttpUser):
    pass
