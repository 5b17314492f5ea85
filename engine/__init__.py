"""tui-gpt's engine: the book's GPT model, tokenizer, data, loss, generation and training.

Usable on its own, with the book's names:
    from engine import GPTModel, generate_text_simple, calc_loss_loader, create_dataloader_v1
"""

from .config import PRESETS, GPTConfig, get_preset
from .errors import CheckpointError, ConfigError, CorpusError, RunError, TuiGptError
from .generation import StreamedToken, generate, generate_text_simple, stream
from .model import GPTModel, KVCache, LayerNorm, MultiHeadAttention, TransformerBlock, FeedForward, GELU
from .tokenizer import get_tokenizer, text_to_token_ids, token_ids_to_text

GPT_CONFIG_124M = PRESETS["gpt2-small"].to_dict()
