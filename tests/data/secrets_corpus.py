"""A labelled set of real-looking configs and logs with planted secrets and PII, and hard
negatives that are not secrets (hashes, UUIDs, commit ids, digests, version strings, variable
references, sshd/PAM/nsswitch lines that mention passwords).

    python tests/data/secrets_corpus.py --seed 0 --docs 300 > labelled.jsonl

Each line: {"id", "text", "kind", "uri", "planted": [{"type", "value"}], "negatives": [value]}.
Every value is random, from the generator seeded with `--seed`; a set made with another seed is
a held-out set.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import string
import sys

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
WORDS = ["river", "falcon", "copper", "orbit", "maple", "quartz", "harbor", "velvet", "ember", "tundra",
         "cobalt", "meadow", "signal", "lantern", "pepper", "glacier"]
USERS = ["alice", "bob", "deploy", "svc_backup", "jenkins", "postgres", "admin", "carol", "dave"]
HOSTS = ["db01.internal", "cache-2.prod.local", "api.example.net", "git.example.org", "queue.svc.cluster.local"]


class Planter:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.planted: list[dict] = []
        self.negatives: list[str] = []

    def pick(self, chars: str, n: int) -> str:
        return "".join(self.rng.choice(chars) for _ in range(n))

    def plant(self, kind: str, value: str) -> str:
        self.planted.append({"type": kind, "value": value})
        return value

    def neg(self, value: str) -> str:
        self.negatives.append(value)
        return value

    # secrets -------------------------------------------------------------------------------
    def password(self) -> str:
        r = self.rng.random()
        if r < 0.4:
            v = self.rng.choice(WORDS).capitalize() + str(self.rng.randint(10, 9999)) + self.rng.choice("!#%&*?")
        elif r < 0.8:
            v = self.pick(ALNUM + "!#%^*-_", self.rng.randint(12, 24))
        else:
            v = "-".join(self.rng.sample(WORDS, 3)) + str(self.rng.randint(1, 99))
        return self.plant("password", v)

    def aws_key(self) -> str:
        return self.plant("aws_access_key", "AKIA" + self.pick(string.ascii_uppercase + "234567", 16))

    def aws_secret(self) -> str:
        return self.plant("aws_secret_key", self.pick(B64, 40))

    def gcp_key(self) -> str:
        return self.plant("gcp_api_key", "AIza" + self.pick(ALNUM + "-_", 35))

    def github(self) -> str:
        if self.rng.random() < 0.7:
            return self.plant("github_token", self.rng.choice(["ghp_", "gho_", "ghs_"]) + self.pick(ALNUM, 36))
        return self.plant("github_token", "github_pat_" + self.pick(ALNUM + "_", 82))

    def slack(self) -> str:
        return self.plant("slack_token", f"xoxb-{self.pick(string.digits, 12)}-{self.pick(string.digits, 13)}-"
                                         f"{self.pick(ALNUM, 24)}")

    def jwt(self) -> str:
        def enc(obj):
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
        payload = {"sub": self.rng.choice(USERS), "iat": self.rng.randint(1_600_000_000, 1_800_000_000), "role": "admin"}
        sig = base64.urlsafe_b64encode(self.rng.randbytes(32)).rstrip(b"=").decode()
        return self.plant("jwt", f"{enc({'alg': 'HS256', 'typ': 'JWT'})}.{enc(payload)}.{sig}")

    def bearer(self) -> str:
        return self.plant("bearer_token", self.pick(ALNUM + "-._", self.rng.randint(24, 48)))

    def azure_key(self) -> str:
        return self.plant("azure_storage_key", self.pick(B64, 86) + "==")

    def private_key(self, escaped: bool = False) -> str:
        kind = self.rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY"])
        body = base64.b64encode(self.rng.randbytes(self.rng.randint(300, 900))).decode()
        lines = [body[i:i + 64] for i in range(0, len(body), 64)]
        nl = "\\n" if escaped else "\n"
        return self.plant("private_key", nl.join([f"-----BEGIN {kind}-----", *lines, f"-----END {kind}-----"]))

    # PII -----------------------------------------------------------------------------------
    def email(self) -> str:
        return self.plant("email", f"{self.rng.choice(USERS)}.{self.pick(string.ascii_lowercase, 4)}@"
                                   f"{self.rng.choice(['example.com', 'corp.example.org', 'mail.test.io'])}")

    def ipv4(self) -> str:
        first = self.rng.choice([n for n in range(1, 224) if n != 127])  # loopback names no one
        return self.plant("ipv4", ".".join([str(first)] + [str(self.rng.randint(0, 254)) for _ in range(3)]))

    def ipv6(self) -> str:
        return self.plant("ipv6", "2001:db8:" + ":".join(f"{self.rng.randint(0, 65535):x}" for _ in range(6)))

    def mac(self) -> str:
        return self.plant("mac", ":".join(f"{self.rng.randint(0, 255):02x}" for _ in range(6)))

    # hard negatives ------------------------------------------------------------------------
    def sha256(self) -> str:
        return self.neg(self.rng.randbytes(32).hex())

    def sha1(self) -> str:
        return self.neg(self.rng.randbytes(20).hex())

    def uuid(self) -> str:
        h = self.rng.randbytes(16).hex()
        return self.neg(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")

    def version(self) -> str:
        parts = [str(self.rng.randint(0, 20)) for _ in range(self.rng.choice([3, 3, 4]))]
        return self.neg(".".join(parts) + self.rng.choice(["", "-1", "-1+deb12u1", "~rc2", ""]))

    def b64_digest(self) -> str:
        return self.neg(base64.b64encode(self.rng.randbytes(32)).decode())


def env_file(p: Planter) -> tuple[str, str]:
    lines = [
        "# application settings",
        f"APP_VERSION={p.version()}",
        f"DATABASE_URL=postgres://{p.rng.choice(USERS)}:{p.password()}@{p.rng.choice(HOSTS)}:5432/app",
        f"AWS_ACCESS_KEY_ID={p.aws_key()}",
        f"AWS_SECRET_ACCESS_KEY={p.aws_secret()}",
        f"BUILD_SHA={p.sha1()}",
        f"REQUEST_ID_NAMESPACE={p.uuid()}",
        "DB_PASSWORD=${DB_PASSWORD_FROM_VAULT}",
        f"GITHUB_TOKEN={p.github()}",
        f"ADMIN_EMAIL={p.email()}",
        "PASSWORD_MIN_LENGTH=12",
    ]
    return "\n".join(lines) + "\n", ".env"


def yaml_file(p: Planter) -> tuple[str, str]:
    text = f"""# service configuration
