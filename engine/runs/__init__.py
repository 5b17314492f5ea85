"""The run folder, the contract between a training process and whoever watches it.

Imports no torch (an import-linter contract checks it): the app and any watcher use it at start-up.
"""
