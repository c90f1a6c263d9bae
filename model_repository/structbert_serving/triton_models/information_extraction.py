"""Triton model (BLS): SiameseUIE information extraction.

TEXT (one text per row), SCHEMA (JSON per row), optional OUTPUT_ALL_PREFIX -> RESULT (JSON list of
paths per row). Every text of every request in the dynamic batch is encoded once; each schema
level's hints (all types, prefixes, texts, requests) are encoded in one go and met with their
windows in the cross model, through ``async_exec`` calls that merge with other instances' calls in
the encoder's and cross model's dynamic batchers. No state survives a call.
"""

from __future__ import annotations

import json

import numpy as np

from structbert_serving import bls, triton_io, uie
from structbert_serving.params import get_param
from structbert_serving.texts import DEFAULT_MAX_CHARS, check_texts, decode_texts


class TritonPythonModel:
    def initialize(self, args):
        _, params, self.dtypes = triton_io.setup(args)
        self.max_chars = get_param(params, "max_chars", DEFAULT_MAX_CHARS)
        self.encoder, self.names, self.max_rows = bls.encoder_settings(params, "uie_encoder")
        self.cross = get_param(params, "cross_model", "uie_cross")
        self.tokenizer = uie.UieTokenizer(triton_io.version_dir(args) / "tokenizer.json",
                                          max_text_tokens=get_param(params, "max_text_tokens", uie.MAX_TEXT_TOKENS))

    def _parse(self, request) -> list[uie.Extraction]:
        texts = decode_texts(triton_io.input_array(request, "TEXT"), "TEXT")
        check_texts(texts, "TEXT", max_chars=self.max_chars)
        schemas = decode_texts(triton_io.input_array(request, "SCHEMA"), "SCHEMA")
        prefix = triton_io.input_array(request, "OUTPUT_ALL_PREFIX", required=False)
        prefix = [bool(x) for x in prefix.reshape(-1)] if prefix is not None else [False] * len(texts)
        return [uie.Extraction(text, uie.parse_schema(schemas[i]), prefix[i]) for i, text in enumerate(texts)]

    async def _call(self, model: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        wanted = ["HIDDEN"] if model == self.encoder else ["HEAD_LOGITS", "TAIL_LOGITS"]
        return await bls.infer_rows(model, feeds, wanted, names=self.names, max_rows=self.max_rows)

    async def execute(self, requests):
        parsed = triton_io.per_request(requests, self._parse)
        results: list = list(parsed)
        items, encoded, owners = [], [], []
        for r, rows in enumerate(parsed):
            if isinstance(rows, Exception):
                continue
            texts = self.tokenizer.encode_texts([item.text for item in rows])
            bad = next((t for t in texts if isinstance(t, Exception)), None)
            if bad is not None:
                results[r] = bad
                continue
            items.extend(rows)
            encoded.extend(texts)
            owners.extend([r] * len(rows))
        if items:
            try:
                await uie.extract(items, encoded, self.tokenizer,
                                  lambda f: self._call(self.encoder, f), lambda f: self._call(self.cross, f))
            except Exception as exc:  # a model call failed: the requests in this batch get the error
                for r in set(owners):
                    results[r] = exc
                return triton_io.responses(results, self.dtypes)
            per_request: dict[int, list[bytes]] = {}
            for r, item in zip(owners, items):
                per_request.setdefault(r, []).append(json.dumps(item.result(), ensure_ascii=False).encode())
            for r, rows in per_request.items():
                results[r] = {"RESULT": np.array(rows, dtype=object).reshape(-1, 1)}
        return triton_io.responses(results, self.dtypes)

