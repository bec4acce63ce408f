"""A labelled set of secrets written the way people and programs write them in free text: chat
messages, tickets, READMEs, log lines and tools' own output, where words introduce a value
("the password for db01 is ...", "using aws secret key ... for upload", "Unseal Key 1: ...")
rather than a `KEY=value` assignment. The values come from the same published formats as
`bench/redaction_set.py` (its `Planter`), plus passwords and Vault's unseal keys and tokens;
each is written in one of several phrasings per register (prose, log line, tool output,
command line).

Beside them, look-alikes that must stay intact: digests, commit ids, UUIDs, key fingerprints,
GPG key ids, base64 of plain text, SSH public keys and vendors' documentation examples, many
of them next to the same words (`the token's sha256 is ...`, `commit ... fixed the token
refresh`, `API key id ...`), and values that a secret word introduces but that are no secret
(placeholders, variable references, paths, URLs, object names, masked values).

    python bench/redaction_prose_set.py --seed 11 --out bench/data/redaction_prose_seed11.jsonl.gz
    python bench/redaction_prose_set.py --seed 12 --held-out 1 --out bench/data/redaction_prose_seed12.jsonl.gz
    python bench/redaction_prose_set.py --seed 13 --out bench/data/redaction_prose_seed13.jsonl.gz
    python bench/redaction_prose_set.py --seed 14 --held-out 2 --out bench/data/redaction_prose_seed14.jsonl.gz

Seed 11 is the development set. Seed 12 was held out with phrasings and look-alikes that the
development set never shows (`--held-out 1`); it was scored once and its misses then read, so it
is held out no longer. Seed 13 (new values, the development set's phrasings) and seed 14 (new
values, and a second group of unseen phrasings and look-alikes, `--held-out 2`) were written
before the rules changed again and are scored only to report. Each line has the
fields of `bench/redaction_set.py`'s sets: {"id", "text", "kind", "uri", "planted": [{"family",
"type", "value"}], "negatives": [{"type", "value"}]}.
"""

from __future__ import annotations

import argparse
import base64
import random
import re
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from bench.redaction_set import (ALNUM, B64, DIGITS, HEX, HOSTS, LOWER, UPPER, USERS, WORDS, Planter,  # noqa: E402
                                 write_set)

FAMILIES = ["cloud", "payment", "chat", "ci_devops", "vcs", "package_registry", "ai_saas", "jwt", "connection_string",
            "generic", "password", "vault"]
TARGETS = ["db01", "the staging db", "prod", "the billing api", "grafana", "the build box", "jenkins", "the vpn",
           "mq.svc.cluster.local", "the replica"]
PURPOSES = ["upload", "the backup job", "the nightly sync", "deploys", "the migration", "CI"]
COMPONENTS = ["startup", "auth", "client", "vault-agent", "uploader", "worker", "config"]
FILLER = ["restarted the service after that", "no errors in the logs since", "see the runbook for details",
          "the job finished at 02:10", "will rotate it again on Friday", "ping me if it breaks",
          "it was copied from the old wiki", "the deploy went out with it", "works on staging too",
          "closing this ticket once verified"]
# How a key name is said in words (`aws_secret_access_key` -> "AWS secret access key").
ACRONYMS = {"aws": "AWS", "api": "API", "gcp": "GCP", "do": "DigitalOcean", "tf": "Terraform", "dt": "Dynatrace",
            "hf": "Hugging Face", "npm": "npm", "pypi": "PyPI", "hmac": "HMAC", "db": "DB", "smtp": "SMTP",
            "x": "X", "id": "ID", "sa": "service account", "pat": "PAT"}


def spoken(key: str) -> str:
    """A key name as words: `ZEPHYR_TOKEN` -> "zephyr token", `masterKey` -> "master key"."""
    parts = re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", key)
    return " ".join(ACRONYMS.get(p.lower(), p.lower()) for p in parts)


