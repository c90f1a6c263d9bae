"""Triton model: TEXT (BYTES) -> INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS (INT64, per request padded).

Pair mode (parameter ``text_inputs: "TEXT_A,TEXT_B"``): ``[CLS] a [SEP] b [SEP]`` with token types.
"""

from __future__ import annotations

from structbert_serving import triton_io
from structbert_serving.errors import InputError
from structbert_serving.params import get_param
from structbert_serving.texts import DEFAULT_MAX_CHARS, check_texts, decode_texts
from structbert_serving.tokenization import TextTokenizer


class TritonPythonModel:
    def initialize(self, args):
        _, params, self.dtypes = triton_io.setup(args)
        self.max_chars = get_param(params, "max_chars", DEFAULT_MAX_CHARS)
        self.text_inputs = get_param(params, "text_inputs", "TEXT").split(",")
        self.tokenizer = TextTokenizer(
            triton_io.version_dir(args) / "tokenizer.json",
            max_length=get_param(params, "max_length", 512),
            overlength=get_param(params, "overlength", "truncate"),
            length_buckets=get_param(params, "length_buckets", []),
            pair_truncation=get_param(params, "pair_truncation", "longest_first"),
        )

    def _texts(self, request):
        columns = []
        for name in self.text_inputs:
            texts = decode_texts(triton_io.input_array(request, name), name)
            check_texts(texts, name, max_chars=self.max_chars)
            columns.append(texts)
        if len(columns) == 1:
            return columns[0]
        if len(columns[0]) != len(columns[1]):
            raise InputError(f"{self.text_inputs[0]} and {self.text_inputs[1]} have different batch sizes")
        return list(zip(columns[0], columns[1]))

    def execute(self, requests):
        decoded = triton_io.per_request(requests, self._texts)
        valid = [texts for texts in decoded if not isinstance(texts, Exception)]
        encoded = iter(self.tokenizer.encode_many(valid, "/".join(self.text_inputs)))
        results = []
        for texts in decoded:
            if isinstance(texts, Exception):
                results.append(texts)
                continue
            batch = next(encoded)
            results.append(batch if isinstance(batch, Exception) else {
                "INPUT_IDS": batch.input_ids, "ATTENTION_MASK": batch.attention_mask,
                "TOKEN_TYPE_IDS": batch.token_type_ids,
            })
        return triton_io.responses(results, self.dtypes)
