"""The benchmark harness: `python -m bench` times the engine beside the book's code and transformers."""
