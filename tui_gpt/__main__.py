"""`python -m tui_gpt` is the `tui-gpt` command (also what torchrun runs)."""

from tui_gpt.cli.main import main

raise SystemExit(main())
