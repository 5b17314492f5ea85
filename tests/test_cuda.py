"""The CUDA-only branches, on a real GPU: `python -m pytest -m gpu` where one is present.

The default run deselects these (pyproject's addopts): CI has no GPU. On a CPU the
same branches are covered by stand-ins (test_precision, test_mfu, test_compiled);
here they meet the real thing: bf16 autocast, the chunked loss under it, fused
AdamW, the flash attention kernel, torch.compile through Triton, decoding, and the
data-sheet peak that MFU divides by.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from engine.fast import compiled
from engine.fast.chunked_loss import chunked_loss_batch
from engine.fast.decoding_weights import decoding_copy
from engine.model.generation import generate
from engine.model.gpt import GPTModel
from engine.model.tokenizer import get_tokenizer
from engine.training.device import autocast, autocast_dtype
from engine.training.loss import calc_loss_batch
from engine.training.mfu import peak_flops

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run with -m gpu where one is)"),
]

CUDA = torch.device("cuda")


def _model_and_batch(config, batch: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    model = GPTModel(config)
    tokens = torch.randint(0, config.vocab_size, (batch, config.context_length + 1))
    return model, tokens[:, :-1], tokens[:, 1:]


def _grads(model) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().float().cpu() for name, p in model.named_parameters()}


def _assert_same_step(model, loss, twin, twin_loss, rel: float, rtol: float, atol: float) -> None:
    """Both losses backpropagated: the twin's loss and gradients equal the model's within the tolerances."""
    loss.backward()
    twin_loss.backward()
    assert twin_loss.item() == pytest.approx(loss.item(), rel=rel)
    twin_grads = _grads(twin)
    for name, grad in _grads(model).items():
        torch.testing.assert_close(twin_grads[name], grad, rtol=rtol, atol=atol, msg=name)


def test_auto_precision_on_this_gpu_is_bf16():
    assert torch.cuda.is_bf16_supported()
    assert autocast_dtype(CUDA, "auto") is torch.bfloat16


def test_a_cuda_step_in_fp32_matches_the_cpu(tiny_config):
    assert not torch.backends.cuda.matmul.allow_tf32  # torch's default, which the engine keeps: exact fp32
    cpu_model, inputs, targets = _model_and_batch(tiny_config)
    gpu_model = copy.deepcopy(cpu_model).to(CUDA)
    _assert_same_step(cpu_model, calc_loss_batch(inputs, targets, cpu_model, "cpu"),
                      gpu_model, calc_loss_batch(inputs, targets, gpu_model, CUDA), rel=1e-5, rtol=1e-3, atol=1e-5)


def test_chunked_loss_under_bf16_autocast_matches_the_plain_loss(tiny_config):
    model, inputs, targets = _model_and_batch(tiny_config)
    model = model.to(CUDA)
    twin = copy.deepcopy(model)
    with autocast(CUDA, torch.bfloat16):
        plain = calc_loss_batch(inputs, targets, model, CUDA)
        chunked = chunked_loss_batch(inputs, targets, twin, CUDA)
    _assert_same_step(model, plain, twin, chunked, rel=1e-2, rtol=5e-2, atol=2e-3)


def test_bf16_training_follows_fp32_with_fused_adamw(tiny_config):
    model, _, _ = _model_and_batch(tiny_config)
    batches = [torch.randint(0, 64, (4, tiny_config.context_length + 1), device=CUDA) for _ in range(4)]
    losses: dict[str, list[float]] = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        trained = copy.deepcopy(model).to(CUDA)
        optimizer = torch.optim.AdamW(trained.parameters(), lr=5e-3, fused=True)  # the trainer's optimizer on CUDA
        losses[name] = []
        for _ in range(5):
            for batch in batches:
                with autocast(CUDA, dtype):
                    loss = chunked_loss_batch(batch[:, :-1], batch[:, 1:], trained, CUDA)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses[name].append(loss.item())
        assert all(p.dtype == torch.float32 for p in trained.parameters())  # fp32 master weights
    assert losses["fp32"][-1] < losses["fp32"][0] - 1.0
    for fp32, bf16 in zip(losses["fp32"], losses["bf16"]):
        assert bf16 == pytest.approx(fp32, abs=0.05)


def test_fused_adamw_steps_as_the_plain_one_does(tiny_config):
    model, inputs, targets = _model_and_batch(tiny_config)
    model = model.to(CUDA)
    twins = {fused: copy.deepcopy(model) for fused in (False, True)}
    for fused, twin in twins.items():
        optimizer = torch.optim.AdamW(twin.parameters(), lr=1e-3, weight_decay=0.1, fused=fused)
        for _ in range(3):
            calc_loss_batch(inputs, targets, twin, CUDA).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    for (name, plain), fused in zip(twins[False].named_parameters(), twins[True].parameters()):
        torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6, msg=name)


def test_the_model_runs_on_the_flash_attention_kernel_in_bf16(tiny_config):
    """Forcing the flash kernel raises where the model's attention call is not eligible for it."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    config = tiny_config.with_overrides(emb_dim=128, n_heads=2, drop_rate=0.1)  # head size 64, as GPT-2's
    model, inputs, targets = _model_and_batch(config)
    model = model.to(CUDA).eval()
    with torch.no_grad(), autocast(CUDA, torch.bfloat16):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            flash = calc_loss_batch(inputs, targets, model, CUDA)
        with sdpa_kernel(SDPBackend.MATH):
            math = calc_loss_batch(inputs, targets, model, CUDA)
    assert flash.item() == pytest.approx(math.item(), rel=1e-2)
    model.train()  # attention dropout and the backward pass, on the same kernel
    with autocast(CUDA, torch.bfloat16), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        loss = calc_loss_batch(inputs, targets, model, CUDA)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_compiled_training_step_has_the_plain_loss_and_gradients(tiny_config):
    model, inputs, targets = _model_and_batch(tiny_config)
    model = model.to(CUDA)
    twin = copy.deepcopy(model)
    runnable = compiled.compile_for_training(twin, CUDA, lambda line: None)
    assert runnable is not twin
    _assert_same_step(model, chunked_loss_batch(inputs, targets, model, CUDA),
                      twin, chunked_loss_batch(inputs, targets, runnable, CUDA), rel=1e-4, rtol=1e-2, atol=1e-4)


