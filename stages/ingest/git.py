"""Git repositories: the files of one revision (by path rules) and the commit messages behind it.

The revision is resolved to a commit when the job is planned, so a re-run reads the same tree even
if the branch moves. Files are read straight from the object store (`git cat-file --batch`), not
from a checkout. Each file is a document with repository, commit, path and blob in `meta`, its kind
(doc, config, code, log) classified from its path and text; each commit message is a document of
kind `doc` with commit, parents and date (no author names or e-mails). Files that yield no
document are ledger entries: `git_symlink`, `git_submodule`, `git_lfs_pointer`, `too_large`,
`empty`, `unreadable:binary`, `unreadable:undecodable`. A repository may be a local path or a URL,
which is cloned (bare, blobs on demand) into `clone_dir` first.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterator

from pipeline.schema import BASE_SCHEMA, doc_id
from pipeline.source import Source, documents, group_by_size, unreadable, unreadable_table
from pipeline.stage import Result
from stages.ingest.classify import classify
from stages.ingest.decode import Unreadable, cap_lines, decode

LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"
URL = re.compile(r"^(https?|ssh|git|file)://|^[\w.-]+@[\w.-]+:")
CREDENTIALS = re.compile(r"//[^/@]+@")
BATCH_DOCS = 512


class GitError(Exception):
    pass


def _git(repo: str, *args: str, input: bytes | None = None) -> bytes:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    out = subprocess.run(["git", "-C", repo, *args], input=input, capture_output=True, env=env)
    if out.returncode != 0:
        raise GitError(out.stderr.decode(errors="replace").strip()[:500] or f"git {args[0]} failed")
    return out.stdout


def public_url(url: str) -> str:
    """The URL without any user:password in it."""
    return CREDENTIALS.sub("//", url)


class GitSource(Source):
    """`repos`: local paths or URLs; `rev`: a branch, tag or commit; `include`/`exclude`: path
    globs (`docs/**`, `*.md`, `**/*.conf`); `files`/`commits`: what to read; `max_commits`: the
    newest this many commits reachable from `rev` (None: all)."""

    kind = "git"

    def __init__(self, name: str, repos: list[str], rev: str = "HEAD", include: list[str] | None = None,
                 exclude: list[str] | None = None, files: bool = True, commits: bool = True,
                 max_commits: int | None = 10_000, max_file_mb: float = 1, max_line_chars: int = 20_000,
                 encodings: list[str] | None = None, clone_dir: str | None = None, unit_files: int = 2000,
                 unit_mb: float = 64, unit_commits: int = 5000):
        super().__init__(name)
        self.repos, self.rev = repos, rev
        self.include, self.exclude = include or [], exclude or []
        self.files, self.commits, self.max_commits = files, commits, max_commits
        self.max_bytes = int(max_file_mb * (1 << 20))
        self.max_line_chars = max_line_chars
        self.encodings = encodings or ["utf-8"]
        self.clone_dir = clone_dir
        self.unit_files, self.unit_bytes, self.unit_commits = unit_files, int(unit_mb * (1 << 20)), unit_commits

    def _wanted(self, path: str) -> bool:
        def match(patterns):
            return any(fnmatch.fnmatch(path, p) or (p.startswith("**/") and fnmatch.fnmatch(path, p[3:]))
                       for p in patterns)

        return (not self.include or match(self.include)) and not match(self.exclude)

    def _local(self, repo: str) -> tuple[str, str]:
        """(local repository path, the name it goes by in meta)."""
        if not URL.match(repo):
            path = os.path.abspath(os.path.expanduser(repo))
            return path, path
        if not self.clone_dir:
            raise GitError(f"{public_url(repo)} is a URL: give clone_dir to clone it into")
        tag = hashlib.blake2b(repo.encode(), digest_size=6).hexdigest()
        target = os.path.join(os.path.abspath(self.clone_dir), f"{os.path.basename(repo.rstrip('/'))}-{tag}.git")
        if os.path.isdir(target):
            _git(target, "fetch", "--quiet", "--tags", "origin", "+refs/heads/*:refs/heads/*")
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _git(os.path.dirname(target), "clone", "--quiet", "--bare", "--filter=blob:none", repo, target)
        return target, public_url(repo)

    def plan(self) -> list:
        units = []
        for repo in self.repos:
            try:
                local, shown = self._local(repo)
                commit = _git(local, "rev-parse", "--verify", f"{self.rev}^{{commit}}").decode().strip()
            except GitError as exc:
                units.append({"repo": public_url(repo), "error": str(exc)})
                continue
            base = {"repo": shown, "local": local, "commit": commit}
            if self.files:
                entries = []
                for record in _git(local, "ls-tree", "-r", "-l", "-z", commit).split(b"\0"):
                    if not record:
                        continue
                    info, path = record.split(b"\t", 1)
                    mode, _, blob, size = info.decode().split()
                    path = path.decode("utf-8", "replace")
                    if self._wanted(path):
                        entries.append(([path, mode, blob, 0 if size == "-" else int(size)],
                                        0 if size == "-" else int(size)))
                units += [{**base, "files": group} for group in group_by_size(entries, self.unit_bytes, self.unit_files)]
            if self.commits:
                args = ["rev-list", commit] + ([f"--max-count={self.max_commits}"] if self.max_commits else [])
                shas = _git(local, *args).decode().split()
                units += [{**base, "commits": shas[i:i + self.unit_commits]}
                          for i in range(0, len(shas), self.unit_commits)]
        return units

    def read(self, payload: dict) -> Iterator[Result]:
        if "error" in payload:
            yield Result(BASE_SCHEMA.empty_table(), unreadable_table(
                [unreadable("git", payload["repo"], "unreadable:git_error", payload["error"])]))
            return
        if "files" in payload:
            yield from self._read_files(payload)
        else:
            yield from self._read_commits(payload)

    def _read_files(self, payload: dict) -> Iterator[Result]:
        repo, local, commit = payload["repo"], payload["local"], payload["commit"]
        docs, bad, wanted = [], [], []
        for path, mode, blob, size in payload["files"]:
            uri = f"{repo}@{commit}:{path}"
            if mode == "120000":
                bad.append(unreadable("git", uri, "git_symlink", "a symbolic link, not a file"))
            elif mode == "160000":
                bad.append(unreadable("git", uri, "git_submodule", f"a submodule at commit {blob}"))
            elif size > self.max_bytes:
                bad.append(unreadable("git", uri, "too_large", f"{size} bytes, over the cap of {self.max_bytes}"))
            elif size == 0:
                bad.append(unreadable("git", uri, "empty", "0 bytes"))
            else:
                wanted.append((path, blob, uri))
        blobs = _cat_blobs(local, [b for _, b, _ in wanted])
        for path, blob, uri in wanted:
            data = blobs.get(blob)
            if data is None:
                bad.append(unreadable("git", uri, "unreadable:git_error", f"blob {blob} missing from the repository"))
                continue
            if data.startswith(LFS_POINTER):
                bad.append(unreadable("git", uri, "git_lfs_pointer", "a Git LFS pointer; the content is elsewhere"))
                continue
            try:
                text, encoding = decode(data, self.encodings)
            except Unreadable as exc:
                bad.append(unreadable("git", uri, exc.reason, str(exc)))
                continue
            text, cut = cap_lines(text, self.max_line_chars)
            meta = {"repo": repo, "commit": commit, "path": path, "blob": blob, "bytes": len(data), "encoding": encoding}
            if cut:
                meta["truncated_lines"] = cut
            docs.append({"id": doc_id("git", uri), "text": text, "source": "git", "uri": uri,
                         "kind": classify(path, text), "meta": json.dumps(meta, sort_keys=True, ensure_ascii=False)})
            if len(docs) >= BATCH_DOCS:
                yield Result(documents(docs))
                docs = []
        yield Result(documents(docs), unreadable_table(bad))

    def _read_commits(self, payload: dict) -> Iterator[Result]:
        repo, local = payload["repo"], payload["local"]
        out = _git(local, "show", "-s", "-z", "--no-walk=unsorted", "--format=%H%x1f%P%x1f%aI%x1f%B",
                   *payload["commits"])
        docs, bad = [], []
        for record in out.decode("utf-8", "replace").split("\0"):
            if not record.strip():
                continue
            sha, parents, date, message = record.lstrip("\n").split("\x1f", 3)
            uri = f"{repo}@{sha}"
            message = message.strip()
            if not message:
                bad.append(unreadable("git", uri, "empty", "an empty commit message", "doc"))
                continue
            meta = {"repo": repo, "commit": sha, "parents": parents.split(), "date": date,
                    "merge": len(parents.split()) > 1}
            docs.append({"id": doc_id("git", uri), "text": message + "\n", "source": "git", "uri": uri, "kind": "doc",
                         "meta": json.dumps(meta, sort_keys=True, ensure_ascii=False)})
        yield Result(documents(docs), unreadable_table(bad))


def _cat_blobs(repo: str, blobs: list[str]) -> dict[str, bytes]:
    """Blob contents by id, from one `git cat-file --batch` run."""
    if not blobs:
        return {}
    out = _git(repo, "cat-file", "--batch", input=("\n".join(blobs) + "\n").encode())
    result, i = {}, 0
    while i < len(out):
        end = out.index(b"\n", i)
        header = out[i:end].decode().split()
        i = end + 1
        if len(header) == 2 and header[1] == "missing":
            continue
        size = int(header[2])
        result[header[0]] = out[i:i + size]
        i += size + 1
    return result
