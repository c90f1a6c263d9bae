"""Triton model (BLS): cross-encoder reranking.

QUERY (BYTES [batch, 1]) and PASSAGES (BYTES [batch, N]; requests with different N batch together),
optional TOP_N (INT32 [batch, 1]) -> SCORES (FP32 [batch, N], relevance in passage order),
RAW_SCORES (FP32 [batch, N], logit or log-odds) and ORDER (INT32 [batch, top_n], passage indices best
first). Each (query, passage) is one pair ``[CLS] query [SEP] passage [SEP]``, cut from the passage
only (``only_second``: the query survives); the pairs of every request in the dynamic batch go
through the encoder together (``bls.TokenPipeline``), scored with ``structbert_serving.reranking``.
"""

from __future__ import annotations

import numpy as np

from structbert_client import api
from structbert_serving import reranking, triton_io
from structbert_serving.bls import Parsed, TokenPipeline
from structbert_serving.errors import InputError
from structbert_serving.params import RerankingParams
from structbert_serving.texts import check_texts, decode_texts


class TritonPythonModel(TokenPipeline):
    params_type = RerankingParams  # export writes pair_truncation only_second: never cut the query
    encoder_output = "LOGITS"

    def parse(self, request) -> Parsed:
        queries = decode_texts(triton_io.input_array(request, api.QUERY), api.QUERY)
        check_texts(queries, api.QUERY, max_chars=self.max_chars)
        passages = triton_io.input_array(request, api.PASSAGES)
        if passages.ndim != 2 or passages.shape[0] != len(queries):
            raise InputError(f"{api.PASSAGES} must have shape [{len(queries)}, passages] (one row per {api.QUERY}), "
                             f"got {list(passages.shape)}")
        top_n = triton_io.input_array(request, api.TOP_N, required=False)
        wanted = sorted({int(x) for x in top_n.reshape(-1)}) if top_n is not None else [None]
        if len(wanted) > 1:
            raise InputError(f"{api.TOP_N} differs between the rows of one request ({wanted}); send one value")
        pairs, rows = [], []
        for query, row in zip(queries, passages):
            texts = decode_texts(row, api.PASSAGES)
            reranking.check_passages(texts, self.settings.max_passages, api.PASSAGES)
            check_texts(texts, api.PASSAGES, max_chars=self.max_chars)
            pairs.extend((query, text) for text in texts)
            rows.append(len(texts))
        top = reranking.check_top_n(wanted[0], rows[0], api.TOP_N)
        return Parsed([(f"{api.QUERY}/{api.PASSAGES}", pairs)], (rows, top))

    def finish(self, outputs, context):
        (logits,) = outputs
        rows, top = context
        raw = reranking.raw_scores(logits, self.settings.relevance_index).reshape(len(rows), rows[0])
        scores = reranking.sigmoid(raw)
        order = np.stack([reranking.ranking(row, top) for row in scores])
        return {api.SCORES: scores, api.RAW_SCORES: raw, api.ORDER: order}