def test_greedy_decoding_on_the_gpu_gives_the_cpu_tokens(tiny_config):
    model, inputs, _ = _model_and_batch(tiny_config.with_overrides(context_length=64))
    model.eval()
    prompt = inputs[:1, :5]
    on_cpu = generate(model, prompt, 30, 64)
    on_gpu = generate(copy.deepcopy(model).to(CUDA), prompt.to(CUDA), 30, 64)
    assert on_gpu.cpu().tolist() == on_cpu.tolist()
    fast = decoding_copy(model.to(CUDA), "bf16")  # the GPU's decoding copy
    tokens = generate(fast, prompt.to(CUDA), 30, 64)
    assert tokens.shape == on_cpu.shape and tokens.device.type == "cuda"


def test_decoding_replays_a_cuda_graph_and_gives_the_step_by_step_tokens(tiny_config, monkeypatch):
    """Greedy and sampled, batch 1 and 2, past the context window (where the cache is rebuilt
    from the cropped window and the graph goes on from there), and through `stream`."""
    import engine.model.generation as generation

    config = tiny_config.with_overrides(context_length=48)
    model, inputs, _ = _model_and_batch(config)
    model = model.to(CUDA).eval()
    prompts = (inputs[:1, :5].to(CUDA), inputs[:2, :7].to(CUDA))
    runs = {}
    for graphed in (True, False):
        if not graphed:
            monkeypatch.setattr(generation, "graph_decoding_possible", lambda model: False)
        decoder = generation._Decoder(model, prompts[0], 48)
        decoder.append(decoder.logits().argmax(-1, keepdim=True))
        assert (decoder.graph is not None) == graphed
        runs[graphed] = [generate(model, prompt, 80, 48).tolist() for prompt in prompts]
        runs[graphed].append(generate(model, prompts[0], 30, 48, temperature=1.0, top_k=20, seed=7).tolist())
        streamed = [t.token_id for t in generation.stream(model, get_tokenizer(), prompts[0], 30)]
        runs[graphed].append(prompts[0].tolist()[0] + streamed)
    assert runs[True] == runs[False]
    assert runs[True][-1] == runs[True][0][0][:35]  # stream's greedy tokens are generate's


def test_no_graph_under_autocast_or_in_training_mode(tiny_config):
    from engine.model.cuda_graph import graph_decoding_possible

    model = GPTModel(tiny_config).to(CUDA).eval()
    assert graph_decoding_possible(model)
    with autocast(CUDA, torch.bfloat16):
        assert not graph_decoding_possible(model)
    assert not graph_decoding_possible(model.train())


def test_the_gpu_at_hand_has_a_data_sheet_peak():
    """MFU divides by it: a GPU missing from engine.training.mfu's table shows no MFU."""
    name = torch.cuda.get_device_name(CUDA)
    assert peak_flops(CUDA, torch.bfloat16) is not None, f"{name!r} is not in the table of GPU peaks"
    assert peak_flops(CUDA, None) < peak_flops(CUDA, torch.bfloat16)


def test_a_bf16_eval_loss_is_close_to_fp32_on_gpt2_sized_heads():
    """The 124M model's shapes (12 heads of 64) under autocast, two layers deep."""
    from engine.model.config import PRESETS

    config = PRESETS["gpt2-small"].with_overrides(n_layers=2, context_length=256, drop_rate=0.0)
    model, inputs, targets = _model_and_batch(config, batch=2)
    model = model.to(CUDA).eval()
    with torch.no_grad():
        fp32 = F.cross_entropy(model(inputs.to(CUDA)).flatten(0, 1), targets.to(CUDA).flatten())
        with autocast(CUDA, torch.bfloat16):
            bf16 = chunked_loss_batch(inputs, targets, model, CUDA)
    assert bf16.item() == pytest.approx(fp32.item(), rel=1e-2)
