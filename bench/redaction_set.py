"""A labelled set for redaction, written from the published formats of the field's maintained
rule sets rather than from this project's rules: the rule families of gitleaks' default
configuration (config/gitleaks.toml: cloud providers, payment processors, chat and CI tokens, VCS
tokens, package registries, AI and SaaS APIs, private keys, JWTs, connection strings, generic
assignments) and detect-secrets' plugins (AWS, Azure, Artifactory, Discord, GitHub, GitLab,
Mailchimp, npm, OpenAI, PyPI, SendGrid, Slack, Square, Stripe, Telegram, Twilio, keywords).

Values are planted in real-looking configs (.env, YAML, JSON, INI, TOML, properties, .npmrc,
.pypirc, docker-compose), logs (HTTP access and application logs) and JSONL records, beside hard
negatives that must stay intact: hashes, UUIDs, image digests, base64 of text that is no secret,
SSH public keys, Subresource Integrity strings, and the example keys of vendors' docs.

    python bench/redaction_set.py --seed 1 --docs 480 --out bench/data/redaction_seed1.jsonl.gz

Each line: {"id", "text", "kind", "uri", "planted": [{"family", "type", "value"}],
"negatives": [{"type", "value"}]}. Every value is drawn from a generator seeded with `--seed`.
The committed sets: seed 1 (the development set) and seed 2 (held out: nobody tunes on it).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import random
import string
import sys
from pathlib import Path

LOWER, UPPER, DIGITS = string.ascii_lowercase, string.ascii_uppercase, string.digits
ALNUM = LOWER + UPPER + DIGITS
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"
BECH32 = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"
USERS = ["alice", "deploy", "svc_backup", "jenkins", "postgres", "admin", "grafana", "app"]
HOSTS = ["db01.internal", "cache-2.prod.local", "api.example.net", "mq.svc.cluster.local", "10.0.3.17"]
WORDS = ["river", "falcon", "copper", "orbit", "maple", "quartz", "harbor", "velvet", "ember", "tundra"]
FAMILIES = ["cloud", "payment", "chat", "ci_devops", "vcs", "package_registry", "ai_saas", "private_key", "jwt",
            "connection_string", "generic"]


class Planter:
    """Draws secrets (recorded as planted) and hard negatives (recorded as negatives)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.planted: list[dict] = []
        self.negatives: list[dict] = []

    def s(self, chars: str, n: int) -> str:
        return "".join(self.rng.choice(chars) for _ in range(n))

    def plant(self, family: str, type_: str, value: str) -> str:
        self.planted.append({"family": family, "type": type_, "value": value})
        return value

    def neg(self, type_: str, value: str) -> str:
        self.negatives.append({"type": type_, "value": value})
        return value

    # -- secrets, by family: (family, type, maker) ------------------------------------------

    def cloud(self) -> tuple[str, str]:
        """Returns (assignment key, value) so the caller can write it in its own syntax."""
        r = self.rng.randrange(7)
        if r == 0:
            prefix = self.rng.choice(["AKIA", "ASIA", "ABIA", "ACCA"])
            return "aws_access_key_id", self.plant("cloud", "aws_access_key", prefix + self.s(UPPER + "234567", 16))
        if r == 1:
            return "aws_secret_access_key", self.plant("cloud", "aws_secret_key", self.s(B64, 40))
        if r == 2:
            return "google_api_key", self.plant("cloud", "gcp_api_key", "AIza" + self.s(URLSAFE, 35))
        if r == 3:
            return "do_token", self.plant("cloud", "digitalocean", self.rng.choice(["dop_v1_", "doo_v1_", "dor_v1_"])
                                          + self.s(HEX, 64))
        if r == 4:
            return "alibaba_access_key_id", self.plant("cloud", "alibaba", "LTAI" + self.s(LOWER + DIGITS + UPPER, 20))
        if r == 5:
            return "heroku_api_key", self.plant("cloud", "heroku", "HRKU-AA" + self.s(URLSAFE, 58))
        return "azure_storage", "DefaultEndpointsProtocol=https;AccountName=logs;AccountKey=" + self.plant(
            "cloud", "azure_storage_key", self.s(B64, 86) + "==") + ";EndpointSuffix=core.windows.net"

    def payment(self) -> tuple[str, str]:
        r = self.rng.randrange(5)
        if r == 0:
            return "stripe_secret", self.plant("payment", "stripe", self.rng.choice(["sk", "rk"]) + "_"
                                               + self.rng.choice(["live", "live", "test"]) + "_" + self.s(ALNUM, self.rng.choice([24, 99])))
        if r == 1:
            return "square_token", self.plant("payment", "square", self.rng.choice(["sq0atp-", "EAAA"]) + self.s(URLSAFE, 60))
        if r == 2:
            return "square_secret", self.plant("payment", "square", "sq0csp-" + self.s(URLSAFE, 43))
        if r == 3:
            return "shopify_token", self.plant("payment", "shopify", self.rng.choice(["shpat_", "shpss_", "shpca_", "shppa_"])
                                               + self.s("0123456789abcdefABCDEF", 32))
        return "braintree", self.plant("payment", "braintree", f"access_token$production${self.s(LOWER + DIGITS, 16)}"
                                                               f"${self.s(HEX, 32)}")

    def chat(self) -> tuple[str, str]:
        r = self.rng.randrange(6)
        if r == 0:
            return "slack_token", self.plant("chat", "slack_token", self.rng.choice(["xoxb-", "xoxp-", "xoxa-", "xoxe-"])
                                             + f"{self.s(DIGITS, 12)}-{self.s(DIGITS, 13)}-{self.s(ALNUM, 24)}")
        if r == 1:
            return "slack_app_token", self.plant("chat", "slack_token", f"xapp-1-A{self.s(UPPER + DIGITS, 10)}-"
                                                                         f"{self.s(DIGITS, 13)}-{self.s(HEX, 64)}")
        if r == 2:
            return "slack_webhook", "https://hooks.slack.com/services/" + self.plant(
                "chat", "slack_webhook", f"T{self.s(UPPER + DIGITS, 10)}/B{self.s(UPPER + DIGITS, 10)}/{self.s(ALNUM, 24)}")
        if r == 3:
            return "discord_webhook", "https://discord.com/api/webhooks/" + self.plant(
                "chat", "discord_webhook", f"{self.s(DIGITS, 18)}/{self.s(URLSAFE, 68)}")
        if r == 4:
            return "telegram_bot_token", self.plant("chat", "telegram_bot", f"{self.s(DIGITS, 10)}:A{self.s(URLSAFE, 34)}")
        return "twilio_api_key", self.plant("chat", "twilio", "SK" + self.s(HEX, 32))

    def ci_devops(self) -> tuple[str, str]:
        r = self.rng.randrange(8)
        if r == 0:
            return "tf_token", self.plant("ci_devops", "terraform", f"{self.s(LOWER + DIGITS, 14)}.atlasv1."
                                                                    f"{self.s(LOWER + DIGITS + '-_', 67)}")
        if r == 1:
            return "doppler_token", self.plant("ci_devops", "doppler", "dp.pt." + self.s(ALNUM, 43))
        if r == 2:
            return "pulumi_access_token", self.plant("ci_devops", "pulumi", "pul-" + self.s(HEX, 40))
        if r == 3:
            return "databricks_token", self.plant("ci_devops", "databricks", "dapi" + self.s(HEX, 32))
        if r == 4:
            return "grafana_sa_token", self.plant("ci_devops", "grafana", f"glsa_{self.s(ALNUM, 32)}_{self.s(HEX, 8)}")
        if r == 5:
            return "sentry_auth_token", self.plant("ci_devops", "sentry", "sntryu_" + self.s(HEX, 64))
        if r == 6:
            return "runner_token", self.plant("ci_devops", "gitlab_runner", "glrt-" + self.s(URLSAFE, 20))
        return "dt_api_token", self.plant("ci_devops", "dynatrace", f"dt0c01.{self.s(UPPER + DIGITS, 24)}."
                                                                    f"{self.s(UPPER + DIGITS, 64)}")

    def vcs(self) -> tuple[str, str]:
        r = self.rng.randrange(4)
        if r == 0:
            return "github_token", self.plant("vcs", "github", self.rng.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"])
                                              + self.s(ALNUM, 36))
        if r == 1:
            return "github_pat", self.plant("vcs", "github", f"github_pat_{self.s(ALNUM, 22)}_{self.s(ALNUM, 59)}")
        if r == 2:
            return "gitlab_token", self.plant("vcs", "gitlab", "glpat-" + self.s(URLSAFE, 20))
        return "gitlab_trigger", self.plant("vcs", "gitlab", "glptt-" + self.s(HEX, 40))

    def package_registry(self) -> tuple[str, str]:
        r = self.rng.randrange(5)
        if r == 0:
            return "npm_token", self.plant("package_registry", "npm", "npm_" + self.s(LOWER + DIGITS, 36))
        if r == 1:
            return "pypi_token", self.plant("package_registry", "pypi", "pypi-AgEIcHlwaS5vcmc" + self.s(URLSAFE, 140))
        if r == 2:
            return "rubygems_api_key", self.plant("package_registry", "rubygems", "rubygems_" + self.s(HEX, 48))
        if r == 3:
            return "docker_pat", self.plant("package_registry", "docker_hub", "dckr_pat_" + self.s(URLSAFE, 27))
        return "artifactory_api_key", self.plant("package_registry", "artifactory", "AKC" + self.s(ALNUM, 70))

    def ai_saas(self) -> tuple[str, str]:
        r = self.rng.randrange(8)
        if r == 0:
            if self.rng.random() < 0.5:
                v = f"sk-proj-{self.s(URLSAFE, 74)}T3BlbkFJ{self.s(URLSAFE, 74)}"
            else:
                v = f"sk-{self.s(ALNUM, 20)}T3BlbkFJ{self.s(ALNUM, 20)}"
            return "openai_api_key", self.plant("ai_saas", "openai", v)
        if r == 1:
            return "anthropic_api_key", self.plant("ai_saas", "anthropic", f"sk-ant-api03-{self.s(URLSAFE, 93)}AA")
        if r == 2:
            return "hf_token", self.plant("ai_saas", "huggingface", "hf_" + self.s(LOWER + UPPER, 34))
        if r == 3:
            return "sendgrid_api_key", self.plant("ai_saas", "sendgrid", f"SG.{self.s(URLSAFE, 22)}.{self.s(URLSAFE, 43)}")
        if r == 4:
            return "mailgun_api_key", self.plant("ai_saas", "mailgun", "key-" + self.s(HEX, 32))
        if r == 5:
            return "mailchimp_api_key", self.plant("ai_saas", "mailchimp", f"{self.s(HEX, 32)}-us{self.rng.randint(10, 21)}")
        if r == 6:
            return "linear_api_key", self.plant("ai_saas", "linear", "lin_api_" + self.s(LOWER + DIGITS, 40))
        return "newrelic_api_key", self.plant("ai_saas", "newrelic", "NRAK-" + self.s(UPPER + DIGITS, 27))

    def generic(self) -> tuple[str, str]:
        """An unknown provider's token under a key that names a secret (gitleaks' generic-api-key,
        detect-secrets' KeywordDetector)."""
        key = self.rng.choice(["api_key", "apiKey", "X_API_KEY", "auth_token", "client_secret", "webhook_secret",
                               "ZEPHYR_TOKEN", "access_token", "signing_key", "secret_key", "license_key",
                               "encryption_key", "hmac_secret", "app_secret", "private_token", "masterKey",
                               "session_secret", "refresh_token", "credentials", "service_key"])
        r = self.rng.randrange(3)
        if r == 0:
            v = self.s(ALNUM, self.rng.randint(20, 48))
        elif r == 1:
            v = self.s(HEX, self.rng.choice([32, 40, 64]))
        else:
            v = base64.b64encode(self.rng.randbytes(self.rng.randint(18, 40))).decode()
        return key, self.plant("generic", "generic", v)

    def password(self) -> tuple[str, str]:
        key = self.rng.choice(["password", "db_password", "DB_PASS", "redis_password", "smtp_pass", "passwd"])
        v = self.rng.choice(WORDS).capitalize() + str(self.rng.randint(10, 9999)) + self.rng.choice("!#%&*?")
        return key, self.plant("generic", "password", v)

    def connection(self) -> tuple[str, str]:
        user, host, pw = self.rng.choice(USERS), self.rng.choice(HOSTS), self.s(ALNUM, self.rng.randint(10, 20))
        r = self.rng.randrange(6)
        if r == 0:
            return "DATABASE_URL", f"postgresql://{user}:{self.plant('connection_string', 'postgres', pw)}@{host}:5432/app"
        if r == 1:
            return "MONGO_URI", (f"mongodb+srv://{user}:{self.plant('connection_string', 'mongodb', pw)}@{host}"
                                 "/prod?retryWrites=true")
        if r == 2:
            return "REDIS_URL", f"redis://:{self.plant('connection_string', 'redis', pw)}@{host}:6379/0"
        if r == 3:
            return "AMQP_URL", f"amqp://{user}:{self.plant('connection_string', 'amqp', pw)}@{host}:5672/vhost"
        if r == 4:
            return "ConnectionString", (f"Server={host};Database=app;User Id={user};"
                                        f"Password={self.plant('connection_string', 'ado_net', pw)};")
        return "jdbc_url", (f"jdbc:mysql://{host}:3306/app?user={user}&password="
                            f"{self.plant('connection_string', 'jdbc', pw)}")

    def jwt(self) -> str:
        def enc(obj) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=").decode()
        claims = {"sub": self.rng.choice(USERS), "iat": self.rng.randint(1_600_000_000, 1_800_000_000),
                  "scope": self.rng.choice(["read", "admin", "deploy"])}
        sig = base64.urlsafe_b64encode(self.rng.randbytes(self.rng.choice([32, 64]))).rstrip(b"=").decode()
        alg = self.rng.choice(["HS256", "RS256", "ES256"])
        return self.plant("jwt", "jwt", f"{enc({'alg': alg, 'typ': 'JWT'})}.{enc(claims)}.{sig}")

    def private_key(self) -> str:
        kind = self.rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY",
                                "DSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "PGP PRIVATE KEY BLOCK"])
        body = base64.b64encode(self.rng.randbytes(self.rng.randint(200, 700))).decode()
        lines = [body[i:i + 64] for i in range(0, len(body), 64)]
        return self.plant("private_key", "pem", "\n".join([f"-----BEGIN {kind}-----", *lines, f"-----END {kind}-----"]))

    def age_key(self) -> str:
        return self.plant("private_key", "age", "AGE-SECRET-KEY-1" + self.s(BECH32, 58))

    def any_secret(self) -> tuple[str, str]:
        maker = self.rng.choice([self.cloud, self.payment, self.chat, self.ci_devops, self.vcs, self.package_registry,
                                 self.ai_saas, self.generic, self.generic, self.password, self.connection])
        return maker()

    # -- hard negatives ----------------------------------------------------------------------

    def hex_digest(self) -> tuple[str, str]:
        key, n = self.rng.choice([("sha256", 32), ("checksum", 32), ("commit", 20), ("md5sum", 16), ("etag", 16),
                                  ("git_sha", 20), ("build_id", 20), ("content_hash", 32)])
        return key, self.neg("hash", self.rng.randbytes(n).hex())

    def uuid(self) -> tuple[str, str]:
        h = self.rng.randbytes(16).hex()
        key = self.rng.choice(["request_id", "trace_id", "uuid", "instance_id", "tenant_id", "correlation_id"])
        return key, self.neg("uuid", f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}")

    def image_digest(self) -> tuple[str, str]:
        return "image", "registry.example.net/app@" + self.neg("digest", "sha256:" + self.rng.randbytes(32).hex())

    def integrity(self) -> tuple[str, str]:
        return "integrity", self.neg("sri", "sha512-" + base64.b64encode(self.rng.randbytes(64)).decode())

    def b64_text(self) -> tuple[str, str]:
        plain = " ".join(self.rng.choice(WORDS + ["the", "log", "level", "info", "config"]) for _ in range(8))
        key = self.rng.choice(["banner_b64", "motd", "data", "payload", "template"])
        return key, self.neg("base64_text", base64.b64encode(plain.encode()).decode())

    def ssh_public(self) -> tuple[str, str]:
        body = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00 " + self.rng.randbytes(32)).decode()
        return "authorized_key", self.neg("ssh_public_key", f"ssh-ed25519 {body}")

    def doc_example(self) -> tuple[str, str]:
        """Vendors' documentation examples: published, not anyone's key."""
        key, v = self.rng.choice([
            ("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE"),
            ("aws_secret_access_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            ("api_key", "YOUR_API_KEY"),
            ("token", "<your-token-here>"),
            ("github_token", "ghp_" + "x" * 36),
            ("stripe_key", "sk_live_" + "X" * 24),
            ("api_key", "${API_KEY}"),
            ("password", "changeit_in_production_EXAMPLE"),
        ])
        return key, self.neg("doc_example", v)

    def any_negative(self) -> tuple[str, str]:
        return self.rng.choice([self.hex_digest, self.hex_digest, self.uuid, self.uuid, self.image_digest,
                                self.integrity, self.b64_text, self.ssh_public, self.doc_example])()


# -- documents ----------------------------------------------------------------------------------

def _items(p: Planter, secrets: int, negatives: int) -> list[tuple[str, str]]:
    items = [p.any_secret() for _ in range(secrets)] + [p.any_negative() for _ in range(negatives)]
    p.rng.shuffle(items)
    return items


def env_file(p: Planter) -> tuple[str, str]:
    lines = ["# generated by the deploy pipeline", f"APP_ENV={p.rng.choice(['prod', 'staging'])}"]
    lines += [f"{k.upper()}={v}" if p.rng.random() < 0.7 else f'export {k.upper()}="{v}"' for k, v in _items(p, 4, 3)]
    return "\n".join(lines) + "\n", ".env"


def yaml_file(p: Planter) -> tuple[str, str]:
    lines = ["service:", f"  name: {p.rng.choice(['billing', 'ingest', 'search'])}", "  settings:"]
    for k, v in _items(p, 4, 3):
        lines.append(f"    {k}: {v}" if p.rng.random() < 0.5 else f'    {k}: "{v}"')
    return "\n".join(lines) + "\n", "config.yaml"


def compose_file(p: Planter) -> tuple[str, str]:
    lines = ["services:", "  app:", f"    image: app:{p.rng.randint(1, 9)}.{p.rng.randint(0, 20)}", "    environment:"]
    lines += [f"      - {k.upper()}={v}" for k, v in _items(p, 3, 2)]
    lines += ["    ports:", '      - "8080:8080"']
    return "\n".join(lines) + "\n", "docker-compose.yml"


def json_file(p: Planter) -> tuple[str, str]:
    obj = {}
    for k, v in _items(p, 4, 3):
        obj[k if k not in obj else f"{k}_{len(obj)}"] = v
    if p.rng.random() < 0.3:
        obj["tls_key"] = p.private_key()
        p.planted[-1]["value"] = json.dumps(obj["tls_key"])[1:-1]  # as the file spells it: `\n` escapes
    return json.dumps({"version": 2, "credentials": obj}, indent=2) + "\n", "settings.json"


def ini_file(p: Planter) -> tuple[str, str]:
    lines = ["[default]", f"region = {p.rng.choice(['eu-west-1', 'us-east-1'])}"]
    lines += [f"{k} = {v}" for k, v in _items(p, 3, 2)]
    lines += ["", "[worker]"] + [f"{k}={v}" for k, v in _items(p, 2, 2)]
    return "\n".join(lines) + "\n", "app.ini"


def toml_file(p: Planter) -> tuple[str, str]:
    lines = ["[server]", 'host = "0.0.0.0"', "", "[secrets]"] + [f'{k} = "{v}"' for k, v in _items(p, 4, 3)]
    return "\n".join(lines) + "\n", "config.toml"


def properties_file(p: Planter) -> tuple[str, str]:
    lines = ["# Spring Boot", "server.port=8080"] + [f"app.{k.lower().replace('_', '-')}={v}" for k, v in _items(p, 3, 3)]
    return "\n".join(lines) + "\n", "application.properties"


def registry_rc(p: Planter) -> tuple[str, str]:
    if p.rng.random() < 0.5:
        _, tok = p.package_registry()
        text = f"registry=https://registry.npmjs.org/\n//registry.npmjs.org/:_authToken={tok}\nalways-auth=true\n"
        return text, ".npmrc"
    v = p.plant("package_registry", "pypi", "pypi-AgEIcHlwaS5vcmc" + p.s(URLSAFE, 140))
    return f"[distutils]\nindex-servers = pypi\n\n[pypi]\nusername = __token__\npassword = {v}\n", ".pypirc"


def pem_file(p: Planter) -> tuple[str, str]:
    if p.rng.random() < 0.3:
        return f"# age-keygen\n# public key: age1{p.s(LOWER + DIGITS, 58)}\n{p.age_key()}\n", "key.txt"
    return p.private_key() + "\n", "server.key"


def _ts(p: Planter) -> str:
    return f"2026-{p.rng.randint(1, 12):02d}-{p.rng.randint(1, 28):02d}T{p.rng.randint(0, 23):02d}:" \
           f"{p.rng.randint(0, 59):02d}:{p.rng.randint(0, 59):02d}Z"


def access_log(p: Planter) -> tuple[str, str]:
    lines = []
    for _ in range(p.rng.randint(6, 12)):
        r = p.rng.random()
        path = p.rng.choice(["/v1/items", "/health", "/api/search", "/hooks/in"])
        if r < 0.25:
            k, v = p.any_secret()
            path += f"?{k.lower()}={v}&page={p.rng.randint(1, 9)}"
        elif r < 0.4:
            k, v = p.any_negative()
            path += f"?{k}={v}"
        ip = f"{p.rng.randint(11, 200)}.{p.rng.randint(0, 255)}.{p.rng.randint(0, 255)}.{p.rng.randint(1, 254)}"
        lines.append(f'{ip} - - [{_ts(p)}] "GET {path} HTTP/1.1" 200 {p.rng.randint(100, 9000)} "-" "curl/8.5.0"')
    return "\n".join(lines) + "\n", "access.log"


def app_log(p: Planter) -> tuple[str, str]:
    lines = []
    for _ in range(p.rng.randint(6, 12)):
        r = p.rng.random()
        level = p.rng.choice(["INFO", "DEBUG", "WARN"])
        if r < 0.15:
            lines.append(f"{_ts(p)} {level} http: sending Authorization: Bearer {p.jwt()}")
        elif r < 0.4:
            k, v = p.any_secret()
            forms = ["{k}={v}", "loaded {k}: {v}", "config {k}=\"{v}\"", "env {K}={v} set"]
            if p.planted[-1]["family"] != "generic":  # a format that speaks for itself needs no key
                forms += ["retrying upload with {v}", "client init ({v}) ok"]
            form = p.rng.choice(forms)
            lines.append(f"{_ts(p)} {level} startup: " + form.format(k=k, K=k.upper(), v=v))
        elif r < 0.6:
            k, v = p.any_negative()
            lines.append(f"{_ts(p)} {level} worker: {k}={v} done in {p.rng.randint(1, 900)}ms")
        else:
            lines.append(f"{_ts(p)} {level} worker: processed {p.rng.randint(1, 5000)} items")
    return "\n".join(lines) + "\n", "app.log"


def jsonl_records(p: Planter) -> tuple[str, str]:
    lines = []
    for _ in range(p.rng.randint(3, 6)):
        rec = {"ts": _ts(p), "level": p.rng.choice(["info", "debug"]), "msg": "request"}
        for k, v in _items(p, p.rng.randint(0, 2), p.rng.randint(0, 2)):
            rec[k if k not in rec else f"{k}_{len(rec)}"] = v
        if p.rng.random() < 0.2:
            rec["headers"] = {"authorization": f"Bearer {p.jwt()}"}
        lines.append(json.dumps(rec))
    return "\n".join(lines) + "\n", "events.jsonl"


MAKERS = [env_file, yaml_file, compose_file, json_file, ini_file, toml_file, properties_file, registry_rc, pem_file,
          access_log, app_log, jsonl_records]


def make_set(seed: int, docs: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(docs):
        p = Planter(rng)
        maker = MAKERS[i % len(MAKERS)]
        text, name = maker(p)
        kind = "log" if name.endswith((".log", ".jsonl")) else "config"
        # a negative the generator happened to draw inside a planted value would be ambiguous
        p.negatives = [n for n in p.negatives if not any(n["value"] in x["value"] for x in p.planted)]
        for x in p.planted + p.negatives:
            assert x["value"] in text, (maker.__name__, x)
        out.append({"id": f"r{seed}-{i:05d}", "text": text, "kind": kind, "uri": f"mem://{seed}/{i}/{name}",
                    "planted": p.planted, "negatives": p.negatives})
    return out


def load_set(path: str | Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def write_set(rows: list[dict], path: str | Path) -> None:
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--docs", type=int, default=480)
    parser.add_argument("--out", help="a .jsonl.gz file (default: JSON lines on stdout)")
    args = parser.parse_args()
    rows = make_set(args.seed, args.docs)
    if args.out:
        write_set(rows, args.out)
    else:
        sys.stdout.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
