"""What the panes use off screen: the engine, generation jobs, training processes, run watching, transcripts, state."""
