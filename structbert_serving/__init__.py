"""Server-side library for structbert-triton's Python-backend models.

Everything here is importable without a Triton server (no ``triton_python_backend_utils``), so the
logic is unit-tested directly; ``triton_models/*.py`` are the thin Triton adapters over it.
"""

from __future__ import annotations

from structbert_client import __version__  # noqa: F401 - the one version (pyproject reads it too)
