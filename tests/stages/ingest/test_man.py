import json
import shutil

import pytest

from pipeline.schema import doc_id
from stages.ingest.man import ManSource, page_name


def test_page_names():
    assert page_name("ls.1.gz") == ("ls", "1")
    assert page_name("CA.pl.1ssl.gz") == ("CA.pl", "1ssl")
    assert page_name("[.1.gz") == ("[", "1")


def _read(source, pages):
    plan = [u for u in source.plan() if u]
    items = [item for unit in plan for item in unit]
    wanted = [i for i in items if i[2].rsplit("/", 1)[1] in pages]
    return source.read_all([wanted])


def test_real_pages_render_with_name_and_section(man_root):
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    source = ManSource("man", [str(man_root.parent)], sections=["1"], include=["ls", "grep"])
    docs, dropped = _read(source, {"ls.1.gz", "grep.1.gz"})
    assert not dropped
    by_name = {json.loads(d["meta"])["name"]: d for d in docs}
    assert set(by_name) == {"ls", "grep"}
    ls = by_name["ls"]
    assert "list directory contents" in ls["text"] and "\x08" not in ls["text"]
    assert json.loads(ls["meta"])["section"] == "1"
    assert json.loads(ls["meta"])["title"].startswith("ls - list directory contents")
    assert ls["kind"] == "doc" and ls["source"] == "man"
    assert max(len(line) for line in ls["text"].split("\n")) <= 80


def test_symlinked_and_so_pages_are_aliases_in_the_ledger(man_root):
    link = man_root / "apt-add-repository.1.gz"
    so_stub = man_root / "init.1.gz"
    if not link.is_symlink() or not so_stub.exists():
        pytest.skip("this machine lacks the alias pages used here")
    source = ManSource("man", [str(man_root.parent)], sections=["1"], include=["apt-add-repository", "init"])
    docs, dropped = _read(source, {link.name, so_stub.name})
    assert docs == []
    reasons = {d["uri"].rsplit("/", 1)[1]: d for d in dropped}
    assert reasons[link.name]["reason"] == "man_alias"
    assert reasons[link.name]["detail"] == doc_id("man", f"file://{link.resolve()}")
    assert reasons[so_stub.name]["reason"] == "man_alias"


def test_locales_and_sections_select_pages(man_root):
    english = ManSource("man", [str(man_root.parent)], sections=["8"]).plan()
    paths = [p for unit in english for _, locale, p in unit]
    assert paths and all("/man8/" in p for p in paths)
    assert all(locale == "" for unit in english for _, locale, _ in unit)


def test_a_link_to_a_page_under_no_root_is_that_page(tmp_path, man_root):
    """`psql.1.gz -> /etc/alternatives/psql.1.gz -> /usr/share/postgresql/15/man/...`: nothing else
    reads the page, so the link is read as it; a link to a page under the root stays an alias."""
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    outside, root = tmp_path / "elsewhere" / "man1", tmp_path / "man" / "man1"
    outside.mkdir(parents=True), root.mkdir(parents=True)
    shutil.copy(man_root / "ls.1.gz", outside / "ls.1.gz")
    shutil.copy(man_root / "cp.1.gz", root / "cp.1.gz")
    (root / "ls.1.gz").symlink_to(outside / "ls.1.gz")
    (root / "copy.1.gz").symlink_to(root / "cp.1.gz")
    docs, dropped = ManSource("man", [str(root.parent)]).read_all()
    assert sorted(d["uri"].rsplit("/", 1)[1] for d in docs) == ["cp.1.gz", "ls.1.gz"]
    assert [(d["uri"].rsplit("/", 1)[1], d["reason"]) for d in dropped] == [("copy.1.gz", "man_alias")]
