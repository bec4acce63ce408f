"""Ground-truth checks of generated text: setting names against the parsed file, an explanation's
fields and values against the log lines (real Loghub lines), a man page answer's options against
the page."""

from stages.verify.commands import CommandChecker
from stages.verify.config_keys import setting_names, unknown_setting
from stages.verify.log_values import unknown_mention
from stages.verify.man_answers import unknown_in_answer
from stages.verify.man_options import options_of_text

NGINX = "user www-data;\nevents {\n    worker_connections 768;\n}\nhttp {\n    sendfile on;\n    server { listen 80; }\n}\n"
INI = "[mysqld]\nport = 3306\nbind-address = 127.0.0.1\n\n[client]\nsocket = /run/mysqld/mysqld.sock\n"
UNIT = "[Unit]\nDescription=OpenBSD Secure Shell server\n\n[Service]\nExecStart=/usr/sbin/sshd -D\nRestart=on-failure\n"
HDFS = ("081109 204005 35 INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blockMap updated: "
        "10.251.73.220:50010 is added to blk_7128370237687728475 size 67108864\n"
        "081109 204655 556 INFO dfs.DataNode$PacketResponder: Received block blk_3587508140051953248 of size "
        "67108864 from /10.251.42.84")
LS = """LS(1)                            User Commands                           LS(1)

NAME
       ls - list directory contents

DESCRIPTION
       -a, --all
              do not ignore entries starting with .

       -l     use a long listing format
"""


def test_setting_names_at_every_depth_by_the_files_parser():
    assert setting_names("/etc/nginx/nginx.conf", NGINX) == ("nginx", {"user", "events", "worker_connections",
                                                                       "http", "sendfile", "server", "listen"})
    fmt, names = setting_names("/etc/mysql/my.cnf", INI)
    assert fmt == "ini" and names == {"mysqld", "port", "bind-address", "client", "socket"}
    assert setting_names("/lib/systemd/system/ssh.service", UNIT)[1] >= {"Unit", "Service", "ExecStart", "Restart"}
    assert setting_names("app.json", '{"server": {"port": 8080, "tls": {"cert": "a.pem"}}}')[1] == {
        "server", "port", "tls", "cert"}


def test_an_annotation_names_only_the_files_settings():
    assert unknown_setting(["worker_connections", "sendfile"], "/etc/nginx/nginx.conf", NGINX) is None
    assert unknown_setting(["sendfile", "keepalive_timeout"], "/etc/nginx/nginx.conf", NGINX) == "unknown_key:keepalive_timeout"
    assert unknown_setting(["Port"], "/etc/mysql/my.cnf", INI) is None  # INI keys compare without case
    assert unknown_setting(["ExecStop"], "/lib/systemd/system/ssh.service", UNIT) == "unknown_key:ExecStop"


def test_an_explanation_names_only_the_lines_fields_and_values():
    good = ("The NameSystem (dfs.FSNamesystem) added block blk_7128370237687728475 of 67108864 bytes from "
            "10.251.73.220 port 50010, and the PacketResponder received another, e.g. 2 blocks in all.")
    assert unknown_mention(good, HDFS) is None
    assert unknown_mention("Block blk_7128370237687728475 came from 10.251.73.221.", HDFS) == "unknown_value:10.251.73.221"
    assert unknown_mention("The dfs.DataNode$DataXceiver thread failed.", HDFS) == "unknown_field:dfs.DataNode$DataXceiver"
    assert unknown_mention("The `NameNode` restarted.", HDFS) == "unknown_field:NameNode"


def test_a_man_answer_names_only_the_pages_options(man_root):
    options = options_of_text("ls", LS)
    checker = CommandChecker([str(man_root.parent)])
    assert unknown_in_answer("Use -a (or --all), with -l for a long listing: `ls -la /etc`.", "ls", options, checker) is None
    assert unknown_in_answer("Use -R to list subdirectories.", "ls", options, checker) == "unknown_option:ls:-R"
    assert unknown_in_answer("Run `ls -j`.", "ls", options, checker) == "unknown_option:ls:-j"
