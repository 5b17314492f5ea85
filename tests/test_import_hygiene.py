"""The layering holds: import-linter's contracts (pyproject.toml), and no torch where none belongs.

Each probe runs in a fresh interpreter, since this one has torch loaded long
ago: the only proof that an import really stays light.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "safetensors")


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_are_kept():
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")
    result = run_python(code)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("modules", [
    "engine.runs.store, engine.runs.events, engine.runs.checkpoints, engine.runs.summary, engine.runs.progress, "
    "engine.runs.exit_codes, engine.errors",
    "tui_gpt.cli.main, tui_gpt.cli.commands, tui_gpt.cli.progress",
], ids=["run-folder", "cli"])
def test_importing_loads_no_torch(modules):
    result = run_python(f"import sys, {modules}; print([m for m in {HEAVY!r} if m in sys.modules])")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# The app up to its first frame, with the engine load (which does import torch) held back meanwhile.
FIRST_FRAME = """
import asyncio, json, sys, threading
from tui_gpt.app import app as app_module

release = threading.Event()

def held_engine(explicit_data_dir):
    release.wait()
    raise RuntimeError("the probe is over")

app_module.load_engine = held_engine

async def first_frame():
    app = app_module.TuiGptApp(sys.argv[1])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        shown = [pane.id for pane in app.query("TabPane")]
        loaded = [m for m in HEAVY if m in sys.modules]
        release.set()
    print(json.dumps({"panes": shown, "loaded": loaded}))

asyncio.run(first_frame())
"""


def test_the_app_draws_its_first_frame_without_torch(tmp_path):
    result = run_python(f"HEAVY = {HEAVY!r}\n{FIRST_FRAME}", str(tmp_path))
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe == {"panes": ["prompt", "train", "stats", "runs", "inspect"], "loaded": []}
