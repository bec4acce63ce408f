import pytest

from stages.ingest.classify import classify


def test_loghub_logs_are_logs(loghub):
    for path in sorted(loghub.glob("*/*_2k.log")):
        assert classify(str(path), path.read_text(errors="replace")) == "log", path.name


@pytest.mark.parametrize("path,text,kind", [
    ("/etc/ssh/sshd_config", "Port 22\nPermitRootLogin no\nUsePAM yes\n", "config"),
    ("/lib/systemd/system/ssh.service", "[Unit]\nDescription=OpenBSD Secure Shell server\n", "config"),
    ("/usr/share/doc/bash/README", "This is GNU Bash.\n", "doc"),
    ("/usr/share/doc/x/changelog.Debian.gz", "x (1.0) unstable; urgency=low\n", "doc"),
    ("/usr/bin/script", "#!/bin/sh\necho hi\n", "code"),
    ("/home/u/tool.py", "import os\n", "code"),
    ("/var/log/dpkg.log.1", "2024-01-01 10:00:00 status installed\n", "log"),
    ("/data/unknown", "2024-01-01 10:00:00 started\n2024-01-01 10:00:01 stopped\n", "log"),
    ("/data/settings", "alpha = 1\nbeta = two\n[section]\ngamma: 3\n", "config"),
])
def test_by_name_then_content(path, text, kind):
    assert classify(path, text) == kind


def test_machine_configs_are_configs():
    import glob

    paths = [p for p in glob.glob("/etc/*.conf") if not p.endswith("ld.so.conf")]
    if not paths:
        pytest.skip("no /etc/*.conf here")
    kinds = [classify(p, open(p, errors="replace").read()) for p in paths]
    assert kinds.count("config") == len(kinds)
