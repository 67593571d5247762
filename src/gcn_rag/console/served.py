"""What the registry says about a served entity's model: the versions the endpoint page offers
in its version select, and the input example the Query page starts from.

Both read the workspace's MLflow registry (off the event loop). The example is the registered
version's ``serving_input_example.json`` (MLflow writes it from the ``input_example`` logged
with the model, see :mod:`gcn_rag.model.packaging`); without a workspace, or for a version
logged without one, it is the example the assistant is logged with.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import TYPE_CHECKING, Any

from gcn_rag.serving.protocol import request_question

if TYPE_CHECKING:
    from gcn_rag.settings import Settings

EXAMPLE_FILE = "serving_input_example.json"


@dataclasses.dataclass(frozen=True)
class Choice:
    """One version in the select: its number and how it is labelled (with its aliases)."""

    version: str
    label: str


@dataclasses.dataclass(frozen=True)
class Example:
    """A model's input example: its first question, and the whole request as JSON."""

    question: str
    body: str


class Served:
    """Versions and input examples of registered models, over one workspace (or none)."""

    def __init__(self, settings: Settings | None) -> None:
        self.settings = settings
        self._examples: dict[tuple[str, str], Example] = {}
        self._lock = threading.Lock()
        self._client: Any = None

    def client(self) -> Any:
        """One MLflow client over the workspace's registry, kept (a new one per page, with
        ``registry.configure``'s experiment checks, cost ~80 ms; a search ~20 ms)."""
        with self._lock:
            if self._client is None:
                from mlflow import MlflowClient

                from gcn_rag.model import registry

                assert self.settings is not None
                uri = registry.tracking_uri(self.settings)
                self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            return self._client

    def choices(self, model: str, current: str) -> tuple[Choice, ...]:
        """The versions of ``model``, newest first (``current`` always among them)."""
        found = self._versions(model) if self.settings is not None else {}
        found.setdefault(current, [])
        ordered = sorted(found, key=lambda v: (not v.isdigit(), -int(v) if v.isdigit() else 0))
        return tuple(Choice(v, _label(v, found[v])) for v in ordered)

    def example(self, model: str, version: str) -> Example:
        """The input example of ``model`` version ``version`` (cached: a version is fixed)."""
        with self._lock:
            known = self._examples.get((model, version))
        if known is None:
            body = self._registered_example(model, version) or self._default_example()
            known = Example(request_question(body), _pretty(body))
            with self._lock:
                self._examples[(model, version)] = known
        return known

    def _versions(self, model: str) -> dict[str, list[str]]:
        from mlflow.exceptions import MlflowException

        if "'" in model:  # a name MLflow's filter string cannot hold; it has no versions
            return {}
        client = self.client()
        try:
            versions = client.search_model_versions(filter_string=f"name = '{model}'")
            aliases = client.get_registered_model(model).aliases
        except MlflowException:
            return {}
        found: dict[str, list[str]] = {str(v.version): [] for v in versions}
        for alias, version in aliases.items():
            found.setdefault(str(version), []).append(alias)
        return found

    def _default_example(self) -> str:
        """The request a version of this workspace would be logged with (``dataframe_split``)."""
        from gcn_rag.model.example import FALLBACK, example_question
        from gcn_rag.tables import Catalog

        question = FALLBACK
        if self.settings is not None:
            question = example_question(Catalog.from_settings(self.settings))
        return json.dumps({"dataframe_split": {"columns": ["question"], "data": [[question]]}})

    def _registered_example(self, model: str, version: str) -> str:
        """The version's serving input example as text ("" when it has none)."""
        if self.settings is None or not version.isdigit():
            return ""
        import mlflow
        from mlflow.exceptions import MlflowException

        try:
            where = self.client().get_model_version_download_uri(model, version)
            path = mlflow.artifacts.download_artifacts(f"{where.rstrip('/')}/{EXAMPLE_FILE}")
            with open(path, encoding="utf-8") as example:
                return example.read()
        except (MlflowException, OSError):
            return ""


def _label(version: str, aliases: list[str]) -> str:
    return " ".join([f"v{version}", *(f"@{a}" for a in sorted(aliases))])


def _pretty(body: str) -> str:
    try:
        document: Any = json.loads(body)
    except ValueError:
        return body
    return json.dumps(document, indent=2, ensure_ascii=False)
