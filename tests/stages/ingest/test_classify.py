import pytest

from stages.ingest.classify import classify, source_format


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


MAN_PAGE = ".TH FOO 1 2024 foo\n.SH NAME\nfoo \\- do things\n.SH SYNOPSIS\n.B foo\n.RI [ options ]\n.SH DESCRIPTION\n" \
           "Foo does things.\n.TP\n.B \\-v\nverbose\n"
PROSE_LINE = "This paragraph of a README was written on one line, as Markdown allows, and it goes on. " * 15
BUNDLE = "!function(e,t){var n=e.document;" + "a.b=function(c){return c+1};" * 200 + "}(window);"
API_JSON = '{\n "modules": [\n' + ''.join(
    f'  {{"name": "m{i}", "desc": "<p>The <code>m{i}</code> module.</p>"}},\n' for i in range(6)) + " ]\n}\n"
CERT = "-----BEGIN CERTIFICATE-----\n" + "MIID9zCCA2CgAwIBAgIJAK+ii7kzrdqsMA0GCSqGSIb3DQEBBQUAMIGuMQswCQYD\n" * 20 + \
       "-----END CERTIFICATE-----\n"


@pytest.mark.parametrize("path,text,kind,expected", [
    ("/usr/share/doc/x/x.1", MAN_PAGE, "doc", "roff"),
    ("/etc/alternatives/x.1.gz", MAN_PAGE, "config", "roff"),
    ("/etc/groff/man.local", ".\\\" local\n.de XX\n.ft B\n.ds YY z\n.nr ZZ 1\n..\n", "config", "roff_source"),
    ("/usr/share/doc/x/manual.texi.gz", "\\input texinfo\n@setfilename x.info\n@node Top\n@chapter One\n", "doc",
     "texinfo_source"),
    ("/usr/share/doc/x/index.html", "<p>hi</p>", "doc", "html"),
    ("/usr/share/doc/x/changelog", "<!DOCTYPE html>\n<html><body>x</body></html>", "doc", "html"),
    ("/usr/share/doc/x/_static/jquery.js", "/*! jQuery */\n(function(){})();\n", "code", "vendored_code"),
    ("/usr/share/doc/x/_static/doctools.js", "const Documentation = {};\n", "code", "vendored_code"),
    ("/usr/share/doc/x/ok.min.css", "a{b:c}\n", "code", "vendored_code"),
    ("/usr/share/doc/apache2-doc/manual/style/scripts/prettify.js", "// Copyright (C) 2006 Google Inc.\n", "code",
     "vendored_code"),
    ("/usr/share/doc/x/app.js.map", '{"version":3,"sources":["a.js"],"mappings":"AAAA"}', "config", "source_map"),
    ("/usr/share/doc/x/bundle.js", BUNDLE, "code", "minified"),
    ("/usr/share/doc/x/api/fs.json.gz", API_JSON, "config", "api_dump"),
    ("/usr/share/doc/x/logo.svg", '<svg xmlns="http://www.w3.org/2000/svg"></svg>', "other", "svg_image"),
    ("/etc/ssl/certs/x.pem", CERT, "config", "pem_data"),
])
def test_source_formats(path, text, kind, expected):
    assert source_format(path, text, kind)[0] == expected


@pytest.mark.parametrize("path,text,kind", [
    ("/usr/share/doc/x/README.md", PROSE_LINE + "\n", "doc"),  # long lines of prose are not minified
    ("/var/log/apt/history.log", "Install: " + "libfoo:amd64 (1.0-1, automatic), " * 100 + "\n", "log"),
    ("/usr/share/doc/x/README", "Use openssl x509 to read:\n\n" + "A line of prose about it.\n" * 40
     + "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "doc"),
    ("/etc/ssh/sshd_config", "Port 22\nPermitRootLogin no\n", "config"),
    ("/usr/share/doc/x/api.md", "# API\n\nThe `.on` method and 'use strict' code.\n", "doc"),
])
def test_text_to_learn_from_is_left_as_it_is(path, text, kind):
    assert source_format(path, text, kind) is None
