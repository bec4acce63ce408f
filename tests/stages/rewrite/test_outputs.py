"""Output checks: each failure gives its reason; good answers are rewritten in one canonical form."""

import pytest

from stages.rewrite.outputs import check_output, copy_share, trim_to_sentence
from stages.rewrite.templates import load_template

LOG = """081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating
081109 204005 35 INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blockMap updated: 10.251.73.220:50010 is added"""
MAN = """LS(1)                            User Commands                           LS(1)

NAME
       ls - list directory contents

SYNOPSIS
       ls [OPTION]... [FILE]...

DESCRIPTION
       List information about the FILEs (the current directory by default).
       -a, --all
              do not ignore entries starting with ."""
CONFIG = "Port 22\nPermitRootLogin no\nPasswordAuthentication yes\nX11Forwarding yes"


def test_prose_is_kept_and_a_cut_answer_trimmed_to_its_last_sentence():
    t = load_template("explain_log")
    answer = ("The HDFS DataNode finished writing a block and the NameNode recorded the new replica. "
              "Nothing failed here; this is the normal end of a block write and")
    checked = check_output(t, answer, "length", t.cut(LOG), LOG)
    assert checked.reason is None
    assert checked.output.endswith("block write.") is False and checked.output.endswith("replica.")


def test_prose_failures_have_reasons():
    t = load_template("explain_log")
    assert check_output(t, "  \n ", "eos", LOG, LOG).reason == "synth_empty"
    assert check_output(t, "and then the", "length", LOG, LOG).reason == "synth_truncated"
    assert check_output(t, "It is fine.", "eos", LOG, LOG).reason == "synth_too_short"
    copied = check_output(t, LOG, "eos", t.cut(LOG), LOG)
    assert copied.reason == "synth_copy" and "excerpt" in copied.detail


def test_qa_pairs_are_parsed_into_one_form():
    t = load_template("man_qa")
    answer = ("Q: What does ls do?\nA: It lists directory contents.\n\n2. Question: How do I show hidden files?\n"
              "Answer: Use -a or --all,\nwhich does not ignore entries starting with a dot.\nQ: What is")
    checked = check_output(t, answer, "length", t.cut(MAN), MAN)
    assert checked.reason is None and checked.items == 2
    assert checked.output == ("Q: What does ls do?\nA: It lists directory contents.\n\n"
                              "Q: How do I show hidden files?\nA: Use -a or --all, which does not ignore entries "
                              "starting with a dot.")
    assert check_output(t, "ls is a command that lists things in a directory.", "eos", MAN, MAN).reason == "synth_unparsed"


def test_command_pairs_must_use_the_parent_command():
    t = load_template("man_nl2cmd")
    answer = ("Task: list all files including hidden ones\nCommand: `ls -a`\n\nTask: show a long listing\n"
              "Command: $ sudo ls -l /etc\n\nTask: count words\nCommand: wc -w file.txt")
    checked = check_output(t, answer, "eos", t.cut(MAN), MAN)
    assert checked.reason is None and checked.items == 2
    assert checked.output == ("Task: list all files including hidden ones\nCommand: ls -a\n\n"
                              "Task: show a long listing\nCommand: sudo ls -l /etc")
    assert check_output(t, "Task: count the words of f\nCommand: wc -w f", "eos", MAN, MAN).reason == "synth_ungrounded"
    assert check_output(t, "Task: 22\nCommand: ls -a", "eos", MAN, MAN).reason == "synth_degenerate"
    assert check_output(t, "Task: list every file\nCommand: ls -a -a -a", "eos", MAN, MAN).reason == "synth_degenerate"


def test_settings_must_be_in_the_excerpt():
    t = load_template("annotate_config")
    answer = ("- Port: the TCP port sshd listens on\n- PermitRootLogin: whether root may log in over ssh\n"
              "- MaxSessions: the number of sessions")
    checked = check_output(t, answer, "eos", CONFIG, CONFIG)
    assert checked.reason is None and checked.items == 2 and "MaxSessions" not in checked.output
    assert check_output(t, "- Foo: bar baz qux quux\n- Baz: something else entirely", "eos", CONFIG,
                        CONFIG).reason == "synth_ungrounded"


