"""The OpenAI-compatible endpoint on loopback, through the official `openai` client and
LangChain's ChatOpenAI: answers equal each question's steps called alone in one process,
with the request's max_tokens, temperature, seed and stop applied to the answering agent;
streaming; usage; the token, the limits and malformed bodies as OpenAI-style errors."""
import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from latentray.runtime.engine.errors import RunError
from latentray.runtime.gateway.admission import Admission
from latentray.runtime.gateway.batching import Ticket
from latentray.runtime.gateway.openai_server import OpenAIServer
from latentray.runtime.gateway.service import GatewayService
from latentray.topologies import build_plan, load_spec
from latentray.topologies.spec import LimitsSpec

from helpers import QUESTIONS, answers_in_one_process, one_actor

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-openai-token-41d2"
MAX_BYTES = 4096
MAX_CHARS = 2000
SPEC_TEXT = ((ROOT / "topologies/examples/latent_chain.yaml").read_text()
             .replace("builtin:smollm2-135m", "tiny:qwen3-64").replace("max_new_tokens: 96", "max_new_tokens: 12"))
MODEL = "latent_chain"
# What a request asks the answering agent for, and the same spec written with it.
ASKED = dict(max_tokens=5, temperature=0.9, seed=11)


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("openai") / "chain.yaml"
    path.write_text(SPEC_TEXT)
    spec = load_spec(path)
    limits = spec.limits.model_copy(update={"max_request_bytes": MAX_BYTES, "max_question_chars": MAX_CHARS})
    return one_actor(spec.model_copy(update={"limits": limits}))


def _alone(spec, judger: dict | None = None, seed: int | None = None):
    """The spec run one question at a time, its judger changed as `judger` says."""
    agents = dict(spec.agents)
    if judger:
        j = agents["judger"]
        agents["judger"] = j.model_copy(update={
            "max_new_tokens": judger["max_tokens"],
            "sampling": j.sampling.model_copy(update={"temperature": judger["temperature"]})})
    run = spec.run.model_copy(update={"batch_size": 1, **({"seed": seed} if seed is not None else {})})
    return spec.model_copy(update={"agents": agents, "run": run})


@pytest.fixture(scope="module")
def reference(spec):
    """{question: (answer, tokens)} of each question alone, every step called in this process."""
    answers, tokens = answers_in_one_process(_alone(spec), QUESTIONS)
    return dict(zip(QUESTIONS, zip(answers, tokens)))


@pytest.fixture(scope="module")
def endpoint(ray_session, spec):
    service = GatewayService(spec, build_plan(spec), run_name="openai-test").start()
    server = OpenAIServer(service, "127.0.0.1", 0, token=TOKEN).start()
    yield service, server
    server.stop(5)
    service.close()


@pytest.fixture
def client(endpoint):
    return openai.OpenAI(base_url=endpoint[1].url, api_key=TOKEN, max_retries=0, timeout=120)


def _ask(client, question, **kwargs):
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}], **kwargs)


def test_a_completion_is_the_question_answered_alone(client, reference, spec):
    reply = _ask(client, QUESTIONS[0])
    answer, tokens = reference[QUESTIONS[0]]
    assert reply.choices[0].message.content == answer and reply.choices[0].message.role == "assistant"
    assert reply.model == MODEL and reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    x = reply.model_extra["x_latentray"]
    agents = x["agents"]
    assert list(agents) == ["planner", "critic", "refiner", "judger"]
    # usage: every agent's prompt and decoded tokens; only the judger decodes in a latent chain
    assert reply.usage.completion_tokens == tokens == agents["judger"]["completion_tokens"]
    assert reply.usage.prompt_tokens == sum(a["prompt_tokens"] for a in agents.values())
    assert all(a["prompt_tokens"] > 0 for a in agents.values())
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    edges = [(e.src, e.dst, e.kind) for e in build_plan(spec).edges]  # memory: accumulate: every earlier agent's
    assert sorted((m["src"], m["dst"], m["kind"]) for m in x["trace"]) == sorted(edges) and len(edges) == 6
    assert all(m["bytes"] > 0 for m in x["trace"]) and x["earlier_messages"] == 0
    assert reply.choices[0].finish_reason == ("length" if tokens == 12 else "stop")


def test_max_tokens_temperature_and_seed_reach_the_answering_agent(client, spec):
    question = QUESTIONS[1]
    (answer,), (tokens,) = answers_in_one_process(_alone(spec, ASKED, ASKED["seed"]), [question])
    reply = _ask(client, question, **ASKED)
    assert (reply.choices[0].message.content, reply.usage.completion_tokens) == (answer, tokens)
    assert tokens <= ASKED["max_tokens"]
    assert reply.choices[0].finish_reason == ("length" if tokens == ASKED["max_tokens"] else "stop")
    again = _ask(client, question, **ASKED)  # the same seed samples the same answer
    assert again.choices[0].message.content == answer
    plain = _ask(client, question)  # the next request has the spec's own settings again
    assert plain.usage.completion_tokens != tokens or plain.choices[0].message.content != answer


