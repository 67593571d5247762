"""Reading real circulars from both official archive formats, and surviving bad input."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import FIXTURE_COUNT, JSON_ARCHIVE, TXT_ARCHIVE
from gcn_rag.corpus.circulars import (
    Circular,
    MemberError,
    ReadReport,
    circular_url,
    format_circular_id,
    parse_json_circular,
    parse_text_circular,
    read_circulars,
)
from gcn_rag.errors import BadInputError


def read_all(path: Path) -> tuple[dict[float, Circular], ReadReport]:
    report = ReadReport()
    return {c.circular_id: c for c in read_circulars(path, report)}, report


def test_text_archive_reads_every_fixture() -> None:
    circulars, report = read_all(TXT_ARCHIVE)
    assert len(circulars) == report.read == report.members == FIXTURE_COUNT
    assert report.skipped == [] and report.truncated is None
    c = circulars[32648]
    assert c.subject == "GRB 221009A: Redshift from X-shooter/VLT"
    assert c.created_on == datetime(2022, 10, 10, 9, 39, 41, tzinfo=UTC)
    assert c.submitter.startswith("Antonio de Ugarte Postigo at OCA")
    assert c.body.startswith("A. de Ugarte Postigo (OCA)")
    assert "redshift of z = 0.151" in " ".join(c.body.split())
    assert (c.event_id, c.event_id_source) == ("GRB 221009A", "subject")
    assert c.url == "https://gcn.nasa.gov/circulars/32648"


def test_json_archive_matches_text_archive() -> None:
    text, _ = read_all(TXT_ARCHIVE)
    as_json, report = read_all(JSON_ARCHIVE)
    assert report.read == FIXTURE_COUNT
    assert set(text) == set(as_json)
    for cid, t in text.items():
        j = as_json[cid]
        assert (j.subject, j.body, j.submitter, j.created_on, j.event_id) == (
            t.subject,
            t.body,
            t.submitter,
            t.created_on,
            t.event_id,
        )
        assert j.content_hash() == t.content_hash()
    assert as_json[33229].event_id_source == "archive"
    assert as_json[32648].event_id_source == "subject"


def test_unusual_ids_and_dates() -> None:
    circulars, _ = read_all(TXT_ARCHIVE)
    assert {-4.0, -1.0, 0.0, 18448.5, 18453.5} <= set(circulars)
    assert circulars[-4].created_on.year == 1997
    assert circulars[38717].created_on.year == 2024
    assert format_circular_id(18453.5) == "18453.5" and format_circular_id(32648.0) == "32648"
    assert circular_url(18453.5) == "https://gcn.nasa.gov/circulars/18453.5"
    # a zero-width space in front of the subject is not part of it
    assert circulars[32659].subject.startswith("GRB 221009A")


def test_jsonl_is_read_plain_or_gzipped(tmp_path: Path) -> None:
    records = [
        {"circularId": 1, "subject": "GRB 970925: BATSE", "createdOn": 875232000000, "body": "x"},
        {
            "circularId": 2,
            "subject": "S190425z: y",
            "createdOn": 875232000000,
            "body": "y",
            "eventId": "LIGO/Virgo S190425z",
        },
    ]
    text = "\n".join(json.dumps(r) for r in records) + "\n"
    plain = tmp_path / "c.jsonl"
    plain.write_text(text)
    zipped = tmp_path / "c.jsonl.gz"
    zipped.write_bytes(gzip.compress(text.encode()))
    for path in (plain, zipped):
        circulars, report = read_all(path)
        assert report.read == 2
        assert circulars[2].event_id == "S190425z" and circulars[2].event_id_source == "archive"


def test_text_member_problems_are_named() -> None:
    with pytest.raises(MemberError, match="missing NUMBER"):
        parse_text_circular("TITLE: GCN CIRCULAR\nSUBJECT: x\nDATE: 97/09/26 00:00:00 GMT\n\nb")
    with pytest.raises(MemberError, match="DATE"):
        parse_text_circular("NUMBER: 5\nSUBJECT: x\nDATE: yesterday\n\nbody")
    with pytest.raises(MemberError, match="missing field"):
        parse_json_circular({"circularId": 5, "subject": "x"})
    with pytest.raises(MemberError, match="not a number"):
        parse_json_circular({"circularId": "five", "subject": "x", "createdOn": 0, "body": ""})


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_bad_members_are_skipped_and_counted(tmp_path: Path) -> None:
    good = json.dumps({"circularId": 7, "subject": "GRB 990123: x", "createdOn": 0, "body": "b"})
    path = _tar(
        tmp_path / "archive.json.tar.gz",
        {
            "archive.json/7.json": good.encode(),
            "archive.json/8.json": b'{"circularId": 8, "subject": ',
            "archive.json/9.json": json.dumps({"circularId": 9}).encode(),
            "archive.json/10.json": "caf\xe9".encode("latin-1"),
            "archive.json/README": b"not a circular",
        },
    )
    circulars, report = read_all(path)
    assert list(circulars) == [7]
    reasons = dict(report.skipped)
    assert "invalid JSON" in reasons["archive.json/8.json"]
    assert "missing field" in reasons["archive.json/9.json"]
    assert "not UTF-8" in reasons["archive.json/10.json"]
    assert "not a .json or .txt member" in reasons["archive.json/README"]
    assert report.members == 4 and report.read == 1


def test_truncated_archive_keeps_what_was_read(tmp_path: Path) -> None:
    data = TXT_ARCHIVE.read_bytes()
    cut = tmp_path / "archive.txt.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    circulars, report = read_all(cut)
    assert 0 < len(circulars) < FIXTURE_COUNT
    assert report.truncated is not None


def test_not_an_archive_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "archive.json.tar.gz"
    junk.write_bytes(b"\x00\x01 this is not a tarball" * 100)
    with pytest.raises(BadInputError, match="neither a tar archive"):
        read_all(junk)
    with pytest.raises(BadInputError, match="does not exist"):
        read_all(tmp_path / "missing.tar.gz")
