"""Read a Triton model's ``parameters`` (from its config.pbtxt) with typed defaults in one place."""

from __future__ import annotations

import json
from typing import Any


def model_parameters(model_config: str | dict) -> dict[str, str]:
    config = json.loads(model_config) if isinstance(model_config, str) else model_config
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def get_param(params: dict[str, str], key: str, default: Any) -> Any:
    """``params[key]`` converted to the type of ``default``; the default when absent or blank."""
    raw = params.get(key, "")
    if raw == "":
        return default
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, (list, tuple)):
        return [int(x) for x in raw.split(",") if x.strip()]
    return raw