def test_answers_start_with_the_cue_after_the_examples():
    """Chat models see the examples as earlier turns and their own turn opened with the cue; base
    models see them as earlier texts, and the request's text ends with the cue."""
    t = load_template("man_qa")
    prompt = t.prompt("EXCERPT")
    example = t.examples[0]
    assert prompt.prefill == "Q:" and prompt.plain.endswith("EXCERPT\n\nQuestions and answers about this command:\nQ:")
    assert [role for role, _ in prompt.messages] == ["system", "user", "assistant", "user"]
    assert example.input.strip() in prompt.messages[1][1] and prompt.messages[2][1] == example.output.strip()
    assert prompt.plain.index(example.output.splitlines()[-1]) < prompt.plain.index("EXCERPT")
    assert len(t.prompt("EXCERPT", examples=0).messages) == 2 and "nl - number" not in t.prompt("E", examples=0).plain
    assert t.answer(" What is ls?\nA: A lister.") == "Q: What is ls?\nA: A lister."


@pytest.mark.parametrize("text,expected", [("One. Two", "One."), ("no end", ""), ("a\nb", "a")])
def test_trim_to_sentence(text, expected):
    assert trim_to_sentence(text) == expected


def test_copy_share():
    assert copy_share("a b c d e f", "x a b c d e f y") == 1.0
    assert copy_share("a b c d e f", "unrelated words only here now") == 0.0
    assert copy_share("short", "short") == 0.0


def test_markdown_answers_of_chat_models_are_read_as_command_pairs():
    t = load_template("man_nl2cmd")
    answer = ("Here are three tasks:\n\n1. **Listing all files in the current directory**.\n\n```\nls -l\n```\n\n"
              "This lists files.\n\n2. **Show hidden files**: `ls -a`\n3. **Sort by time**\n\n`ls -t`\n4. **Cut")
    checked = check_output(t, answer, "length", t.cut(MAN), MAN)
    assert checked.reason is None
    assert checked.output == ("Task: Listing all files in the current directory\nCommand: ls -l\n\n"
                              "Task: Show hidden files\nCommand: ls -a\n\nTask: Sort by time\nCommand: ls -t")


def test_answers_that_repeat_the_question_are_degenerate():
    t = load_template("man_qa")
    answer = "\n\n".join(f"Q: [{i}] How does ls list files?\nA: [{i + 1}] How does ls list files?" for i in range(3))
    assert check_output(t, answer, "eos", MAN, MAN).reason == "synth_degenerate"
    twice = "Q: What does ls do?\nA: It lists the files of a directory.\n\nQ: what does  ls do?\nA: It lists things."
    assert check_output(t, twice, "eos", MAN, MAN).items == 1


def test_config_excerpt_skips_comments():
    t = load_template("annotate_config")
    text = "# header\n# more\n\n; note\nPort 22\n  # indented comment\nUser root\n"
    assert t.cut(text) == "Port 22\nUser root"


def test_commands_are_verified_against_the_man_pages(man_root):
    """A pair whose command uses an option the page never names is left out, and named in
    `unverified`; an answer with no verified pair is dropped as `synth_unverified`."""
    from stages.rewrite.verified import Verifier

    t = load_template("man_nl2cmd")
    verifier = Verifier([str(man_root.parent)])
    uri = f"file://{man_root}/ls.1.gz"
    answer = ("Task: list all files including hidden ones\nCommand: ls -a\n\n"
              "Task: list in colour\nCommand: ls --colour-mode=always")
    checked = check_output(t, answer, "eos", t.cut(MAN), MAN, verifier, uri)
    assert checked.reason is None and checked.items == 1 and "colour" not in checked.output
    assert checked.unverified == ["unknown_option:ls:--colour-mode in 'ls --colour-mode=always'"]
    bad = check_output(t, "Task: list hidden files\nCommand: ls -j", "eos", t.cut(MAN), MAN, verifier, uri)
    assert bad.reason == "synth_unverified:unknown_option" and "ls:-j" in bad.detail
    # the reason is the problem's code, never the item's text (a colon inside the command included)
    unclosed = check_output(t, 'Task: list a file\nCommand: ls -a "x:y', "eos", t.cut(MAN), MAN, verifier, uri)
    assert unclosed.reason == "synth_unverified:unparsable" and "x:y" in unclosed.detail


