"""GCN Circulars: the record, and readers for every official archive format.

Formats (detected from the file, not trusted from its name):

- ``archive.json.tar.gz`` — members ``archive.json/<circularId>.json``, each one JSON object
  with ``circularId, subject, createdOn`` (epoch ms), ``body`` and optionally ``eventId,
  submitter, submittedHow, format, version, editedOn``;
- ``archive.txt.tar.gz`` — members ``archive.txt/<id>.txt``: header lines ``TITLE:``,
  ``NUMBER:``, ``SUBJECT:``, ``DATE: YY/MM/DD hh:mm:ss GMT``, ``FROM:``, a blank line, the body;
- JSONL — one JSON object per line, as in the JSON archive.

Readers never raise on a bad member: they skip it and record why in a :class:`ReadReport`, so
one corrupt circular cannot cost the other 38,000. A truncated or corrupt tarball ends the
read early and is reported the same way.

Circular ids are numbers, not always integers: the archive holds ``-4 … 0`` (1997 circulars
numbered after the fact) and ``18448.5``, ``18453.5`` (slotted between two existing numbers).
They are kept as floats and shown with :func:`format_circular_id`.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

from gcn_rag.corpus.events import normalize_event_id, parse_event_id
from gcn_rag.errors import BadInputError

CIRCULAR_URL = "https://gcn.nasa.gov/circulars/{}"
CIRCULARS = "gcn_circulars"  # the table ingest writes
ATTRIBUTION = "NASA GCN Circulars"


@dataclasses.dataclass(frozen=True, slots=True)
class Circular:
    """One GCN Circular as published, plus the event it is about."""

    circular_id: float
    subject: str
    submitter: str
    created_on: datetime  # UTC
    body: str
    event_id: str | None = None
    event_id_source: str | None = None  # "archive" | "subject" | None
    submitted_how: str | None = None
    format: str | None = None
    version: int | None = None
    edited_on: datetime | None = None

    @property
    def url(self) -> str:
        return circular_url(self.circular_id)

    def content_hash(self) -> str:
        """A digest of what was published; changes when the circular is edited."""
        parts = (
            format_circular_id(self.circular_id),
            self.subject,
            self.submitter,
            self.created_on.isoformat(),
            self.body,
            self.event_id or "",
        )
        return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def format_circular_id(circular_id: float) -> str:
    """``32648.0`` -> ``"32648"``; ``18453.5`` -> ``"18453.5"``."""
    return str(int(circular_id)) if float(circular_id).is_integer() else str(circular_id)


def circular_id_json(circular_id: float) -> int | float:
    """A circular id as JSON writes it: ``32648`` for ``32648.0``, ``18453.5`` as is."""
    return int(circular_id) if float(circular_id).is_integer() else circular_id


def gcn_ref(circular_id: float) -> str:
    """How answers cite a circular: ``"GCN 32648"``."""
    return f"GCN {format_circular_id(circular_id)}"


# A citation of a circular in text: "GCN 32648", "GCNC 4455", "GCN Circ. 30915", "Circular
# 18453.5". Capitalized on purpose: "a circular 90% region" is not a citation.
CIRCULAR_REFERENCE = re.compile(
    r"(?<!\w)(?:GCN\s+Circ(?:ular)?s?\.?|GCNC?|Circulars?|Circ\.)\s*(?:No\.?\s*)?#?\s*"
    r"(?P<id>\d+(?:\.\d+)?)(?!\d|\.\d|\s*%)"
)


def circular_url(circular_id: float) -> str:
    """The official page of a circular."""
    return CIRCULAR_URL.format(format_circular_id(circular_id))


@dataclasses.dataclass
class ReadReport:
    """What a read saw: counts, skipped members with reasons, and an early end if any."""

    members: int = 0
    read: int = 0
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    truncated: str | None = None

    def skip(self, member: str, reason: str) -> None:
        self.skipped.append((member, reason))


class MemberError(ValueError):
    """One archive member cannot be turned into a circular."""


# --- parsing one record ---------------------------------------------------------------------

_TXT_HEADER = re.compile(r"^(TITLE|NUMBER|SUBJECT|DATE|FROM):[ \t]*(.*)$")
_TXT_DATE = re.compile(r"^(\d{2})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2})(?: GMT)?$")


def parse_text_circular(text: str) -> Circular:
    """Parse one member of ``archive.txt.tar.gz``."""
    header: dict[str, str] = {}
    lines = text.replace("\r\n", "\n").split("\n")
    body_start = len(lines)
    for i, line in enumerate(lines):
        match = _TXT_HEADER.match(line)
        if match:
            header[match[1]] = match[2].strip()
        elif not line.strip():
            body_start = i + 1
            break
        else:
            raise MemberError(f"unexpected header line {line[:40]!r}")
    for key in ("NUMBER", "SUBJECT", "DATE"):
        if key not in header:
            raise MemberError(f"missing {key}: header")
    return _make_circular(
        circular_id=_parse_number(header["NUMBER"]),
        subject=header["SUBJECT"],
        submitter=header.get("FROM", ""),
        created_on=_parse_text_date(header["DATE"]),
        body="\n".join(lines[body_start:]).strip("\n").rstrip(),
    )


def parse_json_circular(record: Any) -> Circular:
    """Parse one JSON record of ``archive.json.tar.gz`` or a JSONL line."""
    if not isinstance(record, dict):
        raise MemberError("not a JSON object")
    missing = [k for k in ("circularId", "subject", "createdOn", "body") if record.get(k) is None]
    if missing:
        raise MemberError(f"missing field(s) {', '.join(missing)}")
    version = record.get("version")
    edited = record.get("editedOn")
    return _make_circular(
        circular_id=_parse_number(record["circularId"]),
        subject=str(record["subject"]).strip(),
        submitter=str(record.get("submitter") or ""),
        created_on=_epoch_ms(record["createdOn"]),
        body=str(record["body"]).strip("\n").rstrip(),
        archive_event_id=record.get("eventId"),
        submitted_how=record.get("submittedHow"),
        format=record.get("format"),
        version=int(version) if isinstance(version, int | float) else None,
        edited_on=_epoch_ms(edited) if edited is not None else None,
    )


_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def _make_circular(*, archive_event_id: Any = None, **fields: Any) -> Circular:
    fields["subject"] = " ".join(fields["subject"].translate(_INVISIBLE).split())
    event_id, source = None, None
    if isinstance(archive_event_id, str) and archive_event_id.strip():
        event_id = normalize_event_id(archive_event_id) or archive_event_id.strip()
        source = "archive"
    else:
        event_id = parse_event_id(fields["subject"])
        source = "subject" if event_id else None
    return Circular(event_id=event_id, event_id_source=source, **fields)


def _parse_number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise MemberError(f"circular number {value!r} is not a number") from exc
    if number != number or abs(number) > 1e9:
        raise MemberError(f"circular number {value!r} is out of range")
    return number


def _parse_text_date(raw: str) -> datetime:
    match = _TXT_DATE.match(raw)
    if not match:
        raise MemberError(f"DATE {raw!r} is not 'YY/MM/DD hh:mm:ss GMT'")
    yy, mo, dd, hh, mi, ss = (int(g) for g in match.groups())
    year = 1900 + yy if yy >= 90 else 2000 + yy  # the archive starts in 1997
    try:
        return datetime(year, mo, dd, hh, mi, ss, tzinfo=UTC)
    except ValueError as exc:
        raise MemberError(f"DATE {raw!r}: {exc}") from exc


def _epoch_ms(value: Any) -> datetime:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise MemberError(f"timestamp {value!r} is not epoch milliseconds")
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise MemberError(f"timestamp {value!r} is out of range") from exc


# --- reading whole sources ------------------------------------------------------------------


Progress = Callable[[int, int], None]  # (bytes of the file read so far, file size)


def read_circulars(
    path: Path, report: ReadReport, on_progress: Progress | None = None
) -> Iterator[Circular]:
    """Yield every readable circular in a local archive or JSONL file.

    ``on_progress(done, total)`` reports bytes of the file consumed. Problems go to ``report``.
    """
    if not path.exists():
        raise BadInputError(f"{path} does not exist; give an archive path, a URL, or no SOURCE.")
    if not path.is_file():
        raise BadInputError(
            f"{path} is a folder, not an archive; give the file (archive.json.tar.gz, "
            "archive.txt.tar.gz or a JSONL file)."
        )
    if tarfile.is_tarfile(path):
        yield from _read_tar(path, report, on_progress)
    elif _looks_like_jsonl(path):
        yield from _read_jsonl(path, report, on_progress)
    else:
        raise BadInputError(
            f"{path} is neither a tar archive (archive.json.tar.gz / archive.txt.tar.gz) nor "
            "JSONL; download the archive again from https://gcn.nasa.gov/circulars/archive."
        )


def _read_tar(path: Path, report: ReadReport, on_progress: Progress | None) -> Iterator[Circular]:
    size = path.stat().st_size
    try:
        with path.open("rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name
                if not name.endswith((".json", ".txt")):
                    report.skip(name, "not a .json or .txt member")
                    continue
                report.members += 1
                handle = tar.extractfile(member)
                data = handle.read() if handle else b""
                if on_progress:
                    on_progress(raw.tell(), size)
                circular = _parse_member(name, data, report)
                if circular is not None:
                    yield circular
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        report.truncated = f"{type(exc).__name__}: {exc}"


def _parse_member(name: str, data: bytes, report: ReadReport) -> Circular | None:
    try:
        text = data.decode("utf-8")
        if name.endswith(".json"):
            circular = parse_json_circular(json.loads(text))
        else:
            circular = parse_text_circular(text)
    except UnicodeDecodeError as exc:
        report.skip(name, f"not UTF-8 (byte {exc.start})")
        return None
    except json.JSONDecodeError as exc:
        report.skip(name, f"invalid JSON ({exc.msg} at line {exc.lineno})")
        return None
    except MemberError as exc:
        report.skip(name, str(exc))
        return None
    report.read += 1
    return circular


def _looks_like_jsonl(path: Path) -> bool:
    try:
        with path.open("rb") as raw, _maybe_gunzip(raw) as handle:
            head = handle.read(64).lstrip()
    except (OSError, EOFError, zlib.error):
        return False
    return head.startswith(b"{")


def _maybe_gunzip(raw: IO[bytes]) -> AbstractContextManager[IO[bytes]]:
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return cast(AbstractContextManager[IO[bytes]], gzip.GzipFile(fileobj=raw, mode="rb"))
    return nullcontext(raw)


def _read_jsonl(path: Path, report: ReadReport, on_progress: Progress | None) -> Iterator[Circular]:
    size = path.stat().st_size
    try:
        with path.open("rb") as raw, _maybe_gunzip(raw) as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                report.members += 1
                if on_progress:
                    on_progress(raw.tell(), size)
                circular = _parse_member(f"line {lineno}.json", line, report)
                if circular is not None:
                    yield circular
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        report.truncated = f"{type(exc).__name__}: {exc}"
