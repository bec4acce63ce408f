"""The import rules hold for the project, and the check finds a broken rule and a circle."""

import subprocess
import sys
from pathlib import Path

from pipeline.layering import check

ROOT = Path(__file__).resolve().parents[2]


def test_the_project_keeps_its_layering():
    run = subprocess.run([sys.executable, "-m", "pipeline.layering"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout
    assert run.stdout.strip() == "ok"


def test_the_check_finds_a_forbidden_import_and_a_circle(tmp_path):
    files = {
        "pipeline/__init__.py": "",
        "pipeline/engine.py": "def run():\n    from stages.thing import Thing\n",
        "stages/__init__.py": "",
        "stages/thing.py": "from stages import other\nThing = 1\n",
        "stages/other.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import jobs.x\n"
                           "def f():\n    from . import thing\n",
        "sigma/__init__.py": "",
        "jobs/__init__.py": "",
        "jobs/x.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    problems = check(tmp_path)
    assert problems == ["pipeline.engine (line 2) imports stages.thing: pipeline must not import stages",
                        "import circle: stages.other -> stages.thing"]
