"""One package per pane, each holding the widgets that live in it."""
