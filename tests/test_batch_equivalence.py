"""A batch of problems gives what each problem gives alone: latents, logits, greedy text."""
import pytest
import torch

from latentray.agents.decoding import SamplingConfig

from helpers import QUESTIONS, make_agents, run_chain


@pytest.mark.parametrize("preset", ["qwen3-64", "gpt2-64"])
def test_chain_batch_equals_one_by_one(preset):
    _, _, agents = make_agents(preset, latent_steps=3, max_new_tokens=12)
    state, messages = run_chain(agents, QUESTIONS)
    batch_text = agents[-1].decode(state)
    for row, q in enumerate(QUESTIONS):
        alone, alone_msgs = run_chain(agents, [q])
        for bm, am in zip(messages, alone_msgs):
            # latents: the latent slots are the last ones of each row in the sender's kv
            n = am.header.latent_slots
            bk = bm.tensors["keys"][:, row, :, -n:]
            ak = am.tensors["keys"][:, 0, :, -n:]
            assert (bk - ak).abs().max().item() <= 1e-4
        assert (state.logits[row] - alone.logits[0]).abs().max().item() <= 1e-4
        alone_text = agents[-1].decode(alone)
        assert batch_text.token_ids[row] == alone_text.token_ids[0], q
        assert batch_text.texts[row] == alone_text.texts[0]


def test_latent_vectors_batch_equals_alone():
    _, _, agents = make_agents("llama-64", latent_steps=4)
    batch = agents[0].think(agents[0].prefill(QUESTIONS))
    for row, q in enumerate(QUESTIONS):
        alone = agents[0].think(agents[0].prefill([q]))
        for b_lat, a_lat in zip(batch.latents, alone.latents):
            assert (b_lat[row] - a_lat[0]).abs().max().item() <= 1e-4


def test_sampling_is_seeded_and_batch_invariant():
    _, _, agents = make_agents("qwen3-64", roles=("solo",), max_new_tokens=10)
    solo = agents[0]
    cfg = SamplingConfig(temperature=1.0, top_p=0.9, top_k=50, seed=7)
    batch = solo.decode(solo.prefill(QUESTIONS), sampling=cfg)
    again = solo.decode(solo.prefill(QUESTIONS), sampling=cfg)
    assert batch.token_ids == again.token_ids
    for row, q in enumerate(QUESTIONS):
        assert solo.decode(solo.prefill([q]), sampling=cfg).token_ids[0] == batch.token_ids[row]
    other = solo.decode(solo.prefill(QUESTIONS), sampling=SamplingConfig(temperature=1.0, seed=8))
    assert other.token_ids != batch.token_ids


def test_decode_stops_at_eos_per_row():
    model, tok, agents = make_agents("qwen3-64", roles=("solo",), max_new_tokens=6)
    solo = agents[0]
    state = solo.prefill(QUESTIONS[:2])
    # force row 0 to emit EOS first: its answer is empty and counts no tokens
    logits = state.logits.clone()
    logits[0, tok.eos_token_id] = 1e9
    state.logits = logits
    out = solo.decode(state)
    assert out.token_ids[0] == [] and out.texts[0] == "" and out.tokens[0] == 0
    assert out.tokens[1] == 6
    assert torch.equal(out.first_logits, logits)


def test_a_stop_string_counts_from_the_answers_first_visible_character():
    from latentray.agents.decoding import first_stop

    assert first_stop("\nThe code is 7311.\nThe code", ["\n"]) == 18  # a base model's opening newline
    assert first_stop(" \n\t", ["\n"]) is None and first_stop("", ["\n"]) is None
    assert first_stop("a.b. c", ["b", "."]) == 1 and first_stop("abc", ["x"]) is None


def test_decode_ends_a_row_where_its_first_stop_string_begins():
    """A stop string cuts a row's text where it first appears in the answer decoded without
    it; the row's ids stop before the token that completed the string; rows without the
    string decode on as before, and a row gives the same alone as in the batch."""
    from dataclasses import replace

    _, tok, agents = make_agents("qwen3-64", roles=("solo",), max_new_tokens=10)
    solo = agents[0]
    plain = solo.decode(solo.prefill(QUESTIONS))
    stop = tok.decode(plain.token_ids[0][3:5])  # two tokens from the middle of row 0's answer
    assert stop.strip() and any(stop not in t for t in plain.texts[1:])
    solo.config = replace(solo.config, stop=("never-in-an-answer", stop))
    cut = solo.decode(solo.prefill(QUESTIONS))
    for row, full in enumerate(plain.texts):
        ids, whole = cut.token_ids[row], plain.token_ids[row]
        if stop not in full:
            assert (cut.texts[row], ids) == (full, whole)
            continue
        assert cut.texts[row] == full[:full.index(stop)]
        assert ids == whole[:len(ids)] and len(ids) < len(whole)
        assert stop not in tok.decode(ids) and stop in tok.decode(whole[:len(ids) + 1])
    assert len(cut.token_ids[0]) <= 4
    alone = solo.decode(solo.prefill(QUESTIONS[:1]))
    assert (alone.texts[0], alone.token_ids[0]) == (cut.texts[0], cut.token_ids[0])