class ProsePlanter(Planter):
    """Draws a secret with the words that name it, and look-alikes with the words around them.
    `held_out`: 1 or 2, also the phrasings and look-alikes that only that held-out split has."""

    def __init__(self, rng: random.Random, held_out: int = 0):
        super().__init__(rng)
        self.held_out = held_out

    def choose(self, shared: list, first: list, second: list = ()):
        return self.rng.choice(shared + {0: [], 1: list(first), 2: list(second)}[self.held_out])

    def password_value(self) -> str:
        r = self.rng.random()
        if r < 0.35:
            v = self.rng.choice(WORDS).capitalize() + str(self.rng.randint(10, 9999)) + self.rng.choice("!#%&*?")
        elif r < 0.6:
            v = self.s(ALNUM + "!#%^*-_@", self.rng.randint(10, 20))
        elif r < 0.8:
            w = self.rng.choice(WORDS + ["hunter", "summer", "letmein", "dragon", "monkey"])
            v = (w + str(self.rng.randint(1, 99))) * self.rng.choice([1, 2])
        else:
            v = "-".join(self.rng.sample(WORDS, 3)) + str(self.rng.randint(1, 99))
        return self.plant("password", "password", v)

    def named_secret(self) -> tuple[str, str]:
        """(what the value is called, the value)."""
        r = self.rng.random()
        if r < 0.22:
            word = self.rng.choice(["password", "password", "passwd", "pass", "passphrase", "pw", "pwd", "root password",
                                    "admin password", "db password", "login password", "SMTP password"])
            return word, self.password_value()
        if r < 0.34:
            word = self.rng.choice(["AWS secret key", "aws secret access key", "secret access key", "secret key",
                                    "secret"])
            return word, self.plant("cloud", "aws_secret_key", self.s(B64, 40))
        if r < 0.42:
            return self.vault()
        if r < 0.62:
            key, value = self.generic()
            word = spoken(key)
            if self.rng.random() < 0.3:
                word = self.rng.choice(["token", "API token", "access token", "secret", "signing secret",
                                        "webhook signing secret", "client secret", "shared secret", "app key",
                                        "master key", "recovery key", "encryption key", "license key", "auth key"])
            return word, value
        if r < 0.66:
            return self.rng.choice(["ID token", "JWT", "session token", "bearer token"]), self.jwt()
        maker = self.rng.choice([self.cloud, self.payment, self.chat, self.ci_devops, self.vcs, self.package_registry,
                                 self.ai_saas, self.connection])
        key, value = maker()
        if maker == self.connection and "://" not in value:  # an ADO.NET or JDBC string: the whole string is said
            return "connection string", value
        return spoken(key), value

    def vault(self) -> tuple[str, str]:
        r = self.rng.randrange(3)
        if r == 0:
            return "unseal key", self.plant("vault", "unseal_key", base64.b64encode(self.rng.randbytes(33)).decode())
        if r == 1:
            return "root token", self.plant("vault", "vault_token", "hvs." + self.s(ALNUM + "_-", 90))
        return "vault token", self.plant("vault", "vault_token", "s." + self.s(ALNUM, 24))

    def look_alike(self) -> str:
        """A sentence or log message holding a value that is no secret, next to words like a secret's."""
        rng, s = self.rng, self.s
        sha40, sha64, h = rng.randbytes(20).hex(), rng.randbytes(32).hex(), rng.randbytes(16).hex()
        uuid = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"
        forms = [
            lambda: f"commit {self.neg('commit', sha40)} fixed the token refresh",
            lambda: f"fixed in {self.neg('commit', sha40[:12])}, the old password check is gone",
            lambda: f"the sha256 of the secret file is {self.neg('hash', sha64)}",
            lambda: f"the token's sha256 is {self.neg('hash', sha64)}",
            lambda: f"md5 of the key bundle: {self.neg('hash', rng.randbytes(16).hex())}",
            lambda: f"checksum {self.neg('hash', sha64)} matches the credentials archive",
            lambda: f"request {self.neg('uuid', uuid)} failed: invalid token",
            lambda: f"API key id {self.neg('uuid', uuid)} was revoked",
            lambda: f"trace id {self.neg('trace_id', rng.randbytes(16).hex())} (auth: password)",
            lambda: f"session {self.neg('uuid', uuid)} closed after the password change",
            lambda: f"The key fingerprint is SHA256:{self.neg('fingerprint', base64.b64encode(rng.randbytes(32)).decode().rstrip('='))}",
            lambda: f"gpg: key {self.neg('gpg_key_id', rng.randbytes(8).hex().upper())}: public key imported",
            lambda: f"signed with key fingerprint {self.neg('fingerprint', rng.randbytes(20).hex().upper())}",
            lambda: f"pulled the vault image at {self.neg('digest', 'sha256:' + sha64)}",
            lambda: f"ETag {self.neg('hash', rng.randbytes(16).hex())} for the secrets page",
            lambda: f"the banner of the password page is base64: {self.b64_text()[1]}",  # recorded by the maker
            lambda: f"public key: {self.ssh_public()[1]}",
            lambda: f"the token endpoint is {self.neg('url', 'https://auth.example.net/oauth/token')}",
            lambda: f"secret {self.neg('object_name', rng.choice(['db-credentials-prod', 'tls-ingress-cert', 'registry-pull-secret']))} created",
            lambda: f"password: {self.neg('masked', rng.choice(['********', '<redacted>', '[REDACTED]', '(none)', 'xxxxxxxx']))}",
            lambda: f"api key: {self.neg('reference', rng.choice(['${API_KEY}', '$API_KEY', '{{ api_key }}', '%API_KEY%']))}",
            lambda: f"the password is stored in {self.neg('path', rng.choice(['/etc/app/db.pass', '/run/secrets/db_password', '~/.pgpass']))}",
            lambda: f"the docs' example access key is {self.neg('doc_example', 'AKIAIOSFODNN7EXAMPLE')}",
            lambda: f"use the example secret {self.neg('doc_example', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY')} from the docs",
            lambda: f"token: {self.neg('doc_example', rng.choice(['YOUR_API_TOKEN', '<your-token-here>', 'ghp_' + 'x' * 36]))}",
            lambda: f"build {self.neg('build_id', s(LOWER + DIGITS, 20))} passed the secret scan",
            lambda: f"object key {self.neg('path', 'backups/2026/' + s(HEX, 8) + '.tar.zst')} uploaded",
            lambda: f"Unseal Nonce: {self.neg('uuid', uuid)}",
            lambda: f"token count {self.neg('number', str(rng.randint(1000, 99999)))} of the context",
            lambda: self.neg("phrase", f"pass {rng.randint(2, 5)} of 5 finished"),
            lambda: f"npm integrity {self.integrity()[1]} for the auth package",
            lambda: self.neg("phrase", f"password for {rng.choice(USERS)} changed"),
        ]
        held_out_only = [
            lambda: self.neg("phrase", f"the password must be at least {rng.randint(8, 16)} characters"),
            lambda: f"sha1 of the token file: {self.neg('hash', sha40)}",
            lambda: f"key id {self.neg('key_id', rng.randbytes(8).hex())} (the API key itself is in the vault)",
            lambda: f"the secret's etag is {self.neg('hash', rng.randbytes(16).hex())}",
            lambda: f"password reset link sent (request {self.neg('uuid', uuid)})",
            lambda: f"rotated secret {self.neg('object_name', rng.choice(['smtp-relay-auth', 'ci-deploy-key']))} in the cluster",
            lambda: f"Token ID: {self.neg('uuid', uuid)}",
        ]
        second = [
            lambda: self.neg("phrase", f"the password was last rotated on 2026-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"),
            lambda: f"token fingerprint {self.neg('fingerprint', rng.randbytes(20).hex())}",
            lambda: f"key-id: {self.neg('key_id', rng.randbytes(8).hex())}",
            lambda: f"secrets manager arn {self.neg('object_name', 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:app')}",
            lambda: f"credentials cache at {self.neg('path', '/var/cache/creds/' + rng.randbytes(4).hex())}",
        ]
        return self.choose(forms, held_out_only, second)()


