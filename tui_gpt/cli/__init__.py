"""The `tui-gpt` command line: the parser (`main`), what each command does (`commands`), the progress line."""
