"""Download official archives, verify their checksums, extract them (``python -m harness.data download``).

Checksums are SHA-1, the ones the GluonNLP dataset catalogue publishes for the archive and for every file
we use (the WikiText-2 valid/test files in this repository's test data match them). Nothing here runs during
training: a run reads only local files.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Archive:
    """A zip archive: where to get it (mirrors tried in order), its SHA-1, and the files to keep."""

    name: str
    urls: tuple[str, ...]
    sha1: str
    folder: str  # the folder inside the archive that holds the files
    files: dict[str, str] = field(default_factory=dict)  # file name -> SHA-1


ARCHIVES = {
    "wikitext-103": Archive(
        "wikitext-103",
        ("https://wikitext.smerity.com/wikitext-103-v1.zip",
         "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip"),
        sha1="0aec09a7537b58d4bb65362fee27650eeaba625a",
        folder="wikitext-103",
        files={"wiki.train.tokens": "b7497e2dfe77e72cfef5e3dbc61b7b53712ac211",
               "wiki.valid.tokens": "c326ac59dc587676d58c422eb8a03e119582f92b",
               "wiki.test.tokens": "8a5befc548865cec54ed4273cf87dbbad60d1e47"},
    ),
    "wikitext-2": Archive(
        "wikitext-2",
        ("https://wikitext.smerity.com/wikitext-2-v1.zip",
         "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip"),
        sha1="3c914d17d80b1459be871a5039ac23e752a53cbe",
        folder="wikitext-2",
        files={"wiki.train.tokens": "863f29c46ef9d167fff4940ec821195882fe29d1",
               "wiki.valid.tokens": "0418625c8b4da6e4b5c7a0b9e78d4ae8f7ee5422",
               "wiki.test.tokens": "c7b8ce0aa086fb34dab808c5c49224211eb2b172"},
    ),
}


class ChecksumError(RuntimeError):
    pass


def sha1_of(path: str | Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, target: Path, timeout: float = 60.0) -> None:
    """Copy ``url`` (http(s):// or file://) to ``target``."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
        shutil.copyfileobj(response, out, length=1 << 20)


def download(archive: Archive, dest: str | Path) -> Path:
    """Fetch ``archive`` from the first mirror that works, verify it and its files, and place the files in
    ``dest`` (created; files already there with the right checksum are kept). Returns ``dest``."""
    dest = Path(dest)
    if dest.is_dir() and all((dest / n).is_file() and sha1_of(dest / n) == s for n, s in archive.files.items()):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{archive.name}-") as tmp:
        zip_path = Path(tmp) / "archive.zip"
        errors = []
        for url in archive.urls:
            try:
                fetch(url, zip_path)
                break
            except OSError as err:
                errors.append(f"{url}: {err}")
        else:
            raise ConnectionError(f"could not download {archive.name}; tried " + "; ".join(errors))
        found = sha1_of(zip_path)
        if found != archive.sha1:
            raise ChecksumError(f"{archive.name} archive has SHA-1 {found}, expected {archive.sha1}; not extracted")
        staging = Path(tmp) / "files"
        staging.mkdir()
        with zipfile.ZipFile(zip_path) as zf:
            for name in archive.files:
                member = f"{archive.folder}/{name}"
                try:
                    with zf.open(member) as src, open(staging / name, "wb") as out:
                        shutil.copyfileobj(src, out, length=1 << 20)
                except KeyError:
                    raise ChecksumError(f"{archive.name} archive lacks {member}") from None
        for name, expected in archive.files.items():
            found = sha1_of(staging / name)
            if found != expected:
                raise ChecksumError(f"{archive.name}: {name} has SHA-1 {found}, expected {expected}")
        dest.mkdir(parents=True, exist_ok=True)
        for name in archive.files:
            (staging / name).replace(dest / name)  # same file system: each move is atomic
    return dest
