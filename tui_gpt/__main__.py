"""`python -m tui_gpt` is the `tui-gpt` command (also what torchrun runs)."""

from .cli import main

raise SystemExit(main())
