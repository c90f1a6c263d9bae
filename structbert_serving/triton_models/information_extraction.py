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

from structbert_client import api
from structbert_serving import triton_io, uie
from structbert_serving.params import UieParams
from structbert_serving.texts import check_texts, decode_texts


class TritonPythonModel:
    params_type = UieParams  # the parameters export writes for this model

    def initialize(self, args):
        _, params, self.dtypes = triton_io.setup(args)
        self.settings = settings = self.params_type.parse(params, model=args.get("model_name", ""))
        self.max_chars = settings.max_chars
        self.encoder, self.names, self.max_rows = (settings.encoder_model, settings.encoder_tensor_names,
                                                   settings.encoder_max_batch_size)
        self.cross = settings.cross_model
        self.tokenizer = uie.UieTokenizer(triton_io.version_dir(args) / "tokenizer.json",
                                          max_text_tokens=settings.max_text_tokens)

    def _parse(self, request) -> list[uie.Extraction]:
        texts = decode_texts(triton_io.input_array(request, api.TEXT), api.TEXT)
        check_texts(texts, api.TEXT, max_chars=self.max_chars)
        schemas = decode_texts(triton_io.input_array(request, api.SCHEMA), api.SCHEMA)
        prefix = triton_io.input_array(request, api.OUTPUT_ALL_PREFIX, required=False)
        prefix = [bool(x) for x in prefix.reshape(-1)] if prefix is not None else [False] * len(texts)
        return [uie.Extraction(text, uie.parse_schema(schemas[i]), prefix[i]) for i, text in enumerate(texts)]

    async def _call(self, model: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        wanted = ["HIDDEN"] if model == self.encoder else ["HEAD_LOGITS", "TAIL_LOGITS"]
        return await triton_io.infer_rows(model, feeds, wanted, names=self.names, max_rows=self.max_rows)

    def _tokenise(self, parsed: list[list[uie.Extraction]]) -> list:
        """Each request's texts, tokenised with offsets (a text over the limit fails its request)."""
        out = []
        for rows in parsed:
            texts = self.tokenizer.encode_texts([item.text for item in rows])
            out.append(next((t for t in texts if isinstance(t, Exception)), (rows, texts)))
        return out

    async def _extract(self, pending: list[tuple[list[uie.Extraction], list]]) -> list:
        """The schema walk for every text of every request at once (one encoder and one cross call
        per schema level)."""
        items = [item for rows, _ in pending for item in rows]
        encoded = [t for _, texts in pending for t in texts]
        await uie.extract(items, encoded, self.tokenizer,
                          lambda f: self._call(self.encoder, f), lambda f: self._call(self.cross, f))
        return [{api.RESULT: np.array([json.dumps(item.result(), ensure_ascii=False).encode() for item in rows],
                                    dtype=object).reshape(-1, 1)} for rows, _ in pending]

    async def execute(self, requests):
        parsed = triton_io.per_request(requests, self._parse)
        tokenised = triton_io.run_valid(parsed, self._tokenise)
        return triton_io.responses(await triton_io.run_valid_async(tokenised, self._extract), self.dtypes)