version: "{p.version()}"
server:
  listen: 0.0.0.0:8443
  advertise: {p.ipv4()}
database:
  host: {p.rng.choice(HOSTS)}
  user: {p.rng.choice(USERS)}
  password: "{p.password()}"
  password_file: /run/secrets/db_password
cache:
  checksum: sha256:{p.sha256()}
  requirepass_hint: see vault
notifications:
  slack_token: {p.slack()}
  owner: {p.email()}
image: registry.example.com/app@sha256:{p.sha256()}
"""
    return text, "config.yaml"


def ini_file(p: Planter) -> tuple[str, str]:
    text = f"""; pgbouncer-style settings
[databases]
app = host={p.ipv4()} port=5432 dbname=app

[credentials]
admin_user = {p.rng.choice(USERS)}
admin_password = {p.password()}
api_key = {p.gcp_key()}
session_id = {p.uuid()}

[build]
version = {p.version()}
commit = {p.sha1()}
"""
    return text, "settings.ini"


def json_file(p: Planter) -> tuple[str, str]:
    doc = {
        "type": "service_account", "project_id": f"proj-{p.pick(string.digits, 6)}",
        "private_key_id": p.neg(p.rng.randbytes(20).hex()),
        "private_key": "@@KEY@@",
        "client_email": p.email(), "client_id": p.neg(p.pick(string.digits, 21)),
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    text = json.dumps(doc, indent=2).replace('"@@KEY@@"', json.dumps(p.private_key(escaped=True) + "\\n")
                                                           .replace("\\\\n", "\\n"))
    return text, "service-account.json"


def pem_file(p: Planter) -> tuple[str, str]:
    return f"# deploy key for {p.rng.choice(USERS)}\n{p.private_key()}\n", "id_deploy"


def xml_file(p: Planter) -> tuple[str, str]:
    text = f"""<?xml version="1.0"?>