def test_settings_are_verified_against_the_parsed_file():
    from stages.rewrite.verified import Verifier

    t = load_template("annotate_config")
    answer = "- Port: the TCP port sshd listens on\n- PermitRootLogin: whether root may log in over ssh"
    checked = check_output(t, answer, "eos", CONFIG, CONFIG, Verifier(), "file:///etc/ssh/sshd_config")
    assert checked.reason is None and checked.items == 2
    # in the excerpt's text, but no setting of the file: a value, and part of a keyword
    answer = "- yes: turns it on\n- Forwarding: whether X11 is forwarded\n- X11Forwarding: whether X11 is forwarded"
    checked = check_output(t, answer, "eos", CONFIG, CONFIG, Verifier(), "file:///etc/ssh/sshd_config")
    assert checked.items == 1 and [u.split(" in ")[0] for u in checked.unverified] == ["unknown_key:yes",
                                                                                     "unknown_key:Forwarding"]


def test_the_worked_examples_items_written_again_are_copies():
    t = load_template("man_nl2cmd")
    copied = "Command: shuf -i 1-100 -n 3\nTask: pick three random numbers between 1 and 100"
    assert check_output(t, copied, "eos", t.cut(MAN), MAN).reason == "synth_copy"
    mixed = copied + "\n\nCommand: ls /etc\nTask: list the files of /etc"
    assert check_output(t, mixed, "eos", t.cut(MAN), MAN).output == "Task: list the files of /etc\nCommand: ls /etc"


def test_a_command_written_first_opens_with_the_pages_program():
    """man_nl2cmd asks for the command first, opened with the page's program and an option its
    excerpt lists, then its task; the child is written task first, as `sigma eval nl2cmd` asks."""
    t = load_template("man_nl2cmd")
    prompt = t.prompt(t.cut(MAN))
    assert prompt.prefill == "Command: ls -a" and prompt.plain.endswith("Command: ls -a")
    answer = t.answer("\nTask: list every file, hidden ones too\n\nCommand: ls -l /etc\nTask: a long listing of /etc", t.cut(MAN))
    checked = check_output(t, answer, "eos", t.cut(MAN), MAN)
    assert checked.output == ("Task: list every file, hidden ones too\nCommand: ls -a\n\n"
                              "Task: a long listing of /etc\nCommand: ls -l /etc")


def test_commands_run_the_pages_program_and_hold_no_placeholder(man_root):
    from stages.rewrite.verified import Verifier

    problems = Verifier([str(man_root.parent)]).problems(
        "commands", [("a", "ls -l [FILE]"), ("b", "ls -la <dir>"), ("c", "df -h"), ("d", "sudo ls -a /root")], "", MAN,
        f"file://{man_root}/ls.1.gz")
    assert problems == ["placeholder:[FILE]", "placeholder:<dir>", "other_program:df", None]


def test_an_annotation_starts_with_the_excerpts_first_setting():
    t = load_template("annotate_config")
    prompt = t.prompt(CONFIG)
    assert prompt.prefill == "- Port:" and prompt.plain.endswith("What each setting does:\n- Port:")
    assert "- MAIL_DIR: the directory" in prompt.plain  # the example, after its own first setting
    assert t.answer(" the TCP port\n- User: who", CONFIG) == "- Port: the TCP port\n- User: who"


def test_an_explanation_is_kept_up_to_its_first_unverified_sentence():
    from stages.rewrite.verified import Verifier

    t = load_template("explain_log")
    first = "The DataNode's PacketResponder finished writing block blk_38865049064139660 and terminated."
    checked = check_output(t, f"{first} It then asked 10.9.9.9 for more. All was well.", "eos", LOG, LOG, Verifier())
    assert checked.reason is None and checked.output == first
    assert checked.unverified == ["unknown_value:10.9.9.9 in ' It then asked 10.9.9.9 for more.'"]
    wrong = check_output(t, "Block blk_1234567 came from 10.9.9.9 after a restart of the node.", "eos", LOG, LOG, Verifier())
    assert wrong.reason == "synth_unverified:unknown_value"
