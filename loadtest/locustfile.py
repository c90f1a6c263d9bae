"""Locust load test over HTTP (tritonclient.http, gevent-native) for every public model.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --headless -u 16 -r 4 \
        --run-time 60s --csv build/locust/run --html build/locust/run.html
    # ramping load: add the shape file
    locust -f loadtest/locustfile.py,loadtest/ramp_shape.py --host http://127.0.0.1:8000 --headless ...

STRUCTBERT_MODELS=sentence_similarity,zero_shot_classification picks the models (default: every
public model the server has loaded).
"""

from __future__ import annotations

from structbert_bench.locust_users import TritonHttpUser


class HttpUser(TritonHttpUser):
    pass
