"""The LatentMAS latent step against its closed form, computed independently here."""
import torch

from latentray.agents.realign import Realigner
from latentray.agents.models import build_tiny

from helpers import make_agents, reference_ridge


def test_one_latent_step_matches_closed_form():
    model, _, agents = make_agents("qwen3-64", latent_steps=1)
    planner = agents[0]
    state = planner.prefill(["What is 2 + 2?", "longer question here"])
    after = planner.think(state, 1)
    w_a, target = reference_ridge(model)
    expected = state.last_hidden.double() @ w_a
    expected = expected * (target / expected.norm(dim=-1, keepdim=True))
    assert after.latents[0].shape == (2, model.config.hidden_size)
    assert torch.allclose(after.latents[0].double(), expected, atol=1e-4)
    # the fed-back vector has the mean input-embedding norm
    assert torch.allclose(after.latents[0].norm(dim=-1), target.float().expand(2), rtol=1e-4)
    # and the step added exactly one real slot per row
    assert after.mask.shape[1] == state.mask.shape[1] + 1 and bool(after.mask[:, -1].all())


def test_identity_option_only_rescales():
    model, _ = build_tiny("qwen3-64")
    r = Realigner.for_model(model, realign=False)
    h = torch.randn(3, model.config.hidden_size)
    target = model.get_input_embeddings().weight.norm(dim=-1).mean()
    expected = h * (target / h.norm(dim=-1, keepdim=True))
    assert torch.allclose(r(h), expected, atol=1e-5)


def test_ridge_lambda_changes_the_map():
    model, _ = build_tiny("qwen3-64")
    small = Realigner.for_model(model, ridge_lambda=1e-5).matrix
    large = Realigner.for_model(model, ridge_lambda=10.0).matrix
    assert (small - large).abs().max() > 1e-2


def test_tied_embeddings_give_identity_map():
    for preset in ("qwen3-64-tied", "gpt2-64"):
        model, _ = build_tiny(preset)
        assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
        matrix = Realigner.for_model(model).matrix
        assert (matrix - torch.eye(matrix.shape[0])).abs().max() < 1e-4, preset


def test_agents_of_one_model_share_one_realignment_matrix():
    from helpers import make_agents

    model, _, agents = make_agents("qwen3-64", latent_steps=1)
    assert len({id(a.realigner) for a in agents}) == 1
    assert len({a.realigner.matrix.data_ptr() for a in agents}) == 1
    other, _, more = make_agents("qwen3-64", roles=("x",), latent_steps=1)
    assert more[0].realigner is not agents[0].realigner  # another model (copy) solves its own