# -- phrasings: how a (name, value) pair is written, by register ---------------------------------

PROSE = [
    "{Name} is {v}",
    "the {name} for {target} is {v}",
    "{name}: {v} (don't share it)",
    "{name}: {v} is what {user} used",
    "using {name} {v} for {purpose}",
    "set the {name} to {v} and restarted",
    "rotated the {name} today, the new one is {v}",
    "my {name} = {v} but it still fails",
    "here's the {name}: `{v}`",
    "{name} \"{v}\" was rejected by the server",
    "tried again with {name} {v} and it worked",
    "{Name} changed to {v} yesterday",
    "new {name} -> {v}",
    "try {v} as the {name}",
    "{Name} for {user}@{host}: {v}",
    "@{user} the {name} is '{v}', {filler}",
]
PROSE_HELD_OUT = [
    "the {name} we use everywhere is still {v}, should change it",
    "reset the {name} on {target}; it's {v} until Monday",
    "{Name}? it's {v}",
    "can you check whether {v} is still the {name} for {target}",
    "I put {v} in as the {name}",
    "{Name} (for {target}) = {v}",
]
PROSE_HELD_OUT_2 = [
    "{target} {name} \u2014 {v}",
    "got the {name} from {user}: {v}",
    "{v} <- new {name} for {target}",
    "the {name}, in case you need it: {v}",
    "use {name} {v} when prompted",
    "{Name} for the box hasn't changed, still {v}",
]
LOG = [
    "{ts} {LEVEL} {comp}: loaded {name} {v}",
    "{ts} {LEVEL} {comp}: auth ok with {name} {v}",
    "{ts} {LEVEL} {comp}: {name} {v} expires in 3600s",
    "{ts} {LEVEL} {comp}: received {name} '{v}' from vault",
    "{ts} {LEVEL} {comp}: using {name}: {v}",
    "[{ts}] {comp}.{LEVEL}: {name} accepted ({v})",
    "{ts} {LEVEL} {comp}: request failed: invalid {name} {v}",
    "{ts} {comp}[{pid}]: {LEVEL} new {name} is {v}",
]
LOG_HELD_OUT = [
    "{ts} {LEVEL} {comp}: authenticating as {user} using {name} {v}",
    "{ts} {LEVEL} {comp}: {name} set: {v}",
    "{ts} [{comp}] {name} rotated -> {v}",
]
LOG_HELD_OUT_2 = [
    "{ts} {LEVEL} {comp}: {name} ok [{v}]",
    "{ts} {LEVEL} {comp}: set {name}={v} for {user}",
    "{ts} {LEVEL} {comp}: {name} -> '{v}'",
]
# a tool's own output, with the words that tool prints, by the planted type (vault operator init and
# login, MySQL's first start, Jenkins' and Elasticsearch's set-up, aws configure, pwgen-like tools)
TOOL = {
    "unseal_key": ["Unseal Key {i}: {v}"],
    "vault_token": ["Initial Root Token: {v}", "token                {v}"],
    "password": ["{ts} 6 [Note] [MY-010454] [Server] A temporary password is generated for root@localhost: {v}",
                 "Please use the following password to proceed to installation:\n\n{v}\n",
                 "Generated password: {v}",
                 "Password for the elastic user (reset with `bin/elasticsearch-reset-password -u elastic`):\n  {v}",
                 "Your new password is: {v}"],
    "aws_secret_key": ["AWS Secret Access Key [None]: {v}"],
}
TOOL_HELD_OUT = {
    "password": ["Login: {user}\nPassword: {v}", "The generated password for the elastic built-in superuser is : {v}",
                 "Default admin password: {v}"],
}
TOOL_HELD_OUT_2 = {
    "password": ["Root password is set to: {v}", "New password: {v}\nRetype new password: {v}"],
}
# a command line that carries the value: passwords as options, tokens in headers
COMMAND = {
    "password": ["sshpass -p {v} ssh {user}@{host}", "mysql -u {user} -p{v} app", "curl -u {user}:{v} https://{host}/api",
                 "redis-cli -a {v} ping", "PGPASSWORD={v} psql -h {host} -U {user}"],
    "token": ["curl -H 'X-API-Key: {v}' https://{host}/v1/items", "curl -H \"Authorization: token {v}\" https://{host}"],
}
COMMAND_HELD_OUT = {
    "password": ["docker login -u {user} -p {v} registry.example.net", "wget --http-password={v} https://{host}/f"],
    "token": [],
}

