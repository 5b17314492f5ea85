"""Where a model's weights come from: tui-gpt checkpoints, OpenAI's GPT-2, the book's .pth files.

    resolver.py      resolve_model: any of them (or a run, or a fresh preset) from what the user named
    checkpoint.py    tui-gpt checkpoints         gpt2.py   GPT-2 in the Hugging Face layout (hf_cache.py: the hub)
    book.py          the book's state dicts      tensor_files.py   safetensors I/O and the one shape check
"""
