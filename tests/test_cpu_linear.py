"""The CPU linear layers a loaded model decodes with: the same products as torch's linear
(to float rounding) for every row count, with and without bias, on any leading shape; tied
weights stay tied; a model built by transformers gets them from load_model and can give
them back; greedy tokens do not change."""
import pytest
import torch
from torch import nn

from latentray.agents.models import load_model
from latentray.agents.models.cpu_linear import MAX_ROWS, WeightOnceLinear, install, uninstall


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 7, MAX_ROWS, MAX_ROWS + 1, 300])
@pytest.mark.parametrize("bias", [False, True])
def test_same_products_as_torch_linear(rows, bias):
    torch.manual_seed(rows)
    plain = nn.Linear(96, 200, bias=bias)
    fast = nn.Linear(96, 200, bias=bias)
    fast.load_state_dict(plain.state_dict())
    fast.__class__ = WeightOnceLinear
    x = torch.randn(rows, 96)
    want, got = plain(x), fast(x)
    assert got.shape == want.shape and got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    x3 = x.reshape(1, rows, 96)  # a [B, S, D] input keeps its leading dims
    torch.testing.assert_close(fast(x3), plain(x3), rtol=1e-5, atol=1e-5)


def test_other_dtypes_take_torch_linear_unchanged():
    plain = nn.Linear(32, 48).to(torch.bfloat16)
    x = torch.randn(3, 32, dtype=torch.bfloat16)
    want = plain(x)
    plain.__class__ = WeightOnceLinear
    assert torch.equal(plain(x), want)


def test_load_model_installs_it_keeps_tied_weights_and_uninstall_restores():
    model, tok, _ = load_model("tiny:llama-64")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is WeightOnceLinear for m in linears)
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if model.config.tie_word_embeddings:
        assert head.weight is embed.weight
    ids = torch.tensor([[5, 9, 13, 2, 7], [3, 3, 8, 1, 4]])
    with torch.inference_mode():
        fast = model.generate(input_ids=ids, max_new_tokens=12, do_sample=False, pad_token_id=0)
        uninstall(model)
        assert all(type(m) is nn.Linear for m in model.modules() if isinstance(m, nn.Linear))
        plain = model.generate(input_ids=ids, max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert torch.equal(fast, plain)
    assert install(model) == len(linears)
