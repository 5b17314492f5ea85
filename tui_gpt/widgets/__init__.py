"""The app's panes and widgets, one per module."""
