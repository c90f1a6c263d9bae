"""A ramping load shape for locust: add it to -f (``-f loadtest/locustfile.py,loadtest/ramp_shape.py``).

STRUCTBERT_RAMP="30:1,30:4,30:16,30:64" = (seconds:users) stages; the run stops after the last.
"""

from __future__ import annotations

import os

from locust import LoadTestShape


class RampShape(LoadTestShape):
    def __init__(self):
        super().__init__()
        spec = os.environ.get("STRUCTBERT_RAMP", "30:1,30:4,30:16,30:64")
        self.stages = [(float(s), int(u)) for s, u in (part.split(":") for part in spec.split(","))]

    def tick(self):
        elapsed = self.get_run_time()
        total = 0.0
        for seconds, users in self.stages:
            total += seconds
            if elapsed < total:
                return users, max(1, users)
        return None
