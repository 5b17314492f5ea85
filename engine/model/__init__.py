"""The book's GPT-2-style model: config and presets (`config`), the model (`gpt`), the tokenizer, generation."""