<settings>
  <server>
    <id>releases</id>
    <username>{p.rng.choice(USERS)}</username>
    <password>{p.password()}</password>
  </server>
  <mirror url="https://{p.rng.choice(HOSTS)}/maven" checksum="{p.sha256()}"/>
  <version>{p.version()}</version>
</settings>
"""
    return text, "settings.xml"


def properties_file(p: Planter) -> tuple[str, str]:
    text = f"""spring.datasource.url=jdbc:mysql://{p.ipv4()}:3306/app
spring.datasource.username={p.rng.choice(USERS)}
spring.datasource.password={p.password()}
azure.storage.connection-string=DefaultEndpointsProtocol=https;AccountName=acct{p.pick(string.digits, 4)};AccountKey={p.azure_key()};EndpointSuffix=core.windows.net
app.build.uuid={p.uuid()}
app.version={p.version()}
"""
    return text, "application.properties"


def shell_script(p: Planter) -> tuple[str, str]:
    text = f"""#!/bin/sh
# nightly backup
set -eu
mysqldump -u root --password={p.password()} app > /backup/app.sql
curl -fsS -H "Authorization: Bearer {p.bearer()}" https://{p.rng.choice(HOSTS)}/v1/backups
echo "sha256 {p.sha256()}  app.sql"
redis-cli -h {p.ipv4()} ping
"""
    return text, "backup.sh"


def redis_conf(p: Planter) -> tuple[str, str]:
    text = f"""bind 127.0.0.1 ::1
port 6379
requirepass {p.password()}
masterauth {p.password()}
replicaof {p.ipv4()} 6379
# version {p.version()}
"""
    return text, "redis.conf"


def system_conf(p: Planter) -> tuple[str, str]:
    text = f"""# /etc/ssh/sshd_config excerpt
PasswordAuthentication no
PermitRootLogin prohibit-password
ListenAddress {p.ipv4()}
# /etc/nsswitch.conf excerpt
passwd:         files systemd
shadow:         files
# /etc/pam.d/common-password excerpt
password	[success=1 default=ignore]	pam_unix.so obscure yescrypt
password	requisite			pam_deny.so
# interface
hwaddress ether {p.mac()}
iface eth0 inet6 static
    address {p.ipv6()}
