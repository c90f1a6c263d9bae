"""Server-side library for structbert-triton's Python-backend models.

Everything here is importable without a Triton server (no ``triton_python_backend_utils``), so the
logic is unit-tested directly; ``triton_models/*.py`` are the thin Triton adapters over it.
"""

from __future__ import annotations

__version__ = "0.1.0"
