"""`tui-gpt` in a real terminal (tmux): first frame, a prompt typed, the completion read off the screen."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tui_gpt.app.services.transcripts import TranscriptStore

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    """One detached tmux session on a private server, driven like a person at a keyboard."""

    def __init__(self, command: list[str], width: int, height: int):
        self.server = f"tui-gpt-test-{uuid.uuid4().hex[:8]}"
        env = {**os.environ, "TERM": "xterm-256color"}
        self._tmux("new-session", "-d", "-s", "app", "-x", str(width), "-y", str(height), "-c", str(REPO),
                   " ".join(command), env=env)

    def _tmux(self, *args: str, env=None) -> str:
        result = subprocess.run(["tmux", "-L", self.server, *args], capture_output=True, text=True, env=env)
        if result.returncode:
            raise RuntimeError(result.stderr.strip())
        return result.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "app")

    def keys(self, *keys: str, literal: bool = False) -> None:
        self._tmux("send-keys", "-t", "app", *(["-l"] if literal else []), *keys)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{self.screen()}")

    def alive(self) -> bool:
        return subprocess.run(["tmux", "-L", self.server, "has-session", "-t", "app"],
                              capture_output=True).returncode == 0

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True)


def test_prompt_and_read_the_streamed_completion_in_tmux(tmp_path):
    data_dir = tmp_path / "data"
    tmux = Tmux([sys.executable, "-m", "tui_gpt", "--data-dir", str(data_dir)], width=100, height=30)
    try:
        tmux.wait_for("loading engine", timeout=30)  # the first frame comes before torch is imported
        tmux.wait_for("engine ready", timeout=60)
        tmux.wait_for("untrained gpt-nano", timeout=60)
        tmux.keys("Every effort moves you", literal=True)
        tmux.keys("Enter")
        screen = tmux.wait_for("50 generated", timeout=60)
        completion = TranscriptStore(data_dir / "transcripts").load(("fresh", "gpt-nano"))[-1].completion
        # The transcript is the first bordered box of each line; its text is wrapped (long words
        # folded), so compare without whitespace.
        transcript = "".join(line.split("│")[1] for line in screen.splitlines() if line.count("│") >= 2)
        assert re.sub(r"\s", "", "Every effort moves you" + completion) in re.sub(r"\s", "", transcript)
        assert "Traceback" not in screen
        tmux.keys("C-q")
        deadline = time.monotonic() + 15
        while tmux.alive():
            assert time.monotonic() < deadline, f"the app did not quit:\n{tmux.screen()}"
            time.sleep(0.1)
    finally:
        tmux.close()