def test_stop_strings_end_the_answer_where_they_first_appear(client, reference):
    """stop reaches the answering agent: its answer is the one without stop, cut where the
    string first appears, and ends with finish_reason stop."""
    answer, tokens = reference[QUESTIONS[2]]
    middle = len(answer) // 2
    stop = next(answer[i:i + 2] for i in range(middle, len(answer) - 1) if answer[i:i + 2].isascii()
                and answer[i:i + 2].strip())
    reply = _ask(client, QUESTIONS[2], stop=[stop, "never-in-an-answer"])
    assert reply.choices[0].message.content == answer[:answer.index(stop)]
    assert reply.choices[0].finish_reason == "stop" and reply.usage.completion_tokens < tokens
    assert _ask(client, QUESTIONS[2]).choices[0].message.content == answer  # the next request has none


def test_a_stream_sends_the_answer_then_usage(client, reference):
    answer, tokens = reference[QUESTIONS[3]]
    chunks = list(_ask(client, QUESTIONS[3], stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == answer
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1 and chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == tokens
    assert {c.id for c in chunks} == {chunks[0].id}


def test_progress_events_stream_when_asked(client, reference):
    chunks = list(_ask(client, QUESTIONS[0], stream=True, extra_body={"x_latentray": {"events": True}}))
    events = [c.model_extra["x_latentray"]["event"] for c in chunks if not c.choices]
    assert [e["event"] for e in events][:2] == ["queued", "running"]
    assert [e["agent"] for e in events if e["event"] == "step"] == ["planner", "critic", "refiner", "judger"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reference[QUESTIONS[0]][0]


def test_models_lists_the_spec(client, endpoint):
    (card,) = client.models.list().data
    assert (card.id, card.owned_by) == (MODEL, "latentray")
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_sixteen_concurrent_clients_each_answered_once(endpoint, reference):
    service, server = endpoint
    asked = [QUESTIONS[i % len(QUESTIONS)] for i in range(16)]
    before = service.health()

    def ask(question):
        return _ask(openai.OpenAI(base_url=server.url, api_key=TOKEN, max_retries=0, timeout=120), question)

    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(ask, asked))
    after = service.health()
    assert after["questions_run"] - before["questions_run"] == 16
    assert len({r.id for r in replies}) == 16
    for question, reply in zip(asked, replies):
        assert (reply.choices[0].message.content, reply.usage.completion_tokens) == reference[question]
    assert server.admission.in_flight == 0


def test_the_token_is_checked_and_never_echoed(endpoint):
    url = endpoint[1].url
    for token in ("wrong-token", "", None):
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        status, body = _post(url, {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, headers)
        assert status == 401 and body["error"]["code"] == "invalid_api_key" and TOKEN not in json.dumps(body)
    wrong = openai.OpenAI(base_url=url, api_key="wrong-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        _ask(wrong, "hi")
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()


def _post(url: str, body, headers: dict | None = None, raw: bytes | None = None) -> tuple:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/chat/completions", data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_oversized_bodies_are_413_and_long_questions_400(client, endpoint):
    with pytest.raises(openai.APIStatusError) as big:
        _ask(client, "q" * (MAX_BYTES + 10))
    assert big.value.status_code == 413 and "max_request_bytes = 4096" in big.value.message
    with pytest.raises(openai.BadRequestError, match="max_question_chars = 2000"):
        _ask(client, "q" * (MAX_CHARS + 1))
    with pytest.raises(openai.BadRequestError, match="control character U\\+0000"):
        _ask(client, "binary\x00content")


MALFORMED = [
    (b"{not json", 400, "not JSON"),
    (b"\xff\xfe", 400, "not UTF-8"),
    (b"[1, 2]", 400, "must be a JSON object"),
    (b"[" * 4000, 400, "not JSON"),
    ({"model": MODEL}, 400, "messages must be a non-empty list"),
    ({"model": MODEL, "messages": []}, 400, "messages must be a non-empty list"),
    ({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}, 400, "role must be one of"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}, 400,
     "must have role 'user'"),
    ({"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, 400,
     "text parts"),
    ({"model": MODEL, "messages": [{"role": "user", "content": 3}]}, 400, "content must be a string"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "  "}]}, 400, "the question is empty"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}, 404, "serves 'latent_chain'"),
    ({"messages": [{"role": "user", "content": "x"}]}, 400, "model must be a string"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "n": 2}, 400, "n = 2 is not supported"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}, 400,
     "stop must be a non-empty string or a list of up to 4"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stop": [""]}, 400, "stop must be"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stop": 3}, 400, "stop must be"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "store": True}, 400, "store = true"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, 400,
     "tools"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 13}, 400,
     "max_new_tokens = 12"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, 400, "whole number >= 1"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "temperature": 3}, 400, "temperature"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "top_p": 0}, 400, "top_p"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "seed": 1.5}, 400, "seed"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, 400, "stream"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "temprature": 1}, 400,
     "unrecognized request argument supplied: 'temprature'"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "x_latentray": {"trace": 1}}, 400,
     "x_latentray has unknown field 'trace'"),
]


