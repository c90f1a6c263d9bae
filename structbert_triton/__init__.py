"""structbert-triton: the command-line application (export, serve)."""

from __future__ import annotations

from structbert_client import __version__  # noqa: F401 - the one version (pyproject reads it too)
