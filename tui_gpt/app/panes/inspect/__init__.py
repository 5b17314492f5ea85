"""The Inspect pane: score a text, then look at a token's odds, the logit lens, attention, or a second model."""
