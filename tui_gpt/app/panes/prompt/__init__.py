"""The Prompt pane: prompt input, transcript, exchanges, token inspector, generation settings."""