def test_malformed_bodies_are_openai_errors(endpoint, caplog):
    url = endpoint[1].url
    for body, status, words in MALFORMED:
        raw = body if isinstance(body, bytes) else None
        got, reply = _post(url, body, {"Authorization": f"Bearer {TOKEN}"}, raw)
        assert (got, status) == (status, status) and words in reply["error"]["message"], (body, reply)
        assert set(reply["error"]) == {"message", "type", "param", "code"}
    status, reply = _post(url.replace("/v1", "/v2"), {}, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 404 and "POST /v1/chat/completions" in reply["error"]["message"]
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


def test_earlier_messages_and_context(client, reference, endpoint):
    reply = client.chat.completions.create(model=MODEL, messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "hello"}]},
        {"role": "assistant", "content": "Hi."}, {"role": "user", "content": QUESTIONS[0]}])
    assert reply.choices[0].message.content == reference[QUESTIONS[0]][0]  # the spec's roles prompt the agents
    assert reply.model_extra["x_latentray"]["earlier_messages"] == 3


class _HeldService:
    """A stand-in service whose requests stay in flight until the test lets them finish."""

    def __init__(self, limits):
        from types import SimpleNamespace

        self.spec = SimpleNamespace(name="held", limits=limits)
        self.plan = SimpleNamespace(answer_steps=("a",))
        self.tickets, self.submitted = [], threading.Event()

    def max_new_tokens(self, overrides=None):
        return 8

    def submit(self, questions, on_event=None, overrides=None):
        ticket = Ticket(questions, {}, on_event)
        self.tickets.append(ticket)
        self.submitted.set()
        return ticket

    def reply(self, ticket, request_id=None):
        return {"time": ticket.times()}


def test_more_requests_than_the_shared_limit_are_429():
    """The gRPC server and the endpoint share limits.max_concurrent_requests."""
    service = _HeldService(LimitsSpec(max_concurrent_requests=1))
    shared = Admission(1)
    server = OpenAIServer(service, "127.0.0.1", 0, admission=shared).start()
    body = {"model": "held", "messages": [{"role": "user", "content": "held"}]}
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(_post, server.url, body)
            assert service.submitted.wait(60)
            status, reply = _post(server.url, body)
            assert status == 429 and "limits.max_concurrent_requests = 1" in reply["error"]["message"]
            assert reply["error"]["type"] == "rate_limit_exceeded"
            assert shared.in_flight == 1  # the slot the gRPC server would count too
            detail = {"steps": [{"step": "a", "agent": "a", "tokens": 2, "prompt_tokens": 5, "compute_s": 0.1}],
                      "messages": [], "unit_problems": 1}
            service.tickets[0].record({0: ("released", 2)}, {}, {0: detail})
            status, reply = first.result(60)
            assert status == 200 and reply["choices"][0]["message"]["content"] == "released"
            assert reply["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
            assert shared.in_flight == 0
    finally:
        server.stop(0)


def test_langchain_chat_openai(endpoint, reference):
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model=MODEL, base_url=endpoint[1].url, api_key=TOKEN, max_retries=0, timeout=120)
    message = chat.invoke(QUESTIONS[3])
    assert message.content == reference[QUESTIONS[3]][0]
    assert message.usage_metadata["output_tokens"] == reference[QUESTIONS[3]][1]
    streamed = "".join(part.content for part in chat.stream(QUESTIONS[0]))
    assert streamed == reference[QUESTIONS[0]][0]



def test_stop_lets_requests_in_flight_finish_and_refuses_new_ones():
    service = _HeldService(LimitsSpec())
    server = OpenAIServer(service, "127.0.0.1", 0).start()
    body = {"model": "held", "messages": [{"role": "user", "content": "held"}]}
    detail = {"steps": [], "messages": [], "unit_problems": 1}
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(_post, server.url, body)
        try:
            assert service.submitted.wait(60)
            stopped = server.stop(600, wait=False)  # returns once the port takes no connection
            with pytest.raises(urllib.error.URLError, match="refused"):
                urllib.request.urlopen(f"{server.url}/models", timeout=30)
        finally:
            service.tickets[0].record({0: ("finished", 0)}, {}, {0: detail})
        status, reply = first.result(60)
        assert status == 200 and reply["choices"][0]["message"]["content"] == "finished"
        assert stopped.wait(60)
    assert server.stop(0).is_set()  # a second stop is a no-op


def test_serve_refuses_bad_options_before_loading(tmp_path, capsys):
    from latentray.runtime.cli import main

    spec_file = tmp_path / "chain.yaml"
    spec_file.write_text(SPEC_TEXT)
    assert main(["serve", str(spec_file), "--no-grpc"]) == 2
    assert "--no-grpc leaves nothing to serve; give --openai-port" in capsys.readouterr().err
    assert main(["serve", str(spec_file), "--openai-port", "70000"]) == 2
    assert "--openai-port 70000 is not a port" in capsys.readouterr().err
    service = _HeldService(LimitsSpec())
    taken = OpenAIServer(service, "127.0.0.1", 0)
    try:
        with pytest.raises(RunError, match=f"cannot listen on 127.0.0.1:{taken.port}.*--openai-port"):
            OpenAIServer(service, "127.0.0.1", taken.port)
    finally:
        taken.stop(0)
