"""A real repository built in the test from this machine's files: files at a revision by path
rules, commit messages, and the entries that yield no document."""

import json
import shutil
import subprocess

import pytest

from stages.ingest.git import GitSource, public_url

GIT = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.org", "-c", "commit.gpgsign=false",
       "-c", "init.defaultBranch=main", "-c", "protocol.file.allow=always"]


def _git(repo, *args):
    return subprocess.run([*GIT, "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, loghub):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "etc").mkdir()
    subprocess.run([*GIT, "init", "-q", str(root)], check=True)
    (root / "README.md").write_text("# Demo\n\nA repository of system files for the git source test.\n")
    shutil.copy(loghub / "OpenSSH" / "OpenSSH_2k.log", root / "sshd.log")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "Add the readme and a real sshd log\n\nThe log comes from Loghub.")
    first = _git(root, "rev-parse", "HEAD")
    (root / "docs" / "guide.md").write_text("## Guide\n\nRestart the service with systemctl restart demo.\n")
    (root / "etc" / "demo.service").write_text("[Unit]\nDescription=Demo\n\n[Service]\nExecStart=/usr/bin/demo\n")
    (root / "etc" / "model.bin").write_bytes(bytes(range(256)) * 8)
    (root / "big.dat").write_bytes(b"lfs\n")
    (root / "big.dat").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 123\n")
    (root / "empty.txt").write_text("")
    (root / "link.md").symlink_to("README.md")
    _git(root, "add", "-A")
    _git(root, "update-index", "--add", "--cacheinfo", f"160000,{first},vendor/lib")  # a submodule entry
    _git(root, "commit", "-q", "-m", "Add docs, a unit file and odd entries")
    return root


def test_files_and_commits_at_a_revision(repo):
    head = _git(repo, "rev-parse", "HEAD")
    docs, dropped = GitSource("g", [str(repo)]).read_all()
    files = {json.loads(d["meta"])["path"]: d for d in docs if "path" in json.loads(d["meta"])}
    assert set(files) == {"README.md", "sshd.log", "docs/guide.md", "etc/demo.service"}
    assert files["sshd.log"]["kind"] == "log" and files["etc/demo.service"]["kind"] == "config"
    assert files["docs/guide.md"]["kind"] == "doc"
    meta = json.loads(files["docs/guide.md"]["meta"])
    assert meta["repo"] == str(repo) and meta["commit"] == head and meta["blob"]
    assert files["docs/guide.md"]["uri"] == f"{repo}@{head}:docs/guide.md"
    commits = [d for d in docs if "path" not in json.loads(d["meta"])]
    assert [c["text"].splitlines()[0] for c in commits] == ["Add docs, a unit file and odd entries",
                                                             "Add the readme and a real sshd log"]
    assert "author" not in commits[0]["meta"] and "example.org" not in commits[0]["meta"]
    reasons = {d["uri"].rsplit(":", 1)[1]: d["reason"] for d in dropped}
    assert reasons == {"etc/model.bin": "unreadable:binary", "big.dat": "git_lfs_pointer", "empty.txt": "empty",
                       "link.md": "git_symlink", "vendor/lib": "git_submodule"}


def test_path_rules_revision_and_url_clone(repo, tmp_path):
    first = _git(repo, "rev-list", "--max-parents=0", "HEAD")
    docs, _ = GitSource("g", [f"file://{repo}"], rev=first, include=["*.md", "*.log"], commits=False,
                        clone_dir=str(tmp_path / "clones")).read_all()
    assert sorted(json.loads(d["meta"])["path"] for d in docs) == ["README.md", "sshd.log"]
    assert {json.loads(d["meta"])["commit"] for d in docs} == {first}
    assert all(d["uri"].startswith(f"file://{repo}@") for d in docs)
    docs, _ = GitSource("g", [str(repo)], include=["docs/**"], exclude=["*.log"], commits=False).read_all()
    assert [json.loads(d["meta"])["path"] for d in docs] == ["docs/guide.md"]


def test_a_missing_repository_is_a_ledger_entry(tmp_path):
    docs, dropped = GitSource("g", [str(tmp_path / "nothing")]).read_all()
    assert docs == [] and dropped[0]["reason"] == "unreadable:git_error"
    assert public_url("https://user:secret@example.org/r.git") == "https://example.org/r.git"
