"""structbert-triton: the command-line application (export, serve)."""

from __future__ import annotations

__version__ = "0.1.0"
