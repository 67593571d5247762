"""The one settings object.

Precedence, highest first: explicit arguments > environment (``GCN_RAG_<FIELD>``) >
``<home>/config.toml`` > defaults. ``GCN_RAG_HOME`` relocates the whole workspace. Nothing here
reads the environment at import time: call :meth:`Settings.load`.

Workspace layout (all state lives under ``home``; each path is a property below, and no
other module spells one)::

    home/
      config.toml                 optional overrides (same keys as the fields below)
      warehouse/<catalog>/<schema>/<table>/   Delta tables
      index/                      the search index
      mlflow.db, mlartifacts/     MLflow tracking + registry and model artifacts
      serving.db, serving.lock    endpoints and tokens; the lock of the server that owns them
      capture/                    the inference-table spool
      cli-token                   the CAN_MANAGE token `gcn-rag up` made (mode 0600)
      reports/                    load-test and monitoring plots
      cache/                      downloaded archives and model assets (safe to delete)
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gcn_rag.errors import BadInputError

ENV_PREFIX = "GCN_RAG_"
DEFAULT_HOME = Path("~/.gcn-rag")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every tunable of gcn-rag, typed. Construct with :meth:`load`."""

    home: Path = DEFAULT_HOME
    catalog: str = "sandbox"
    schema: str = "nasa_gcn_dev"
    archive_url: str = "https://gcn.nasa.gov/circulars/archive.json.tar.gz"
    download_timeout_s: float = 30.0
    chunk_max_tokens: int = 256
    chunk_overlap_sentences: int = 1
    # serving: see gcn_rag.serving.manager.Limits
    request_timeout_s: float = 120.0
    request_max_rows: int = 1000
    queue_timeout_s: float = 2.0
    scale_to_zero_idle_s: float = 1800.0
    cold_start_wait_s: float = 30.0
    capture_flush_interval_s: float = 2.0
    header_timeout_s: float = 10.0  # a connection must send its request headers within this
    # output PII guardrails and e-mail addresses quoted from circulars: mask | keep
    guardrail_cited_emails: str = "mask"
    # answer generation: see gcn_rag.answer.generators (extractive | local | openai)
    generator: str = "extractive"
    llm_threads: int = 2
    llm_max_tokens: int = 256
    llm_context_tokens: int = 600  # a 135M model reads ~150 tokens/s on 2 cores
    openai_base_url: str = ""
    openai_model: str = ""
    openai_api_key_env: str = "OPENAI_API_KEY"

    @property
    def warehouse(self) -> Path:
        """Root of the Delta tables: ``warehouse/<catalog>/<schema>/<table>``."""
        return self.home / "warehouse"

    @property
    def cache(self) -> Path:
        """Downloaded archives and model assets; safe to delete."""
        return self.home / "cache"

    @property
    def embedding_cache(self) -> Path:
        """Vectors of embedded passages, by text hash (rebuilds embed only what changed)."""
        return self.cache / "embeddings"

    @property
    def index(self) -> Path:
        """The search index directory (``manifest.json`` says what it was built from)."""
        return self.home / "index"

    @property
    def mlflow_store(self) -> Path:
        """MLflow's tracking and registry database (SQLite)."""
        return self.home / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        """Where MLflow keeps logged models."""
        return self.home / "mlartifacts"

    @property
    def serving_state(self) -> Path:
        """The server's SQLite state: endpoints and (hashed) tokens."""
        return self.home / "serving.db"

    @property
    def serving_lock(self) -> Path:
        """Held by the one server that owns this workspace's endpoints."""
        return self.home / "serving.lock"

    @property
    def capture_spool(self) -> Path:
        """Captured requests on their way to the inference tables."""
        return self.home / "capture"

    @property
    def token_file(self) -> Path:
        """The CAN_MANAGE token `gcn-rag up` created, for the CLI (mode 0600)."""
        return self.home / "cli-token"

    @property
    def reports(self) -> Path:
        """Load-test and monitoring reports (PNG, HTML)."""
        return self.home / "reports"

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from overrides, the environment, the config file and defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        home_raw = overrides.get("home") or env.get(ENV_PREFIX + "HOME") or str(DEFAULT_HOME)
        home = Path(home_raw).expanduser()
        values.update(_read_config_file(home / "config.toml"))
        for field in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is not None and field.name != "home":
                values[field.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["home"] = home
        return cls(**_coerce(values))


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path} is not valid TOML ({exc}); fix or delete it.") from exc
    data.pop("home", None)  # the config file lives in home; it cannot move it
    return data


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    """Convert strings from the environment or TOML to each field's declared type."""
    kinds = {f.name: f.type for f in dataclasses.fields(Settings)}
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in kinds:
            raise BadInputError(
                f"Unknown setting {name!r}; known settings: {', '.join(sorted(kinds))}."
            )
        kind = kinds[name]
        try:
            if kind == "int":
                out[name] = int(value)
            elif kind == "float":
                out[name] = float(value)
            elif kind == "Path":
                out[name] = Path(value).expanduser()
            else:
                out[name] = str(value)
        except ValueError as exc:
            raise BadInputError(f"Setting {name!r} must be a {kind}, got {value!r}.") from exc
    return out
