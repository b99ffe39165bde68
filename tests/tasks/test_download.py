"""The download command, tested offline with a local file:// archive and its checksums."""
from __future__ import annotations

import dataclasses
import hashlib
import zipfile

import pytest

from harness.data import main as data_main
from tasks.data.download import ARCHIVES, Archive, ChecksumError, download

FILES = {"wiki.train.tokens": b" = T = \n a b \n", "wiki.valid.tokens": b" a \n", "wiki.test.tokens": b" b \n"}


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@pytest.fixture
def local_archive(tmp_path):
    path = tmp_path / "wikitext-2-v1.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in FILES.items():
            zf.writestr(f"wikitext-2/{name}", data)
    return Archive("wikitext-2", ("file:///nonexistent/mirror.zip", path.as_uri()), sha1(path.read_bytes()),
                   "wikitext-2", {name: sha1(data) for name, data in FILES.items()})


def test_download_tries_mirrors_verifies_and_extracts(local_archive, tmp_path):
    dest = download(local_archive, tmp_path / "data" / "wt2")
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == FILES
    assert download(local_archive, dest) == dest  # already there and verified: nothing fetched


def test_wrong_archive_checksum_extracts_nothing(local_archive, tmp_path):
    bad = dataclasses.replace(local_archive, sha1="0" * 40)
    with pytest.raises(ChecksumError, match="expected 0000"):
        download(bad, tmp_path / "wt2")
    assert not (tmp_path / "wt2").exists()


def test_wrong_file_checksum_is_rejected(local_archive, tmp_path):
    bad = dataclasses.replace(local_archive, files={**local_archive.files, "wiki.test.tokens": "1" * 40})
    with pytest.raises(ChecksumError, match="wiki.test.tokens"):
        download(bad, tmp_path / "wt2")


def test_cli_uses_the_official_checksums(local_archive, tmp_path, capsys):
    url = local_archive.urls[1]
    # a local archive that is not the official one fails the official checksum
    assert data_main(["download", "wikitext-2", "--dest", str(tmp_path / "wt2"), "--url", url]) == 1
    assert "SHA-1" in capsys.readouterr().err
    assert set(ARCHIVES) == {"wikitext-2", "wikitext-103"}
    assert data_main(["download", "wikitext-2", "--dest", str(tmp_path / "x"), "--url", "file:///missing.zip"]) == 1


def test_cli_downloads_and_says_how_to_use_it(local_archive, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(ARCHIVES, "wikitext-2", local_archive)
    assert data_main(["download", "wikitext-2", "--dest", str(tmp_path / "wt2")]) == 0
    assert f"task.data.path={tmp_path / 'wt2'}" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "wt2").iterdir()) == sorted(FILES)
