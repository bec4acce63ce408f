"""Secret and PII redaction: each detector, hard negatives, the labelled set, and a real job in
which neither the shards nor the rejects keep a planted secret."""

from __future__ import annotations

import json
import pickle
import random
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.curate import curate
from pipeline.config import parse_job
from stages.safety.redact import Redact, Redactor
from stages.safety.triggers import Triggers

from bench.redaction import score as coverage
from bench.redaction_set import FAMILIES, Planter, load_set

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "data"))
from secrets_corpus import make_corpus, score  # noqa: E402

CASES = [
    ("aws_access_key_id = AKIAIOSFODNN7EXAMPLF", "aws_access_key_id = <SECRET:aws_access_key>"),
    ("aws_secret_access_key = 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",
     "aws_secret_access_key = <SECRET:aws_secret_key>"),
    ("key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", "key=<SECRET:gcp_api_key>"),
    ("GITHUB_TOKEN=ghp_1234567890abcdefghijABCDEFGHIJ123456", "GITHUB_TOKEN=<SECRET:github_token>"),
    ("slack: xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "slack: <SECRET:slack_token>"),
    ("auth eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlc2lnbmF0dXJl", "auth <SECRET:jwt>"),
    ("Authorization: Bearer 7f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c", "Authorization: Bearer <SECRET:bearer_token>"),
    ("url = postgres://app:S3cr3t!x@db.internal:5432/app", "url = postgres://app:<SECRET:url_password>@db.internal:5432/app"),
    ("password = hunter2hunter", "password = <SECRET:password>"),
    ('  db_password: "tr0ub4dor&3"', '  db_password: "<SECRET:password>"'),
    ('{"clientSecret": "a8f9e7d6c5"}', '{"clientSecret": "<SECRET:password>"}'),
    ("<password>m4ven-pass</password>", "<password><SECRET:password></password>"),
    ("mysql --password=Zx9!kk2 app", "mysql --password=<SECRET:password> app"),
    ("requirepass foobared42", "requirepass <SECRET:password>"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n-----END RSA PRIVATE KEY-----\n",
     "<SECRET:private_key>\n"),
    ("mail alice.smith@example.com now", "mail <EMAIL> now"),
    ("from 192.168.10.77 port 22", "from <IPV4> port 22"),
    ("addr 2001:db8:85a3::8a2e:370:7334 up", "addr <IPV6> up"),
    ("ether 3c:22:fb:0a:1b:2c", "ether <MAC>"),
]
NEGATIVES = [
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "commit 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
    "request 123e4567-e89b-12d3-a456-426614174000 done",
    "version 2.4.57-1+deb12u1, release 1.2.3.4",
    "PasswordAuthentication no",
    "passwd:         files systemd",
    "password\trequisite\t\t\tpam_deny.so",
    "DB_PASSWORD=${DB_PASSWORD}",
    "password_file = /run/secrets/db",
    "listen 127.0.0.1:8080 and 0.0.0.0",
    "at 10:22:33 std::vector<int>",
    "Failed password for root from",
]


# secrets that words introduce in prose, log lines, tools' output and command lines
PROSE = [
    ("Rotated creds today: access key AKIAZ7Q3LMNB4XK2PQ7W with secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYZZ2QK8PLKEY ok",
     "Rotated creds today: access key <SECRET:aws_access_key> with secret <SECRET:generic_secret> ok"),
    ("2026-01-02 INFO using aws secret key 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 for upload",
     "2026-01-02 INFO using aws secret key <SECRET:generic_secret> for upload"),
    ("password: hunter2hunter2 is what the intern used", "password: <SECRET:password> is what the intern used"),
    ("the password for db01.internal is Tr0ub4dor&3, rotate it", "the password for db01.internal is <SECRET:password>, rotate it"),
    ("Unseal Key 1: qmE4c1B9f0dUyRk2Vw7zH3nJtLx8aSo5pQ6rGiMbYeC=", "Unseal Key 1: <SECRET:generic_secret>"),
    ("A temporary password is generated for root@localhost: Xy7#kq!pQ2", "A temporary password is generated for root@localhost: <SECRET:password>"),
    ("Please use the following password to proceed:\n\n3f2a9c8d7e6b5a4f3e2d1c0b9a8f7e6d\n",
     "Please use the following password to proceed:\n\n<SECRET:password>\n"),
    ("try Orbit2979& as the password", "try <SECRET:password> as the password"),
    ("sshpass -p S3cr3t!x ssh deploy@db01", "sshpass -p <SECRET:password> ssh deploy@db01"),
    ("PGPASSWORD=hunter2hunter psql -h db01", "PGPASSWORD=<SECRET:password> psql -h db01"),
    ("docker login -u ci -p Zx9!kk2pq registry.example.net", "docker login -u ci -p <SECRET:password> registry.example.net"),
    ("Admin password? it's aR7ei%5aOyQ", "Admin password? it's <SECRET:password>"),
    ("received password 'XFbRnoLDtGF' from vault", "received password '<SECRET:password>' from vault"),
    ("auth ok with pass Velvet8983*", "auth ok with pass <SECRET:password>"),
]
# look-alikes beside the same words, and prose that only talks about secrets
PROSE_NEGATIVES = [
    "commit 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12 fixed the token refresh",
    "the token's sha256 is 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "API key id 123e4567-e89b-42d3-a456-426614174000 was revoked",
    "The key fingerprint is SHA256:xGbGid/KSjRvjiTdGtydoSKJtIiZlXKjMWDlN7UclYc",
    "gpg: key 4AA4767BBC9C4B26: public key imported",
    "secret db-credentials-prod created",
    "password: ********", "api key: ${API_KEY}", "the password is stored in /etc/app/db.pass",
    "struct passwd *getpwnam(const char *name);",
    "Pass IDN2_ALABEL_ROUNDTRIP in flags to convert any input",
    "PASS: gdb.base/infcall-nested-structs-c++.exp: types-tc-td: continue",
    "Failed password for invalid user admin from port 22 ssh2",
    "credentials are written to HOME/.kube/config",
    "  * Add new upstream signing key 19882D92DDA4C400C22C0D56CC2AF4472167BE03",
    "your password expires in 90 days, change it with passwd(1)",
]


@pytest.mark.parametrize("text,expected", CASES + PROSE)
def test_each_detector(text, expected):
    assert Redactor().redact(text)[0] == expected


@pytest.mark.parametrize("text", NEGATIVES + PROSE_NEGATIVES)
def test_hard_negatives_are_left_alone(text):
    assert Redactor().redact(text) == (text, {})


def test_hostnames_only_where_configured():
    text = "connect to db01.corp.example.com and www.gnu.org"
    assert Redactor().redact(text)[0] == text
    assert Redactor(hostnames=[r"[\w\-]+\.corp\.example\.com"]).redact(text)[0] == "connect to <HOSTNAME> and www.gnu.org"


def test_triggers_found_in_one_pass_with_their_lines():
    text = "a\nask-x key\nb@c\n\nsk"
    triggers = pickle.loads(pickle.dumps(Triggers(["sk", "sk-", "key", "@", "zz"])))  # as a Ray worker gets it
    hits = triggers.scan(text)
    assert hits.present == {"sk", "sk-", "key", "@"}  # overlapping triggers are all seen
    assert hits.lines(("sk",)) == [(2, 11), (17, 19)]
    assert hits.lines(("key", "@")) == [(2, 15)]  # adjacent lines merged
    assert hits.lines(("zz",)) == []
    assert hits.lines(("@",), 1) == [(12, 16)] and hits.lines(("@",), 2) == [(12, 19)]  # and the lines after it


def test_lines_follow_the_text_after_an_earlier_redaction():
    # the key block's placeholder moves the password line: its offsets come from the redacted text
    key = "-----BEGIN RSA PRIVATE KEY-----\n" + "MIIBOgIBAAJBAKj34GkxFhD9\n" * 40 + "-----END RSA PRIVATE KEY-----"
    text = f"{key}\npassword = hunter2hunter\nmail a.b@example.com"
    assert Redactor().redact(text)[0] == "<SECRET:private_key>\npassword = <SECRET:password>\nmail <EMAIL>"


def test_labelled_set_recall_and_precision():
    corpus = make_corpus(seed=0, docs=240)
    redactor = Redactor()

    def find(text):
        return [(f.start, f.end, f.type) for f in redactor.find(text)]

    for part in ("secrets", "pii"):
        result = score(corpus, find, part)
        assert result["planted"] > 200
        assert result["recall"] >= 0.99, result["misses"][:5]
        assert result["precision"] >= 0.95, result["false_positives"][:5]
    for row in corpus:  # what redact() leaves holds no planted value
        clean = redactor.redact(row["text"])[0]
        assert not [x for x in row["planted"] if x["value"] in clean]


def test_stage_columns_and_counts():
    batch = pa.table({"id": ["a", "b"], "text": ["password = hunter2hunter, mail bob@example.org", "nothing"]})
    result = Redact().process(batch)
    assert result.kept["text"][0].as_py() == "password = <SECRET:password>, mail <EMAIL>"
    assert result.kept["redact.password"].to_pylist() == [1, 0]
    assert result.kept["redact.email"].to_pylist() == [1, 0]
    assert result.kept["redact.total"].to_pylist() == [2, 0]
    assert result.counts == {"redact.password": 1, "redact.email": 1, "redact.total": 2}


@pytest.mark.slow
def test_no_secret_reaches_shards_or_rejects(ray_local, tmp_path):
    rows = make_corpus(seed=3, docs=36)
    short = {"id": "short", "text": "token=ghp_abcdefghijABCDEFGHIJ0123456789abcdef", "kind": "config",
             "uri": "mem://short", "planted": [{"type": "github_token",
                                                "value": "ghp_abcdefghijABCDEFGHIJ0123456789abcdef"}]}
    rows.append(short)
    path = tmp_path / "x.jsonl"
    path.write_text("".join(json.dumps({k: r[k] for k in ("id", "text", "kind", "uri")}) + "\n" for r in rows))
    job = parse_job({"name": "redact", "inputs": [{"type": "jsonl", "paths": [str(path)]}],
                     "stages": ["redact", {"basic_filter": {"min_chars": 60}}, "exact_dedupe"],
                     "writer": {"rejects": "all"}})
    manifest = curate(job, str(tmp_path / "out"))
    assert manifest["totals"]["balanced"]
    counts = next(s for s in manifest["stages"] if s["name"] == "redact")["counts"]
    assert counts["redact.total"] >= sum(len(r["planted"]) for r in rows)
    texts = pq.read_table(tmp_path / "out" / "shards")["text"].to_pylist()
    rejects = pq.read_table(tmp_path / "out" / "rejects").to_pylist()
    short_reject = next(r for r in rejects if r["id"] == "short")
    assert short_reject["reason"] == "too_short" and "<SECRET:github_token>" in short_reject["text"]
    everything = "\n".join(texts + [r["text"] for r in rejects])
    assert not [x["value"] for r in rows for x in r["planted"] if x["value"] in everything]


def _one_of_every_family(seed: int) -> tuple[list[tuple[str, str]], Planter]:
    p = Planter(random.Random(seed))
    pairs = [maker() for maker in (p.cloud, p.payment, p.chat, p.ci_devops, p.vcs, p.package_registry, p.ai_saas,
                                   p.generic, p.password, p.connection)]
    pairs += [("auth_header", f"Bearer {p.jwt()}"), ("age_identity", p.age_key())]
    return pairs, p


@pytest.mark.slow
def test_every_family_in_a_config_a_log_and_jsonl_is_gone_after_curate(ray_local, tmp_path):
    from jobs.sigma_command import main

    planted, families = [], set()
    data = tmp_path / "in"
    data.mkdir()
    pairs, p = _one_of_every_family(11)
    (data / "app.env").write_text("\n".join(f"{k.upper()}={v}" for k, v in pairs) + "\n" + p.private_key() + "\n")
    planted += p.planted
    pairs, p = _one_of_every_family(12)
    (data / "app.log").write_text("".join(f"2026-12-03T10:00:{i:02d}Z INFO startup: loaded {k}: {v}\n"
                                          for i, (k, v) in enumerate(pairs)))
    planted += p.planted
    pairs, p = _one_of_every_family(13)
    pem = p.private_key()
    (data / "events.jsonl").write_text(json.dumps({"text": json.dumps(dict(pairs + [("tls_key", pem)]), indent=1)}) + "\n")
    planted += p.planted
    families = {x["family"] for x in planted}
    assert families == set(FAMILIES)
    job = tmp_path / "job.yaml"
    job.write_text(json.dumps({"name": "families", "inputs": [
        {"type": "files", "roots": [str(data / "app.env"), str(data / "app.log")]},
        {"type": "jsonl", "paths": [str(data / "events.jsonl")]}],
        "stages": ["redact", {"basic_filter": {"min_chars": 20}}], "writer": {"rejects": "all"}}))
    assert main(["curate", str(job), "--output", str(tmp_path / "out"), "--quiet"]) == 0
    out = tmp_path / "out"
    texts = pq.read_table(out / "shards")["text"].to_pylist()
    rejects = pq.read_table(out / "rejects")["text"].to_pylist() if (out / "rejects").exists() else []
    assert len(texts) == 3
    everything = "\n".join(texts + [t for t in rejects if t])
    assert not [x for x in planted if x["value"] in everything]


def test_committed_sets_hold_the_goal():
    """The development set (seed 1) and the held-out set (seed 2): recall per family and overall,
    and hard negatives left intact (the full table with the peer: bench/redaction.py)."""
    redactor = Redactor()
    for name in ("redaction_seed1.jsonl.gz", "redaction_seed2.jsonl.gz"):
        rows = load_set(ROOT / "bench" / "data" / name)
        result = coverage(rows, lambda row: [(f.start, f.end) for f in redactor.find(row["text"])])
        assert result["recall"] >= 0.99, result["misses"][:5]
        assert min(result["per_family"].values()) >= 0.95, result["per_family"]
        assert result["intact"] >= 0.95, result["flagged"][:5]


@pytest.mark.parametrize("seed,goal", [(11, 0.99), (12, 0.99), (13, 0.99), (14, 0.92)])
def test_committed_prose_sets(seed, goal):
    """Secrets that words introduce (bench/redaction_prose_set.py): the development set (11), the
    first held-out split once read (12), new values (13, held out) at the goal; new values and
    phrasings no rule was written against (14, held out) where it stands now (docs/benchmarks.md)."""
    redactor = Redactor()
    rows = load_set(ROOT / "bench" / "data" / f"redaction_prose_seed{seed}.jsonl.gz")
    result = coverage(rows, lambda row: [(f.start, f.end) for f in redactor.find(row["text"])])
    assert result["planted"] > 1500
    assert result["recall"] >= goal, result["misses"][:5]
    assert result["intact"] >= 0.95, result["flagged"][:5]
