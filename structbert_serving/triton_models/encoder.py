"""Triton model (embedded flavour): an exported encoder artifact run by ONNX Runtime or TorchScript
inside the Python backend. Inputs are ragged: requests of different lengths share one execute().

Where the public models run this artifact in their own stubs (embedding, pair classification,
zero-shot), export marks the encoder ``lazy``: it loads its runtime session on its first request
only, so a model nobody calls directly holds no second copy of the weights (nor, on a GPU, a
CUDA context)."""

from __future__ import annotations

import time

from structbert_serving import triton_io
from structbert_serving.encoder import encoder_from_params, warm_up
from structbert_serving.params import EncoderModelParams


class TritonPythonModel:
    params_type = EncoderModelParams  # the parameters export writes for this model

    def initialize(self, args):
        config, params, self.dtypes = triton_io.setup(args)
        self.settings = self.params_type.parse(params, model=args.get("model_name", ""))
        self.input_names = [i["name"] for i in config["input"]]
        self.encoder = None
        self._config, self._args = config, args
        if self.settings.lazy:
            triton_io.log.info("%s loads its artifact on its first request", args["model_name"])
        else:
            self._load()

    def _load(self):
        config, args, settings = self._config, self._args, self.settings
        self.encoder = encoder_from_params(
            triton_io.version_dir(args) / settings.artifact,
            input_names=self.input_names, output_names=list(self.dtypes), runtime=settings.runtime,
            max_rows=int(config.get("max_batch_size", 64)), cpu_instance=args.get("model_instance_kind") == "CPU")
        triton_io.log.info("%s runs on %s", args["model_name"], self.encoder.runner.device)
        if settings.runtime.warmup:
            started = time.perf_counter()
            warm_up(self.encoder, config["input"], budget_length=settings.runtime.budget_warmup_length)
            triton_io.log.info("%s warmed up in %.2f s", args["model_name"], time.perf_counter() - started)

    def execute(self, requests):
        if self.encoder is None:
            self._load()
        feeds = triton_io.per_request(
            requests, lambda r: {n: triton_io.input_array(r, n) for n in self.input_names})
        return triton_io.responses(triton_io.run_valid(feeds, self.encoder.run), self.dtypes)
