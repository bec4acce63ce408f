"""Configs understood as configs: real files from this machine, and broken ones."""

import glob
import json
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.schema import BASE_SCHEMA
from stages.ingest.config_formats import parse_config
from stages.ingest.configs import ConfigParse

ROOT = Path(__file__).resolve().parents[3]
NGINX = """\
user www-data;
worker_processes auto;
events { worker_connections 768; }
http {
    sendfile on;
    log_format main '$remote_addr - $remote_user [$time_local] "$request"';
    server {
        listen 80 default_server;
        location / { try_files $uri $uri/ =404; }
    }
}
"""


def _real(pattern):
    paths = sorted(glob.glob(pattern, recursive=True))
    if not paths:
        pytest.skip(f"nothing matches {pattern} on this machine")
    return paths


@pytest.mark.parametrize("pattern,fmt", [
    ("/lib/systemd/system/systemd-*.service", "systemd"),
    ("/lib/systemd/system/*.socket", "systemd"),
    ("/etc/ssh/ssh_config", "directives"),
    ("/etc/postgresql/*/main/postgresql.conf", "keyvalue"),
    ("/etc/apache2/apache2.conf", "apache"),
    ("/usr/share/iso-codes/json/iso_3166-1.json", "json"),
])
def test_real_configs_parse(pattern, fmt):
    for path in _real(pattern)[:10]:
        text = Path(path).read_text(encoding="utf-8")
        if not text.strip():
            continue  # a masked unit: a link to /dev/null
        parsed = parse_config(path, text)
        assert parsed is not None and parsed.format == fmt and parsed.ok, (path, parsed)
        assert parsed.keys


def test_formats_by_content_and_by_name():
    assert parse_config("project.toml", (ROOT / "pyproject.toml").read_text()).keys[:2] == ["build-system", "project"]
    job = parse_config("configs/local-system.yaml", (ROOT / "configs" / "local-system.yaml").read_text())
    assert job.format == "yaml" and "inputs" in job.keys
    nginx = parse_config("/srv/site/default.conf", NGINX)  # no telling name: found by its braces and ';'
    assert nginx.format == "nginx" and nginx.ok and nginx.keys == ["user", "worker_processes", "events", "http"]
    ini = parse_config("/opt/app/settings.cfg", "[server]\nhost = example.org\nport: 8080\n\n[log]\nlevel = info\n")
    assert ini.format == "ini" and ini.keys == ["server", "log"]
    assert parse_config("/opt/app/settings.cfg", "[server]\nhost = example.org\n").format == "ini"  # not TOML: unquoted
    assert parse_config("x.xml", "<?xml version='1.0'?><config><a>1</a><b/></config>").keys == ["a", "b"]
    assert parse_config("notes.conf", "# only comments here\n# nothing else\n") is None


@pytest.mark.parametrize("path,text,fmt,where", [
    ("broken.json", '{"a": 1, "b": }', "json", "line 1"),
    ("broken.yaml", "a: 1\n b: [2\n", "yaml", "line"),
    ("broken.toml", 'name = "x"\nname = "y"\n', "toml", "line 2"),
    ("broken.service", "[Unit]\nDescription=x\nthis is not a setting\n", "systemd", "line 3"),
    ("/etc/nginx/nginx.conf", "http {\n  server {\n    listen 80\n  }\n", "nginx", "missing its ';'"),
    ("/etc/apache2/sites.conf", "<VirtualHost *:80>\n<Directory /srv>\n</VirtualHost>\n", "apache", "closes"),
    ("x.xml", "<config><a></config>", "xml", "mismatched"),
    ("boom.xml", '<!DOCTYPE b [<!ENTITY a "aaaa">]><b>&a;</b>', "xml", "entities"),
])
def test_unparseable_configs_are_marked_with_where(path, text, fmt, where):
    parsed = parse_config(path, text)
    assert parsed.format == fmt and not parsed.ok
    assert where in parsed.error


def test_stage_marks_and_optionally_drops():
    rows = [
        {"id": "1", "text": "[Unit]\nDescription=Demo\n[Service]\nExecStart=/bin/true\n", "source": "file",
         "uri": "file:///etc/systemd/system/demo.service", "kind": "config", "meta": json.dumps({"path": "/etc/systemd/system/demo.service"})},
        {"id": "2", "text": '{"a": ', "source": "file", "uri": "file:///etc/app.json", "kind": "config", "meta": "{}"},
        {"id": "3", "text": "not a config at all", "source": "file", "uri": "file:///doc.txt", "kind": "doc", "meta": "{}"},
    ]
    batch = pa.Table.from_pylist(rows, schema=BASE_SCHEMA)
    kept = ConfigParse().process(batch)
    assert kept.dropped is None
    metas = [json.loads(m) for m in kept.kept["meta"].to_pylist()]
    assert metas[0]["config_format"] == "systemd" and metas[0]["config_parsed"] is True
    assert metas[0]["config_keys"] == ["Unit", "Service"]
    assert metas[1]["config_format"] == "json" and metas[1]["config_parsed"] is False and metas[1]["config_error"]
    assert metas[2] == {}
    strict = ConfigParse(drop_unparseable=True).process(batch)
    assert strict.dropped["reason"].to_pylist() == ["config_unparseable:json"]
    assert strict.kept.num_rows == 2
