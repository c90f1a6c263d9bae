"""Triton model (embedded flavour): an exported encoder artifact run by ONNX Runtime or TorchScript
inside the Python backend. Inputs are ragged: requests of different lengths share one execute()."""

from __future__ import annotations

import json
import time

from structbert_serving import triton_io
from structbert_serving.encoder import EncoderSettings, RaggedEncoder, warm_up
from structbert_serving.params import get_param
from structbert_serving.runtime import load_runner


class TritonPythonModel:
    def initialize(self, args):
        config, params, self.dtypes = triton_io.setup(args)
        self.input_names = [i["name"] for i in config["input"]]
        device = get_param(params, "device", "auto")
        if args.get("model_instance_kind") == "CPU" and device == "auto":
            device = "cpu"
        runner = load_runner(
            triton_io.version_dir(args) / get_param(params, "artifact", "model.onnx"),
            input_names=self.input_names, output_names=list(self.dtypes), device=device,
            intra_op_threads=get_param(params, "intra_op_threads", 0),
            allow_spinning=get_param(params, "allow_spinning", False),
        )
        triton_io.log.info("%s runs on %s", args["model_name"], runner.device)
        # CPU: a single row keeps the cores busy, padding is pure waste; GPU: batching pays, but
        # padding a 15-token row to 512 does not (H100: 0.5 gave 1.6x the pairs/s of no bound)
        default_padding = 0.5 if runner.device == "cuda" else 0.1  # measured: loadtest/RESULTS.md
        max_padding = get_param(params, "max_padding", default_padding)
        self.encoder = RaggedEncoder(runner, self.input_names, EncoderSettings(
            max_tokens=get_param(params, "max_batch_tokens", 16384),
            max_rows=max(1, int(config.get("max_batch_size", 64))),
            max_padding=float("inf") if max_padding < 0 else max_padding,
            mask_groups=json.loads(get_param(params, "mask_groups", "{}")),
        ))
        if get_param(params, "warmup", True):
            started = time.perf_counter()
            warm_up(self.encoder, config["input"])
            triton_io.log.info("%s warmed up in %.2f s", args["model_name"], time.perf_counter() - started)

    def execute(self, requests):
        feeds = triton_io.per_request(
            requests, lambda r: {n: triton_io.input_array(r, n) for n in self.input_names})
        return triton_io.responses(triton_io.run_valid(feeds, self.encoder.run), self.dtypes)
