"""Looking inside a model: score a text, the logit lens, attention maps, model diffs, training health."""
