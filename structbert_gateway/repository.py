"""What the gateway reads from a local model repository (optional): which public models it holds,
their parameters (max length, truncation policy, labels), and the server's own tokenizer, so that
``usage.prompt_tokens`` counts the tokens the server actually runs (after its truncation).

Without a local repository the gateway asks Triton which public models are ready, and reports 0
prompt tokens (the tokenizer lives in the repository)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from structbert_client import api
from structbert_serving.params import DEFAULT_MAX_BATCH_TOKENS, DEFAULT_MAX_LENGTH

log = logging.getLogger(__name__)


@dataclass
class ModelInfo:
    name: str
    params: dict[str, str] = field(default_factory=dict)
    instances: int = 1

    def param(self, key: str, default: str = "") -> str:
        return self.params.get(key, default) or default

    @property
    def max_length(self) -> int:
        return int(self.param("max_length", str(DEFAULT_MAX_LENGTH)))

    @property
    def max_batch_tokens(self) -> int:
        """Padded tokens per encoder run: the in-process encoder's (embedded flavour), else the default."""
        return int(self.param("encoder_max_batch_tokens", str(DEFAULT_MAX_BATCH_TOKENS)))

    @property
    def truncates(self) -> bool:
        return self.param("overlength", "truncate") == "truncate"

    @property
    def labels(self) -> list[str]:
        raw = self.param("labels")
        return [str(x) for x in json.loads(raw)] if raw else []


def read_config(path: Path) -> ModelInfo:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    params = {k: v.string_value for k, v in config.parameters.items()}
    instances = sum(g.count for g in config.instance_group) or 1
    return ModelInfo(config.name or path.parent.name, params, instances)


@dataclass
class RepositoryInfo:
    """The public models of a local repository (empty when none was given)."""

    path: Path | None = None
    models: dict[str, ModelInfo] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    _tokenizers: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> RepositoryInfo:
        if path is None:
            return cls()
        path = Path(path)
        models = {}
        for name in api.PUBLIC_MODELS:
            config = path / name / "config.pbtxt"
            if config.is_file():
                models[name] = read_config(config)
        manifest_file = path / "structbert_manifest.json"
        manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
        return cls(path, models, manifest)

    @property
    def local(self) -> bool:
        return self.path is not None

    def precision(self, task: str) -> str:
        return str(self.manifest.get(task, {}).get("precision", "unknown"))

    def checkpoint(self, model: str) -> dict | None:
        """What ``model`` serves, from the manifest: ``{"checkpoint": what export was given,
        "synthetic": random weights or not}``; None when not recorded (no local repository, or one
        exported before the fact was recorded)."""
        for entry in self.manifest.values():
            if isinstance(entry, dict) and model in entry.get("models", ()) and "synthetic" in entry:
                return {"checkpoint": str(entry.get("checkpoint", "")), "synthetic": bool(entry["synthetic"])}
        return None

    def export_meta(self, encoder: str) -> dict:
        """The encoder's ``export.json`` (empty when not local or not there)."""
        meta = self.path / encoder / "1" / "export.json" if self.path is not None else None
        return json.loads(meta.read_text()) if meta is not None and meta.is_file() else {}

    def source(self, encoder: str) -> str:
        """The checkpoint an encoder was exported from (its folder name), if recorded."""
        return Path(str(self.export_meta(encoder).get("source", ""))).name if self.export_meta(encoder) else ""

    def tokenizer(self, model: str):
        """The server's own ``tokenizer.json`` for ``model`` (no truncation, no padding), or None when
        the repository is not local."""
        if model in self._tokenizers:
            return self._tokenizers[model]
        tok = None
        file = self.path / model / "1" / "tokenizer.json" if self.path is not None else None
        if model in self.models and file is not None and file.is_file():
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(file))
            tok.no_truncation()
            tok.no_padding()
        self._tokenizers[model] = tok
        return tok

    def count_tokens(self, model: str, texts: Sequence[str | tuple[str, str]], *, truncated: bool = True
                     ) -> list[int] | None:
        """Tokens per text (or pair) as the server runs them: [CLS]/[SEP] included, cut to the model's
        maximum when it truncates (``truncated=False``: before any cut). None without a local tokenizer."""
        tok = self.tokenizer(model)
        if tok is None:
            return None
        counts = [len(enc.ids) for enc in tok.encode_batch(list(texts))]
        info = self.models[model]
        if truncated and info.truncates:
            counts = [min(n, info.max_length) for n in counts]
        return counts
