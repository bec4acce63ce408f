"""System checks on real logs (loghub) and this machine's configs, and on planted junk."""

from __future__ import annotations

import base64
import random

import pyarrow as pa
import pytest

from stages.ingest.files import FilesSource
from stages.presets import load_preset
from stages.quality.system_checks import SystemChecks
from stages.registry import build_stage


def batch(texts, kinds, uris=None) -> pa.Table:
    n = len(texts)
    return pa.table({"id": [str(i) for i in range(n)], "text": texts, "kind": kinds,
                     "uri": uris or [f"mem://{i}" for i in range(n)]})


def read_files(root, include=None) -> pa.Table:
    source = FilesSource("t", [str(root)], include=include)
    return pa.concat_tables([r.kept for unit in source.plan() for r in source.read(unit)])


def run_preset(name: str, table: pa.Table) -> dict[str, str]:
    """Every dropped uri -> its reason, after the preset's stages in order."""
    dropped = {}
    for i, config in enumerate(load_preset(name)):
        stage = build_stage(config, i)
        stage.setup()
        result = stage.process(table)
        if result.dropped is not None:
            dropped.update(zip(result.dropped["uri"].to_pylist(), result.dropped["reason"].to_pylist()))
        table = result.kept
    return dropped


@pytest.mark.parametrize("preset", ["system", "web"])
def test_loghub_logs_pass_every_preset(loghub, preset):
    logs = read_files(loghub, include=["*_2k.log"])
    assert logs.num_rows == 12 and set(logs["kind"].to_pylist()) == {"log"}
    assert run_preset(preset, logs) == {}


@pytest.mark.parametrize("preset", ["system", "web"])
def test_machine_configs_pass(preset):
    roots = [p for p in ("/etc/postgresql", "/etc/systemd", "/etc/apt", "/etc/default", "/etc/security")]
    table = read_files("/etc", include=[f"{r}/*" for r in roots])
    table = table.filter(pa.compute.equal(table["kind"], "config"))
    if table.num_rows < 20:
        pytest.skip("too few configs under /etc on this machine")
    dropped = run_preset(preset, table)
    # signing keys (`.asc`, `.gpg`) are base64 armour, dropped as encoded blobs on purpose
    other = {u: r for u, r in dropped.items() if not u.endswith((".asc", ".gpg"))}
    assert set(dropped.values()) <= {"encoded_blob"}, dropped
    assert len(other) <= 0.02 * table.num_rows, other


def test_planted_system_junk():
    rng = random.Random(0)
    blob = base64.b64encode(rng.randbytes(3000)).decode()
    events = ["Accepted publickey for user{u} from 10.0.{i}.{i} port {p}", "Failed password for root from "
              "10.9.{i}.1 port {p} ssh2", "pam_unix(sshd:session): session closed for user user{u}"]
    good_log = "\n".join(f"2024-01-0{1 + i % 9} 10:{i % 60:02d}:00 sshd[{100 + i}]: "
                         + events[i % 3].format(u=i % 7, i=i, p=40000 + i) for i in range(40))
    texts = [
        good_log,
        "\n".join(["ERROR: connection lost"] * 200),                    # one line, over and over
        "\n".join(f"heartbeat seq={i} ok" for i in range(200)),          # one template, nothing else
        "# client certificate\nkey = value\n" + "\n".join(blob[i:i + 76] for i in range(0, len(blob), 76)),
        "\x00\x01\x02binary\x03\x04" * 50,
        '{"listen": 8080, "workers": [1, 2,',                          # truncated JSON
        "[server]\nport = 8080\nhost = 0.0.0.0\n",
    ]
    kinds = ["log", "log", "log", "config", "config", "config", "config"]
    uris = ["mem://a.log", "mem://b.log", "mem://b2.log", "mem://c.conf", "mem://d.conf", "mem://e.json", "mem://f.ini"]
    stage = SystemChecks()
    got = stage.decide(stage.signal(batch(texts, kinds, uris)))[0]
    assert got == [None, "log_repeated_lines", "log_few_templates", "encoded_blob", "low_printable", "config_unparseable", None]


def test_log_templates_are_lines_masked_as_every_stage_masks_them(loghub):
    from stages.variable_mask import mask_digits

    lines = (loghub / "OpenSSH" / "OpenSSH_2k.log").read_text().splitlines()[:400]
    templates = SystemChecks().signal(batch(["\n".join(lines)], ["log"]))["quality.system.templates"].to_pylist()
    assert templates == [len({mask_digits(x) for x in lines})] and 20 < templates[0] < len(set(lines)) / 4
