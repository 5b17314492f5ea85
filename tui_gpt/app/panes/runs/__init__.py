"""The Runs pane: every run in the data dir."""
