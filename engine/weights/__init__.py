"""Where a model's weights come from: tui-gpt checkpoints, OpenAI's GPT-2, the book's .pth files."""