COMMAND_HELD_OUT_2 = {
    "password": ["htpasswd -b .htpasswd {user} {v}", "smbclient //{host}/share -U {user}%{v}"],
    "token": [],
}


def _fill(p: ProsePlanter, form: str, name: str, value: str) -> str:
    rng = p.rng
    return form.format(
        v=value, name=name, Name=name[:1].upper() + name[1:], target=rng.choice(TARGETS), purpose=rng.choice(PURPOSES),
        user=rng.choice(USERS), host=rng.choice(HOSTS[:4]), filler=rng.choice(FILLER), ts=_ts(p),
        LEVEL=rng.choice(["INFO", "DEBUG", "WARN"]), comp=rng.choice(COMPONENTS), pid=rng.randint(100, 99999),
        i=rng.randint(1, 5))


def _ts(p: ProsePlanter) -> str:
    return f"2026-{p.rng.randint(1, 12):02d}-{p.rng.randint(1, 28):02d}T{p.rng.randint(0, 23):02d}:" \
           f"{p.rng.randint(0, 59):02d}:{p.rng.randint(0, 59):02d}Z"


def secret_line(p: ProsePlanter, register: str) -> str:
    name, value = p.named_secret()
    family, type_ = p.planted[-1]["family"], p.planted[-1]["type"]
    if register == "tool" and type_ in TOOL:
        return _fill(p, p.choose(TOOL[type_], TOOL_HELD_OUT.get(type_, []), TOOL_HELD_OUT_2.get(type_, [])), name, value)
    if register == "command" and family in ("password", "generic", "vault"):
        which = "password" if family == "password" else "token"
        return _fill(p, p.choose(COMMAND[which], COMMAND_HELD_OUT[which], COMMAND_HELD_OUT_2[which]), name, value)
    if register == "pair":  # a key id and its secret in one sentence; a user and a password
        if type_ == "aws_secret_key":
            key_id = p.plant("cloud", "aws_access_key", p.rng.choice(["AKIA", "ASIA"]) + p.s(UPPER + "234567", 16))
            return f"Rotated creds today: access key {key_id} with secret {value} and it worked"
        if family == "password":
            return f"{p.rng.choice(USERS)} / {value} is the login for {p.rng.choice(TARGETS)}"
        return f"creds for {p.rng.choice(TARGETS)}: {p.rng.choice(USERS)}:{value}"
    if register in ("log", "tool", "command"):
        return _fill(p, p.choose(LOG, LOG_HELD_OUT, LOG_HELD_OUT_2), name, value)
    return _fill(p, p.choose(PROSE, PROSE_HELD_OUT, PROSE_HELD_OUT_2), name, value)


