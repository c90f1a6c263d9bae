"""Triton model (BLS): TEXT (BYTES [batch, 1]) -> EMBEDDING (FP32 [batch, hidden]).

Tokenises every text of the dynamic batch in one call and sends the rows to ``embedding_encoder``
(mean pooling and L2 normalisation are in its graph); a bounded queue refuses overload here.
"""

from __future__ import annotations

from structbert_client import api
from structbert_serving.bls import TokenPipeline


class TritonPythonModel(TokenPipeline):
    columns = (api.TEXT,)

    def finish(self, outputs, context):
        return {api.EMBEDDING: outputs[0]}
