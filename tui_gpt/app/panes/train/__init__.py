"""The Train pane: the form, the run's progress, the sample timeline."""