def document(p: ProsePlanter, i: int) -> tuple[str, str]:
    """A chat thread, a ticket, a README section or a log file with 2-5 secrets and 2-4 look-alikes."""
    rng = p.rng
    style = ["chat", "ticket", "readme", "log"][i % 4]
    lines = []
    for _ in range(rng.randint(2, 5)):
        register = rng.choices(["prose", "log", "tool", "command", "pair"], [5, 3, 2, 1, 1])[0]
        if style == "log" and register == "prose":
            register = "log"
        lines.append(secret_line(p, register))
    for _ in range(rng.randint(2, 4)):
        alike = p.look_alike()
        lines.append(alike if style != "log" else f"{_ts(p)} INFO {rng.choice(COMPONENTS)}: {alike}")
    for _ in range(rng.randint(1, 3)):
        lines.append(rng.choice(FILLER) if style != "log" else f"{_ts(p)} INFO worker: {rng.choice(FILLER)}")
    rng.shuffle(lines)
    if style == "chat":
        lines = [f"[{rng.randint(8, 18):02d}:{rng.randint(0, 59):02d}] <{rng.choice(USERS)}> {x}" for x in lines]
        return "\n".join(lines) + "\n", "chat.txt"
    if style == "ticket":
        head = [f"Ticket OPS-{rng.randint(100, 9999)}: {rng.choice(['login fails', 'deploy broken', 'rotate creds'])}",
                "", "Steps so far:"]
        return "\n".join(head + [f"- {x}" for x in lines]) + "\n", "ticket.md"
    if style == "readme":
        return "## Access\n\n" + "\n\n".join(lines) + "\n", "README.md"
    return "\n".join(lines) + "\n", "app.log"


def make_set(seed: int, docs: int, held_out: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(docs):
        p = ProsePlanter(rng, held_out)
        text, name = document(p, i)
        kind = "log" if name.endswith(".log") else "doc"
        p.negatives = [n for n in p.negatives if not any(n["value"] in x["value"] or x["value"] in n["value"]
                                                         for x in p.planted)]
        for x in p.planted + p.negatives:
            assert x["value"] in text, (name, x)
        out.append({"id": f"p{seed}-{i:05d}", "text": text, "kind": kind, "uri": f"mem://{seed}/{i}/{name}",
                    "planted": p.planted, "negatives": p.negatives})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--docs", type=int, default=480)
    parser.add_argument("--held-out", type=int, choices=[0, 1, 2], default=0,
                        help="1 or 2: also the phrasings and look-alikes of that held-out split (none of them "
                             "in the development set)")
    parser.add_argument("--out", required=True, help="a .jsonl.gz file")
    args = parser.parse_args()
    write_set(make_set(args.seed, args.docs, args.held_out), args.out)


if __name__ == "__main__":
    main()
