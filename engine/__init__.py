"""tui-gpt's engine: the book's GPT model, tokenizer, data, loss, generation and training.

Usable on its own, with the book's names:
    from engine import GPTModel, generate_text_simple, calc_loss_loader, create_dataloader_v1
"""

from .config import PRESETS, GPTConfig, get_preset
from .data import GPTDatasetV1, TokenWindowDataset, create_dataloader_v1, split_train_val
from .errors import CheckpointError, ConfigError, CorpusError, RunError, TuiGptError
from .generation import StreamedToken, generate, generate_text_simple, stream
from .loss import calc_loss_batch, calc_loss_loader, perplexity
from .model import GELU, FeedForward, GPTModel, KVCache, LayerNorm, MultiHeadAttention, TransformerBlock
from .pretrained import GPT2_SIZES, available_gpt2_models, load_any_model, load_book_state_dict, load_gpt2
from .tokenizer import get_tokenizer, text_to_token_ids, token_ids_to_text
from .training_loop import evaluate_model, generate_sample, train_model_simple

# The book's configuration dict for the 124M model.
GPT_CONFIG_124M = PRESETS["gpt2-small"].to_dict()
del GPT_CONFIG_124M["tie_embeddings"]
