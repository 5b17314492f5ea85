"""The TUI's cases: tokens per second reaching the screen, and time to the first frame.

The stream case drives the real app headless (Textual's `run_test`): the
prompt is typed, Enter is pressed, and the clock stops when the completion is
complete in the transcript. The headless peer runs `engine.model.generation.stream`
on the same model, in a thread of the same process while the app idles, as
the app's worker does; the two take turns going first. The first-frame case starts `python -m tui_gpt` on a
pseudo-terminal and stops the clock at the first visible character it draws.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.model.generation import stream
from engine.model.tokenizer import END_OF_TEXT_ID

from .report import CaseResult, Check, Row, Target

SCREEN = (120, 40)
_ESCAPES = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[PX^_][^\x1b]*\x1b\\|.)")


def app_missing() -> str | None:
    return None if importlib.util.find_spec("tui_gpt.app.app") is not None else "app missing"


def tui_stream_case(preset: str, new_tokens: int, prompt: str, repeats: int, warmup: int, title: str) -> CaseResult:
    result = CaseResult(title)
    result.skipped = app_missing()
    if result.skipped:
        return result
    with tempfile.TemporaryDirectory(prefix="tui-gpt-bench-") as data_dir:
        _write_app_state(Path(data_dir), preset, new_tokens)
        tui, headless, same = asyncio.run(_measure_stream(Path(data_dir), preset, prompt, repeats, warmup))
    shown = len(same[0])
    result.checks.append(Check(f"the app showed the {shown} tokens that the headless stream produced",
                               same[0] == same[1] and shown > 0))
    for name, seconds in (("headless stream", headless), ("tui", tui)):
        median = sorted(seconds)[len(seconds) // 2]
        spread = (max(seconds) - min(seconds)) / median
        result.rows.append(Row(name, median, f"{shown} tokens", shown / median, "tok/s", spread=spread))
    result.targets.append(Target("TUI tokens/s ÷ headless stream", result.ratio("tui", "headless stream"), 0.95))
    return result


def first_frame_case(repeats: int, warmup: int, title: str) -> CaseResult:
    result = CaseResult(title)
    result.skipped = app_missing()
    if result.skipped:
        return result
    with tempfile.TemporaryDirectory(prefix="tui-gpt-bench-") as data_dir:
        seconds = [_time_to_first_frame(Path(data_dir)) for _ in range(warmup + repeats)][warmup:]
    median = sorted(seconds)[len(seconds) // 2]
    result.rows.append(Row("tui-gpt", median, "first frame", spread=(max(seconds) - min(seconds)) / median))
    result.targets.append(Target("seconds from start to the first frame", median, 1.0, higher_is_better=False))
    return result


def _write_app_state(data_dir: Path, preset: str, new_tokens: int) -> None:
    """Preselect an untrained preset and greedy settings, as the app remembers them between sessions."""
    data_dir.mkdir(parents=True, exist_ok=True)
    state = {"model": {"kind": "fresh", "name": preset, "checkpoint": ""},
             "generation": {"max_new_tokens": new_tokens, "temperature": 0.0}}
    (data_dir / "app-state.json").write_text(json.dumps(state), encoding="utf-8")


async def _measure_stream(data_dir: Path, preset: str, prompt: str, repeats: int, warmup: int):
    from tui_gpt.app.app import TuiGptApp
    from tui_gpt.app.panes.prompt.exchange_view import ExchangeView

    app = TuiGptApp(data_dir)
    tui_seconds: list[float] = []
    headless_seconds: list[float] = []
    async with app.run_test(size=SCREEN) as pilot:
        pane = app.query_one("#prompt-pane")
        await _wait(lambda: pane.loaded is not None and pane.pending_choice is None
                    and pane.loaded.choice.name == preset, 300, "the app to load the model")
        model, tokenizer = pane.loaded.model, app.session.tokenizer
        # Told when generation ends rather than polling for it: a poll would take the
        # event loop (and the GIL) from the very work being timed. The clock stops once
        # the screen has been refreshed after the end, that is when the last tokens are
        # drawn, not whenever this coroutine next gets the event loop.
        finished = asyncio.Event()
        shown_at: list[float] = []

        def drawn() -> None:
            shown_at.append(time.perf_counter())
            finished.set()

        pane.watch(pane, "generating", lambda generating: None if generating else app.call_after_refresh(drawn),
                   init=False)
        async def through_the_app() -> float:
            await pilot.press(*[_key(char) for char in prompt])
            finished.clear()
            start = time.perf_counter()
            await pilot.press("enter")
            await asyncio.wait_for(finished.wait(), timeout=600)
            return shown_at[-1] - start

        async def headless_stream(new_tokens: int) -> tuple[float, list[int]]:
            start = time.perf_counter()
            ids = await asyncio.to_thread(_headless_ids, model, tokenizer, prompt, new_tokens)
            return time.perf_counter() - start, ids

        for round_index in range(warmup + repeats):
            # The order alternates, as in the other cases: whichever runs second may find
            # the machine warmer or busier.
            if round_index % 2 == 0:
                tui = await through_the_app()
                shown = [token.token_id for token in app.query(ExchangeView).last().exchange.tokens]
                headless, streamed = await headless_stream(len(shown))
            else:
                headless, streamed = await headless_stream(len(shown))
                tui = await through_the_app()
                shown = [token.token_id for token in app.query(ExchangeView).last().exchange.tokens]
            if round_index >= warmup:
                tui_seconds.append(tui)
                headless_seconds.append(headless)
    return tui_seconds, headless_seconds, (shown, streamed)


def _key(char: str) -> str:
    """Textual's key name for typing `char`."""
    return {" ": "space", ",": "comma", ".": "full_stop"}.get(char, char)


def _headless_ids(model, tokenizer, prompt: str, new_tokens: int) -> list[int]:
    ids = []
    for token in stream(model, tokenizer, prompt, new_tokens, eos_id=END_OF_TEXT_ID):
        if token.token_id == END_OF_TEXT_ID:
            break
        ids.append(token.token_id)
    return ids


async def _wait(condition, timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(poll)


def _time_to_first_frame(data_dir: Path, timeout: float = 30.0) -> float:
    """Seconds from starting `python -m tui_gpt` on a terminal to its first visible character."""
    import fcntl
    import struct
    import termios

    leader, follower = pty.openpty()
    columns, lines = SCREEN
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", TUI_GPT_DATA_DIR=str(data_dir), COLUMNS=str(columns),
               LINES=str(lines))
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "tui_gpt", "--data-dir", str(data_dir)],
                               stdin=follower, stdout=follower, stderr=follower, env=env, start_new_session=True)
    os.close(follower)
    output = b""
    try:
        while time.perf_counter() - start < timeout:
            ready, _, _ = select.select([leader], [], [], 0.05)
            if ready:
                try:
                    output += os.read(leader, 65536)
                except OSError:
                    break  # the app exited
                if _visible(output):
                    return time.perf_counter() - start
            elif process.poll() is not None:
                break
        raise RuntimeError(f"tui-gpt drew nothing within {timeout:.0f} s (exit status {process.poll()})")
    finally:
        _stop(process)
        os.close(leader)


def _visible(output: bytes) -> bool:
    """Whether the terminal output draws any character (escape sequences and controls draw none)."""
    return any(byte > 0x20 and byte != 0x7F for byte in _ESCAPES.sub(b"", output))


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