"""
    return text, "system.conf"


def auth_log(p: Planter) -> tuple[str, str]:
    lines = []
    for i in range(p.rng.randint(6, 12)):
        t = f"Mar {p.rng.randint(1, 28):2d} {p.rng.randint(0, 23):02d}:{p.rng.randint(0, 59):02d}:{p.rng.randint(0, 59):02d}"
        r = p.rng.random()
        if r < 0.3:
            lines.append(f"{t} host sshd[{p.rng.randint(100, 99999)}]: Failed password for {p.rng.choice(USERS)} "
                         f"from {p.ipv4()} port {p.rng.randint(1024, 65535)} ssh2")
        elif r < 0.5:
            lines.append(f"{t} host sshd[{p.rng.randint(100, 99999)}]: Accepted publickey for {p.rng.choice(USERS)} "
                         f"from {p.ipv6()} port {p.rng.randint(1024, 65535)} ssh2: RSA SHA256:{p.b64_digest()[:43]}")
        elif r < 0.7:
            lines.append(f"{t} host dhclient[{p.rng.randint(100, 9999)}]: DHCPACK of {p.ipv4()} from "
                         f"{p.ipv4()} (xid=0x{p.neg(p.rng.randbytes(4).hex())}) on {p.mac()}")
        elif r < 0.85:
            lines.append(f"{t} host app[{p.rng.randint(100, 9999)}]: request {p.uuid()} user={p.email()} "
                         f"token={p.jwt()}")
        else:
            lines.append(f"{t} host apt[{p.rng.randint(100, 9999)}]: upgraded openssl to {p.version()} "
                         f"(sha256 {p.sha256()})")
    return "\n".join(lines) + "\n", "auth.log"


def app_log(p: Planter) -> tuple[str, str]:
    lines = []
    for i in range(p.rng.randint(5, 10)):
        ts = f"2024-0{p.rng.randint(1, 9)}-1{p.rng.randint(0, 9)}T12:{p.rng.randint(10, 59)}:00Z"
        r = p.rng.random()
        if r < 0.25:
            lines.append(f"{ts} INFO  GET /api/v1/items?id={p.uuid()} 200 client={p.ipv4()}")
        elif r < 0.4:
            lines.append(f"{ts} DEBUG outgoing headers: Authorization: Bearer {p.bearer()}")
        elif r < 0.55:
            lines.append(f"{ts} WARN  slack webhook failed for token {p.slack()}")
        elif r < 0.7:
            lines.append(f"{ts} INFO  connecting to https://{p.rng.choice(USERS)}:{p.password()}@{p.rng.choice(HOSTS)}/repo.git")
        elif r < 0.8:
            lines.append(f"{ts} ERROR aws: invalid credentials for key {p.aws_key()}")
        elif r < 0.9:
            lines.append(f"{ts} INFO  deployed build {p.sha1()} version {p.version()}")
        else:
            lines.append(f"{ts} INFO  password reset mail sent to {p.email()}")
    return "\n".join(lines) + "\n", "app.log"


MAKERS = [env_file, yaml_file, ini_file, json_file, pem_file, xml_file, properties_file, shell_script, redis_conf,
          system_conf, auth_log, app_log]


def make_corpus(seed: int, docs: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(docs):
        p = Planter(rng)
        maker = MAKERS[i % len(MAKERS)]
        text, name = maker(p)
        kind = "log" if name.endswith(".log") else "code" if name.endswith(".sh") else "config"
        missing = [x["value"] for x in p.planted if x["value"] not in text]
        assert not missing, (maker.__name__, missing)
        out.append({"id": f"s{seed}-{i:05d}", "text": text, "kind": kind, "uri": f"mem://{seed}/{i}/{name}",
                    "planted": p.planted, "negatives": p.negatives})
    return out


def spans_of(text: str, value: str) -> list[tuple[int, int]]:
    out, start = [], text.find(value)
    while start >= 0:
        out.append((start, start + len(value)))
        start = text.find(value, start + 1)
    return out


PII = {"email", "ipv4", "ipv6", "mac", "hostname"}


def score(corpus: list[dict], find, part: str = "all") -> dict:
    """Recall over planted items and precision over what `find(text)` reports as (start, end,
    type) spans: a finding is right when it overlaps a planted item's occurrence, whatever type it
    names. `part`: "all", "secrets" or "pii" (types outside `PII` are secrets)."""
    def wanted(kind: str) -> bool:
        return part == "all" or (kind in PII) == (part == "pii")

    planted = found = true_pos = hits = 0
    misses, false_pos = [], []
    for row in corpus:
        items = [x for x in row["planted"] if wanted(x["type"])]
        spans = [(s, e, x) for x in items for s, e in spans_of(row["text"], x["value"])]
        all_spans = [sp for x in row["planted"] for sp in spans_of(row["text"], x["value"])]
        findings = find(row["text"])
        covered = set()
        for start, end, kind in findings:
            if not wanted(kind):
                continue
            found += 1
            if any(s < end and start < e for s, e in all_spans):
                true_pos += 1
            else:
                false_pos.append((row["id"], row["text"][start:end][:60], kind))
            for s, e, x in spans:
                if s < end and start < e:
                    covered.add(id(x))
        for x in items:
            planted += 1
            if id(x) in covered:
                hits += 1
            else:
                misses.append((row["id"], x["type"], x["value"][:60]))
    return {"planted": planted, "recall": hits / max(planted, 1), "findings": found,
            "precision": true_pos / max(found, 1), "misses": misses, "false_positives": false_pos}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--docs", type=int, default=300)
    args = parser.parse_args()
    for row in make_corpus(args.seed, args.docs):
        sys.stdout.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
