"""`python -m tui_gpt` is the `tui-gpt` command (also what torchrun runs)."""

from tui_gpt.cli.main import main

# Guarded: a process that multiprocessing spawns imports the parent's main module again.
if __name__ == "__main__":
    raise SystemExit(main())
