"""Settings precedence: argument > environment > config file > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from gcn_rag.errors import BadInputError
from gcn_rag.settings import Settings


def test_defaults_and_home_relocation(tmp_path: Path) -> None:
    default = Settings.load(environ={})
    assert default.home == Path("~/.gcn-rag").expanduser()
    assert (default.catalog, default.schema, default.chunk_max_tokens) == (
        "sandbox",
        "nasa_gcn_dev",
        256,
    )
    moved = Settings.load(environ={"GCN_RAG_HOME": str(tmp_path)})
    assert moved.home == tmp_path
    assert moved.warehouse == tmp_path / "warehouse" and moved.cache == tmp_path / "cache"


def test_precedence(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        'schema = "from_file"\ncatalog = "file_cat"\nchunk_max_tokens = 128\n'
    )
    env = {"GCN_RAG_HOME": str(tmp_path), "GCN_RAG_SCHEMA": "from_env"}
    s = Settings.load(environ=env)
    assert (s.catalog, s.schema, s.chunk_max_tokens) == ("file_cat", "from_env", 128)
    s = Settings.load(environ=env, schema="from_arg")
    assert s.schema == "from_arg"


def test_bad_settings_are_explained(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("chunk_max_tokens = [")
    with pytest.raises(BadInputError, match="not valid TOML"):
        Settings.load(environ={"GCN_RAG_HOME": str(tmp_path)})
    with pytest.raises(BadInputError, match="must be a int"):
        Settings.load(
            environ={"GCN_RAG_HOME": str(tmp_path / "x"), "GCN_RAG_CHUNK_MAX_TOKENS": "lots"}
        )
    with pytest.raises(BadInputError, match="Unknown setting 'colour'"):
        Settings.load(environ={}, home=tmp_path / "y", colour="blue")
