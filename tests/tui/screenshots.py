"""Make the README's screenshots (assets/*.svg) from real, short training runs.

    python -m tests.tui.screenshots [--corpus PATH] [--steps N]

Trains two small runs on the corpus (the book's the-verdict.txt by default)
with `tui-gpt train`, then drives the app headless and saves an SVG of each
pane. Takes a minute or two on a laptop CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

from tui_gpt.app.app import TuiGptApp
from tui_gpt.app.services.model_catalog import ModelChoice

from .helpers import wait_for, wait_until_ready

REPO = Path(__file__).resolve().parents[2]
VERDICT = REPO / "tests" / "data" / "the-verdict.txt"
SIZE = (110, 32)


def train(data_dir: Path, run: str, corpus: Path, steps: int, lr: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "tui_gpt", "train", "--data-dir", str(data_dir), "--run-name", run, "--corpus", str(corpus),
         "--preset", "gpt-nano", "--context-length", "64", "--batch-size", "4", "--max-steps", str(steps),
         "--lr", lr, "--eval-freq", "10", "--eval-iter", "2", "--sample-tokens", "12"],
        cwd=REPO, check=True, stdout=subprocess.DEVNULL,
    )


async def shoot(data_dir: Path, out: Path) -> None:
    app = TuiGptApp(data_dir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_ready(pilot, app)
        await wait_for(pilot, lambda: len(app.runs.progress) == 2, what="the runs")
        for editor in app.query("Input, PromptInput"):
            editor.cursor_blink = False
        prompt = app.query_one("#prompt-pane")

        async def generate(text: str) -> None:
            app.query_one("#prompt-input").text = text
            await pilot.press("enter")
            await wait_for(pilot, lambda: prompt.transcript.views and not prompt.generating, timeout=60)

        await generate("Every effort moves you")  # the untrained model: gibberish
        prompt.load_model(ModelChoice("run", "nano-lr-1e-3", "best"))
        await wait_for(pilot, lambda: prompt.loaded.choice.kind == "run")
        await generate("Every effort moves you")
        await generate("I had always thought Jack Gisburn")
        app.save_screenshot(str(out / "prompt.svg"))
        await pilot.press("ctrl+t", "c", "left", "left", "left")
        await pilot.pause(0.2)
        app.save_screenshot(str(out / "token-inspector.svg"))
        await pilot.press("escape")
        app.query_one("#train-pane").follow("nano-lr-1e-3")
        for pane, name in (("f2", "train"), ("f4", "runs")):
            await pilot.press(pane)
            await pilot.pause(0.3)
            app.save_screenshot(str(out / f"{name}.svg"))
        await pilot.press("f3")
        app.query_one("#stats-pane").show_run("nano-lr-4e-4")
        await pilot.pause(0.3)
        app.save_screenshot(str(out / "stats.svg"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=VERDICT)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO / "assets")
    args = parser.parse_args()
    args.out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as temp:
        data_dir = Path(temp)
        train(data_dir, "nano-lr-4e-4", args.corpus, args.steps, "4e-4")
        train(data_dir, "nano-lr-1e-3", args.corpus, args.steps, "1e-3")
        asyncio.run(shoot(data_dir, args.out))
    print(f"screenshots in {args.out}")


if __name__ == "__main__":
    main()
