"""tui-gpt: train and prompt GPT-2-style models from the terminal.

`tui-gpt` opens the Textual app; `tui-gpt train|runs|generate` work headless.
Importing this package stays light (no torch) so the app's first frame is fast.
"""


def __getattr__(name: str) -> str:
    # __version__ on demand: reading the installed metadata takes tens of milliseconds.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("tui-gpt")
        except PackageNotFoundError:  # run from a source checkout that was never installed
            return "0+unknown"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
