"""structbert-triton's HTTP gateway: OpenAI-, text-embeddings-inference- and Cohere/Jina-compatible
routes in front of the Triton model repository (``python -m structbert_gateway``; started by
``structbert-triton serve``)."""

from __future__ import annotations
