"""The logit lens: what the residual stream would predict if the model stopped after each layer.

After every transformer block the hidden state at one position is read out as
the model reads its last one: through `final_norm` and `out_head`. The last row
is therefore the model's own prediction. Hidden states are captured with forward
hooks on `trf_blocks`; the model itself is not changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.errors import ConfigError
from engine.insight.tokens import Alternative, check_vocabulary, encode, model_device, token_text, top_alternatives


@dataclass(frozen=True)
class LensTable:
    position: int  # the token after which the next token is predicted
    token: str  # that token's text
    rows: list[list[Alternative]]  # one per layer, first to last: the top-k next tokens
    context_start: int = 0  # first token the model saw (texts longer than the window)

    def as_dict(self) -> dict:
        return {"position": self.position, "token": self.token, "context_start": self.context_start,
                "layers": [{"layer": i + 1, "top": [a.__dict__ for a in row]} for i, row in enumerate(self.rows)]}


def resolve_position(position: int, n_tokens: int) -> int:
    """A position given from the start (0-based) or, negative, from the end; ConfigError when outside."""
    resolved = position + n_tokens if position < 0 else position
    if not 0 <= resolved < n_tokens:
        raise ConfigError(f"position {position} is outside the text's {n_tokens} tokens")
    return resolved


@torch.no_grad()
def logit_lens_ids(model, ids: list[int], position: int, top_k: int = 5) -> LensTable:
    check_vocabulary(model, ids)
    position = resolve_position(position, len(ids))
    start = max(0, position + 1 - model.cfg.context_length)
    inputs = torch.tensor([ids[start:position + 1]], device=model_device(model))
    hidden: list[torch.Tensor] = []
    hooks = [block.register_forward_hook(lambda _m, _inp, out: hidden.append(out[0, -1]))
             for block in model.trf_blocks]
    was_training = model.training
    model.eval()
    try:
        model(inputs, last_only=True)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    stacked = torch.stack(hidden)
    probs = torch.softmax(model.out_head(model.final_norm(stacked)).float(), dim=-1)
    rows = [top_alternatives(p, top_k) for p in probs]
    return LensTable(position=position, token=token_text(ids[position]), rows=rows, context_start=start)


def logit_lens(model, text: str, position: int, top_k: int = 5) -> LensTable:
    return logit_lens_ids(model, encode(text), position, top_k)
