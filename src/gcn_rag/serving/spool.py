"""The capture spool on disk: append-only JSON-lines segments, and a quarantine beside them.

The request path appends one line per request to the open segment (``seg-<n>.jsonl``); the
flusher rotates it and commits closed segments to Delta. Nothing found in the folder can stop
this: a file with another name is moved to ``quarantine/`` when the spool opens, and a line
that is not a record is moved there by the flusher; the capture counts each, logs it with its
path and keeps the last path in its state (``last_quarantine``). A write that fails halfway
(a full disk) is cut back off the segment, so the torn line cannot swallow the next row; the
caller counts the lost one.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

SEGMENT = re.compile(r"seg-(\d{1,18})\.jsonl")
QUARANTINE = "quarantine"


class Spool:
    """Append-only JSON-lines segments in one directory; only one process uses it at a time."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.quarantine = directory / QUARANTINE
        self.set_aside_files: list[Path] = []  # strays moved to quarantine when opening
        self._lock = threading.Lock()
        numbers = []
        for path in sorted(directory.iterdir()):
            match = SEGMENT.fullmatch(path.name)
            if match is not None and path.is_file():
                numbers.append(int(match[1]))
            elif path.name != QUARANTINE:
                self.set_aside_files.append(self.set_aside(path))
        self._numbers = itertools.count(max(numbers, default=0) + 1)
        self.leftovers = self.segments()  # from a previous process
        self._path, self._fd = self._open()
        self._size = 0  # bytes in the open segment
        self.rows = 0  # rows in the open segment

    def _open(self) -> tuple[Path, int]:
        path = self.directory / f"seg-{next(self._numbers):09d}.jsonl"
        return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    @property
    def current(self) -> Path:
        """The open segment."""
        return self._path

    def segments(self) -> list[Path]:
        """Every segment in the folder, oldest first (the open one included)."""
        found = [p for p in self.directory.glob("seg-*.jsonl") if SEGMENT.fullmatch(p.name)]
        return sorted(found, key=lambda p: int(SEGMENT.fullmatch(p.name)[1]))  # type: ignore[index]

    def write(self, record: dict[str, Any]) -> None:
        """Append one line; on failure the segment is as it was before, and OSError is raised."""
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            try:
                _write_all(self._fd, line)
            except OSError:
                # cut the torn part off, so the next line starts on a line of its own
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
                raise
            self._size += len(line)
            self.rows += 1

    def sync(self) -> None:
        with self._lock:
            if self.rows:
                os.fsync(self._fd)

    def rotate(self) -> Path | None:
        """Close the open segment (if it has rows) and start a new one; returns the closed."""
        with self._lock:
            if not self.rows:
                return None
            os.fsync(self._fd)
            os.close(self._fd)
            closed = self._path
            self._path, self._fd = self._open()
            self._size = 0
            self.rows = 0
        return closed

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)
            if not self.rows:
                self._path.unlink(missing_ok=True)

    def set_aside(self, path: Path, lines: list[bytes] | None = None) -> Path:
        """Move ``path`` (or write ``lines`` from it) into the quarantine; returns where."""
        self.quarantine.mkdir(exist_ok=True)
        for n in itertools.count():
            target = self.quarantine / (path.name + (f".{n}" if n else ""))
            if not target.exists():
                break
        if lines is None:
            path.rename(target)
        else:
            target.write_bytes(
                b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines)
            )
        return target


def read_segment(path: Path) -> list[dict[str, Any]]:
    """The records of a segment; a torn last line (a crash mid-write) is skipped."""
    return read_lines(path)[0]


def read_lines(path: Path) -> tuple[list[dict[str, Any]], list[bytes]]:
    """A segment's JSON objects, and its lines that are not one (torn or foreign)."""
    records: list[dict[str, Any]] = []
    bad: list[bytes] = []
    with path.open("rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except (ValueError, RecursionError):
                bad.append(line)
                continue
            if isinstance(value, dict):
                records.append(value)
            else:
                bad.append(line)
    return records, bad


def rewrite(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace a segment with ``records`` only (after its bad lines were set aside)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as out:
        for record in records:
            out.write(
                (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
            )
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may take fewer than it was given)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError("the spool took no bytes")
        view = view[written:]
