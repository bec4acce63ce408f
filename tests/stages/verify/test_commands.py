"""Command lines checked against this machine's real man pages: the shell's grammar, getopt's
rules, commands that run commands, and the verdicts' reasons; and `sigma check-commands`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stages.verify.commands import CommandChecker
from stages.verify.man_options import head_options, list_heads, options_of_text
from stages.verify.shell_syntax import ShellSyntaxError, simple_commands

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def checker(man_root):
    for page in ("ls", "find", "tar", "xargs", "grep", "sort", "head", "bash", "ssh"):
        if not list((man_root).glob(f"{page}.1*")):
            pytest.skip(f"the {page} man page is not installed")
    return CommandChecker([str(man_root.parent)])


def test_simple_commands_follow_the_shells_grammar():
    line = 'VAR=1 ls -la "a b" 2>&1 | grep -c x && echo $(sort -u `cat f`) > out; for f in *; do wc -l "$f"; done'
    words = [[w.text for w in c.words] for c in simple_commands(line)]
    assert words == [["VAR=1", "ls", "-la", "a b"], ["grep", "-c", "x"], ["echo", "$(sort -u `cat f`)"], ["wc", "-l", "$f"]]
    assert simple_commands(line)[2].substitutions == ["sort -u `cat f`"]
    assert [w.text for w in simple_commands(r"find . -exec rm {} \;")[0].words][-1] == ";"  # a word, not an operator
    with pytest.raises(ShellSyntaxError):
        simple_commands("echo 'unclosed")


def test_option_list_heads_give_arguments():
    assert head_options("-n, --lines=[+]NUM") == {"-n": "required", "--lines": "required"}
    assert head_options("-u, -U NUM, --unified[=NUM]") == {"-u": "none", "-U": "required", "--unified": "optional"}
    assert head_options("-d --decompress --uncompress") == {"-d": "none", "--decompress": "none", "--uncompress": "none"}
    assert head_options("-depth is given, then -prune has no effect.") == {}  # prose, not a head
    page = ("OPTIONS\n       -a, --all\n              do not ignore entries\n\n"
            "       -P     Never follow symbolic links.\n              More.\n\n"
            "       -gid n File's group ID is n.\n              More.\n")
    assert list_heads(page) == ["-a, --all", "-P", "-gid n"]
    options = options_of_text("x", "SYNOPSIS\n       x [-ers] [-a aname]\n\nDESCRIPTION\n       with -q, quiet\n")
    assert options.arity == {"-a": "required", "-e": "none", "-r": "none", "-s": "none"}
    assert options.knows("-q") and not options.knows("-z")


@pytest.mark.parametrize("command", [
    "ls -la /etc", "ls --color=auto -lh", "ls --colo=auto",  # a long option's unambiguous prefix
    "tar -xvzf archive.tar.gz -C /tmp", "tar xvzf archive.tar.gz", "head -n5 f", "head -5 f", "sort -t, -k2,2n f",
    "find . -name '*.py' -mtime -7 -perm -644 -exec grep -l TODO {} \\;", "find / -newermt 2024-01-01 -print0",
    "find . -type f -print0 | xargs -0 -I{} grep -H foo {}", "sudo -u www-data ls -l", "env LC_ALL=C sort -u f",
    "cd /tmp && read -r -p 'name: ' name", "grep -rn -- --weird .", "sh -c 'ls -l | wc -l'", "kill -HUP 1234",
    "ssh -p 2222 host ls --no-such-option-remote", "./build.sh --anything",
])
def test_real_commands_pass(checker, command):
    assert checker.check(command) == "ok"


@pytest.mark.parametrize("command, verdict", [
    ("ls -Q1j", "unknown_option:ls:-j"), ("ls --colour-mode", "unknown_option:ls:--colour-mode"),
    ("tar -xvJqf a.tar", "unknown_option:tar:-q"), ("find . -nmae x", "unknown_option:find:-nmae"),
    ("find . -exec grep -y x {} \\;", "unknown_option:grep:-y"), ("ls | xargs -0 sort -j", "unknown_option:sort:-j"),
    ("sudo -u root ls -j", "unknown_option:ls:-j"), ("echo $(ls -j)", "unknown_option:ls:-j"),
    ("sh -c 'head -j 3 f'", "unknown_option:head:-j"), ("frobnicate -x", "unknown_program:frobnicate"),
    ("ls 'a", "unparsable"), ("", "unparsable"),
])
def test_wrong_commands_say_why(checker, command, verdict):
    assert checker.check(command) == verdict


def test_check_commands_command_line(man_root, tmp_path):
    rows = [{"command": "ls -la", "nl": "list"}, {"command": "ls --colour-mode"}, {"cmd": "x"}]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    done = subprocess.run([sys.executable, "-m", "jobs.sigma_command", "check-commands", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["verdict"] for r in out] == ["ok", "unknown_option:ls:--colour-mode", "unreadable:no_command",
                                          "unreadable:not_json"]
    assert out[0]["nl"] == "list" and "4 rows: 1 ok" in done.stderr
    bad = subprocess.run([sys.executable, "-m", "jobs.sigma_command", "check-commands", str(tmp_path / "none.jsonl")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "is not a file" in bad.stderr and "Traceback" not in bad.stderr
