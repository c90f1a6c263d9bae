"""Triton model: EMBEDDING_A, EMBEDDING_B (FP32) -> SCORE (FP32 cosine)."""

from __future__ import annotations

from structbert_serving import triton_io
from structbert_serving.errors import InputError
from structbert_serving.similarity import cosine


class TritonPythonModel:
    def initialize(self, args):
        self.dtypes = triton_io.output_dtypes(triton_io.model_config(args))

    def _score(self, request):
        a = triton_io.input_array(request, "EMBEDDING_A")
        b = triton_io.input_array(request, "EMBEDDING_B")
        if a.shape != b.shape:
            raise InputError(f"EMBEDDING_A {list(a.shape)} and EMBEDDING_B {list(b.shape)} differ in shape")
        return {"SCORE": cosine(a, b)[:, None]}

    def execute(self, requests):
        return triton_io.responses(triton_io.per_request(requests, self._score), self.dtypes)
