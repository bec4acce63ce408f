"""The built wheel, installed (not editable) into a fresh virtual environment, runs a named job and
a job with a filter preset from a folder outside the project: the shipped configs come from the
installed package, not from the source tree.

The fresh environment gets the dependencies already installed for this interpreter through a
`.pth` file naming its site-packages: a path line only extends sys.path, so an editable install of
the project there (its `__editable__` finder) is not loaded, and the project is imported from the
wheel (checked).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from jobs.curate import resolve_job_file
from pipeline.config import load_job
from stages.ingest.man import page_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "stages", "sigma", "jobs", "configs")
MAN = Path("/usr/share/man")

pytestmark = pytest.mark.wheel

# English prose that every rule of the system preset keeps, and junk each rule drops
GOOD = [
    "The service reads its configuration file when it starts. When the administrator changes the file, "
    "the service has to be restarted so that the changes take effect. The log file records every request "
    "that the service answers, with the time it took and the address of the client that sent it.",
    "A backup is only useful when it can be restored. Test the restore on a second machine from time to "
    "time, and keep at least one copy of the archive in a different building, so that a fire or a flood "
    "does not destroy both the data and the copy that was made to protect it.",
]
JUNK = {
    "lang_not_en": ("Die Konfiguration des Dienstes wird beim Start aus der Datei gelesen. Wenn der Verwalter "
                    "die Datei ändert, muss der Dienst neu gestartet werden, damit die Änderungen wirksam "
                    "werden. ") * 4,
    "low_printable": "\x00\x07\x1b" * 300 + "end of the page",
    "gopher_dup_lines": "\n".join(["Buy the best cheap watches online now, free shipping on every order today!"] * 30),
}


def run(args: list, cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(the fresh environment's bin folder, a working folder outside the project, its environment)."""
    pytest.importorskip("setuptools", reason="the wheel is built with this interpreter's setuptools (no isolation)")
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy, so the build leaves nothing in the project
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist", source],
        tmp, env)
    wheel, = (tmp / "dist").glob("sigma_lm-*.whl")

    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert shipped - set(zipfile.ZipFile(wheel).namelist()) == set()

    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], tmp, env)
    python = venv / "bin" / "python"
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env).stdout.strip()
    here = [p for p in [*site.getsitepackages(), sysconfig.get_paths()["purelib"]] if os.path.isdir(p)]
    (Path(purelib) / "dependencies.pth").write_text("".join(f"{p}\n" for p in dict.fromkeys(here)))
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel], tmp, env)

    work = tmp / "work"
    work.mkdir()
    where = json.loads(run([python, "-c", "import json, configs, jobs, pipeline, sigma, stages; print(json.dumps("
                            "[m.__file__ for m in (configs, jobs, pipeline, sigma, stages)]))"], work, env).stdout)
    assert all(Path(f).is_relative_to(venv) for f in where), where
    return venv / "bin", work, env


@pytest.mark.slow
def test_a_named_job_runs_from_the_installed_package(installed):
    """`sigma curate adapt/man`: configs/adapt/man.yaml, the man pages of a fixed list."""
    bin_dir, work, env = installed
    if not (MAN / "man1").is_dir():
        pytest.skip(f"{MAN} is not on this machine")
    config = load_job(resolve_job_file("adapt/man"))
    include = set(config.inputs[0].options()["include"])
    pages = [f for section in ("man1", "man8") if (MAN / section).is_dir()
             for f in os.listdir(MAN / section) if page_name(f)[0] in include]
    out = run([bin_dir / "sigma", "curate", "adapt/man", "--output", "man", "--num-cpus", "2", "--json"], work, env)
    totals = json.loads(out.stdout)
    manifest = json.loads((work / "man" / "manifest.json").read_text())
    assert manifest["name"] == "adapt-man" and manifest["config_hash"] == config.output_hash()
    assert totals["balanced"] and totals["input"] == len(pages) and totals["kept"] > 0


@pytest.mark.slow
def test_a_job_with_a_filter_preset_runs_from_the_installed_package(installed):
    """`- preset: {name: system}` expands from configs/filters/system.yaml of the package."""
    bin_dir, work, env = installed
    rows = [{"id": f"good-{i}", "text": text, "kind": "doc"} for i, text in enumerate(GOOD)]
    rows += [{"id": reason, "text": text, "kind": "doc"} for reason, text in JUNK.items()]
    (work / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (work / "job.yaml").write_text(f"name: preset\ninputs:\n  - {{type: jsonl, paths: ['{work / 'docs.jsonl'}']}}\n"
                                   "stages:\n  - preset: {name: system}\n")
    out = run([bin_dir / "sigma", "curate", "job.yaml", "--output", "preset", "--num-cpus", "2", "--json"], work, env)
    totals = json.loads(out.stdout)
    assert totals["balanced"] and totals["input"] == 5 and totals["kept"] == 2
    assert totals["dropped_by_reason"] == {reason: 1 for reason in JUNK}
    manifest = json.loads((work / "preset" / "manifest.json").read_text())
    assert [s["name"] for s in manifest["stages"]] == ["ingest", "unique_ids", "system_checks", "language_filter",
                                                       "gopher_quality", "gopher_repetition", "fineweb_filter"]
