"""How a `tui-gpt` process ends: its exit status says whether the run finished, failed or stopped.

The CLI returns these, the trainer's signal handler exits with one, and the app
reads them from the training processes it started. No torch here, so the CLI
can report a broken install with the right status.
"""

EXIT_FINISHED = 0
EXIT_FAILED = 1  # an error during training or generation (non-finite loss, out of memory, ...)
EXIT_BAD_INPUT = 2  # bad usage, config, corpus, checkpoint, run name or path; nothing was trained
EXIT_STOPPED = 3  # stopped on request after saving a checkpoint; resume with --resume
EXIT_ABORTED = 130  # a second Ctrl-C: left at once, without a new checkpoint
