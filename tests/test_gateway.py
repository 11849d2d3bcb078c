"""The gRPC gateway on loopback: answers equal each question's steps called alone in one
process, streaming, health, concurrency, the token, the limits, malformed and fuzzed
payloads, and `latentray serve` + `latentray ask` end to end in a process of their own."""
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentray.runtime.gateway.batching import Ticket
from latentray.runtime.gateway.client import GatewayClient
from latentray.runtime.gateway.errors import GatewayAuthError, GatewayBusy, GatewayRequestError, GatewayUnavailable
from latentray.runtime.gateway.server import RECEIVE_SLACK_BYTES, GatewayServer
from latentray.runtime.gateway.service import GatewayService
from latentray.runtime.gateway.wire import method_path
from latentray.topologies import build_plan, load_spec
from latentray.topologies.spec import LimitsSpec

from helpers import QUESTIONS, answers_in_one_process, one_actor

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-gateway-token-7f1c"
MAX_CHARS = 2000
MAX_QUESTIONS = 8
# The shipped example on a tiny random model, with short answers.
SPEC_TEXT = ((ROOT / "topologies/examples/latent_chain.yaml").read_text()
             .replace("builtin:smollm2-135m", "tiny:qwen3-64").replace("max_new_tokens: 96", "max_new_tokens: 12"))


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("gateway") / "chain.yaml"
    path.write_text(SPEC_TEXT)
    return path


@pytest.fixture(scope="module")
def spec_plan(spec_file):
    """The spec the gateway serves, its agents in one actor (one process to start, not four)."""
    spec = load_spec(spec_file)
    limits = spec.limits.model_copy(update={"max_question_chars": MAX_CHARS,
                                            "max_questions_per_request": MAX_QUESTIONS})
    spec = one_actor(spec.model_copy(update={"limits": limits}))
    return spec, build_plan(spec)


@pytest.fixture(scope="module")
def reference(spec_plan):
    """{question: (answer, tokens)} of each question alone (batches of one), every step called
    in this process with no Ray, no gateway and no store (the same weights)."""
    spec, _ = spec_plan
    alone = spec.model_copy(update={"run": spec.run.model_copy(update={"batch_size": 1})})
    answers, tokens = answers_in_one_process(alone, QUESTIONS)
    return {q: (a, t) for q, a, t in zip(QUESTIONS, answers, tokens)}


@pytest.fixture(scope="module")
def gateway(ray_session, spec_plan):
    spec, plan = spec_plan
    service = GatewayService(spec, plan, run_name="gw-test").start()
    server = GatewayServer(service, "127.0.0.1", 0, token=TOKEN).start()
    yield service, server
    server.stop(5)
    service.close()


@pytest.fixture
def client(gateway):
    with GatewayClient(gateway[1].address, token=TOKEN, timeout=120) as c:
        yield c


def _raw(address: str, payload: bytes, method: str = "Solve", token: str | None = TOKEN):
    """Call with bytes as they are; (status code, reply dict or details)."""
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(method_path(method))
        try:
            reply = call(payload, timeout=120, metadata=(("authorization", f"Bearer {token}"),) if token else None)
            return grpc.StatusCode.OK, msgpack.unpackb(reply, raw=False)
        except grpc.RpcError as exc:
            return exc.code(), exc.details()


def test_solve_equals_each_question_alone_in_one_process(client, reference):
    reply = client.solve(QUESTIONS, request_id="r-1")
    assert reply["id"] == "r-1" and reply["failed"] == []
    assert [a["index"] for a in reply["answers"]] == list(range(len(QUESTIONS)))
    assert [(a["answer"], a["tokens"]) for a in reply["answers"]] == [reference[q] for q in QUESTIONS]
    t = reply["time"]
    assert t["queue_s"] >= 0 and t["run_s"] > 0
    assert t["total_s"] == pytest.approx(t["queue_s"] + t["run_s"])


def test_a_bad_question_fails_alone(client, reference):
    reply = client.solve([QUESTIONS[0], "y" * (MAX_CHARS + 1), "binary\x00content",
                          {"question": QUESTIONS[3], "context": None}])
    assert [(a["index"], a["answer"], a["tokens"]) for a in reply["answers"]] == [
        (0, *reference[QUESTIONS[0]]), (3, *reference[QUESTIONS[3]])]
    failed = {f["index"]: f["reason"] for f in reply["failed"]}
    assert sorted(failed) == [1, 2]
    assert "max_question_chars = 2000" in failed[1]
    assert "control character U+0000" in failed[2]


def test_stream_yields_steps_then_the_answer(client, reference, spec_plan):
    _, plan = spec_plan
    events = list(client.solve_stream(QUESTIONS[1], request_id=7))
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["queued", "running"] and kinds[-1] == "answer"
    steps = [e for e in events if e["event"] == "step"]
    assert [(e["step"], e["agent"]) for e in steps] == [(s.id, s.agent) for s in plan.steps]
    assert all(e["seconds"] > 0 and e["rows"] >= 1 for e in steps)
    answer, tokens = reference[QUESTIONS[1]]
    assert steps[-1]["tokens"] == tokens  # the judger decodes every token of the answer
    final = events[-1]
    assert final["id"] == 7 and final["answers"] == [{"index": 0, "answer": answer, "tokens": tokens}]


def test_health(client, gateway, spec_plan, ray_session):
    spec, plan = spec_plan
    before = client.health()
    client.solve(QUESTIONS[2])
    after = client.health()
    assert after["ok"] is True and after["spec"] == spec.name == "latent_chain"
    assert after["agents"] == list(plan.agents) == ["planner", "critic", "refiner", "judger"]
    (name,) = after["actors"]  # the one actor hosting them, by its name in Ray
    assert ray_session.get_actor(name) is not None
    assert after["requests_served"] == before["requests_served"] + 1
    assert (after["groups_run"], after["questions_run"]) == (before["groups_run"] + 1, before["questions_run"] + 1)
    assert after["in_flight"] == 0 and after["uptime_s"] > before["uptime_s"] > 0


def test_concurrent_requests_each_answered_once(gateway, reference):
    address = gateway[1].address
    asked = [QUESTIONS[i % len(QUESTIONS)] for i in range(16)]

    def ask(q):
        with GatewayClient(address, token=TOKEN, timeout=120) as c:
            return c.solve(q)

    with GatewayClient(address, token=TOKEN) as c:
        before = c.health()
        with ThreadPoolExecutor(16) as pool:
            replies = list(pool.map(ask, asked))
        after = c.health()
    assert after["questions_run"] - before["questions_run"] == 16  # each ran once, in whatever batches
    assert 1 <= after["groups_run"] - before["groups_run"] <= 16
    for q, reply in zip(asked, replies):
        assert reply["failed"] == []
        assert reply["answers"] == [{"index": 0, "answer": reference[q][0], "tokens": reference[q][1]}]


def test_token_is_checked_and_never_echoed(gateway):
    address = gateway[1].address
    for token in ("wrong-token", None):
        with GatewayClient(address, token=token, timeout=30) as c:
            with pytest.raises(GatewayAuthError) as err:
                c.solve("What is 2 + 2?")
            assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
            assert TOKEN not in str(err.value)
            with pytest.raises(GatewayAuthError):
                c.health()
    with GatewayClient(address, token=TOKEN, timeout=30) as c:
        assert c.health()["ok"] is True  # still serving


def test_size_and_count_limits(client, gateway):
    limit = gateway[0].spec.limits.max_request_bytes
    with pytest.raises(GatewayBusy) as ours:  # past the limit, inside grpc's slack: the server's own check
        client.solve("q" * (limit + 16))
    assert ours.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_request_bytes" in str(ours.value)
    with pytest.raises(GatewayBusy) as grpcs:  # past grpc's receive limit: grpc refuses it itself
        client.solve("q" * (limit + 2 * RECEIVE_SLACK_BYTES))
    assert grpcs.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(GatewayBusy) as many:
        client.solve(["What is 2 + 2?"] * (MAX_QUESTIONS + 1))
    assert "max_questions_per_request = 8" in str(many.value)
    assert client.health()["ok"] is True


MALFORMED = [
    (b"\xc1", "not one msgpack value"),
    (b"not msgpack at all", "not one msgpack value"),
    (msgpack.packb({"question": "x"}) + b"\x00", "ExtraData"),
    (msgpack.packb(["What is 2 + 2?"]), "must be a map"),
    (msgpack.packb({}), "exactly one of 'question'"),
    (msgpack.packb({"question": "a", "questions": ["b"]}), "exactly one of 'question'"),
    (msgpack.packb({"question": 3}), "question must be a string, not int"),
    (msgpack.packb({"question": b"bytes"}, use_bin_type=True), "question must be a string, not bytes"),
    (msgpack.packb({"question": "  "}), "question is empty"),
    (msgpack.packb({"question": "x", "temperature": 1}), "unknown field 'temperature'"),
    (msgpack.packb({"questions": "x"}), "questions must be a list"),
    (msgpack.packb({"questions": []}), "questions is empty"),
    (msgpack.packb({"questions": ["ok", {"context": "c"}]}), "questions[1]: missing field 'question'"),
    (msgpack.packb({"questions": [{"question": "q", "ctx": "c"}]}), "questions[0]: unknown field 'ctx'"),
    (msgpack.packb({"questions": [{"question": "q", "context": 5}]}), "questions[0].context must be a string"),
    (msgpack.packb({"question": "x", "id": 1.5}), "id must be a string or an integer"),
    (msgpack.packb({1: "x"}), "int is not allowed for map key"),
    (b"\x81\xa8question\xa3\xff\xfe\xfd", "question is not UTF-8"),
    (b"\x81\xa9questions\x92\xa1a\xa2\xc3\x28", "questions[1] is not UTF-8"),
]


def test_malformed_payloads_are_invalid_argument(gateway, caplog):
    address = gateway[1].address
    with caplog.at_level(logging.DEBUG):
        for payload, words in MALFORMED:
            for method in ("Solve", "SolveStream"):
                with grpc.insecure_channel(address) as channel:
                    call = (channel.unary_unary if method == "Solve" else channel.unary_stream)(method_path(method))
                    with pytest.raises(grpc.RpcError) as err:
                        reply = call(payload, timeout=30, metadata=(("authorization", f"Bearer {TOKEN}"),))
                        list(reply) if method == "SolveStream" else reply
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (payload, err.value.details())
                assert words in err.value.details(), (payload, err.value.details())
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    with GatewayClient(address, token=TOKEN) as c, pytest.raises(GatewayRequestError) as typed:
        c.solve([" "])
    assert typed.value.code == grpc.StatusCode.INVALID_ARGUMENT and "questions[0] is empty" in str(typed.value)


LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(), st.text(max_size=40),
                   st.binary(max_size=40))
VALUES = st.recursive(LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                      st.dictionaries(st.text(max_size=10), inner, max_size=5)),
                      max_leaves=20)
FIELDS = st.sampled_from(["question", "questions", "id", "context", "x"])
REQUESTS = st.one_of(
    VALUES,
    st.dictionaries(FIELDS, VALUES, max_size=3),
    st.fixed_dictionaries({"questions": st.lists(
        st.one_of(st.text(max_size=30), st.dictionaries(FIELDS, VALUES, max_size=2)), max_size=MAX_QUESTIONS + 2)}),
    st.fixed_dictionaries({"question": st.text(max_size=30)}, optional={"id": VALUES}),
)
FUZZ_BUDGET_S = 20.0


def _check_reply(address: str, payload: bytes) -> None:
    code, reply = _raw(address, payload)
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), \
        (payload, code, reply)
    if code == grpc.StatusCode.OK:
        indices = sorted([a["index"] for a in reply["answers"]] + [f["index"] for f in reply["failed"]])
        assert indices == list(range(len(indices))) and indices
        assert all(isinstance(a["answer"], str) and a["tokens"] >= 0 for a in reply["answers"])
        assert all(isinstance(f["reason"], str) and f["reason"] for f in reply["failed"])


def test_fuzzed_payloads_get_an_answer_or_a_clean_refusal(gateway):
    address = gateway[1].address
    end = time.monotonic() + FUZZ_BUDGET_S
    fuzz = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

    @fuzz
    @given(st.binary(max_size=200))
    def any_bytes(payload):
        if time.monotonic() < end:
            _check_reply(address, payload)

    @fuzz
    @given(REQUESTS)
    def any_structure(request):
        if time.monotonic() < end:
            _check_reply(address, msgpack.packb(request, use_bin_type=True))

    any_bytes()
    any_structure()
    code, health = _raw(address, b"", "Health")
    assert code == grpc.StatusCode.OK and health["ok"] is True and health["in_flight"] == 0


class _HeldService:
    """A stand-in service whose requests stay in flight until the test lets them finish."""

    def __init__(self, limits):
        self.spec = type("Spec", (), {"limits": limits})()
        self.tickets, self.submitted = [], threading.Event()

    def submit(self, questions, on_event=None):
        ticket = Ticket(questions, {}, on_event)
        self.tickets.append(ticket)
        self.submitted.set()
        return ticket

    def reply(self, ticket, request_id=None):
        return {"id": request_id, "answers": [{"index": i, "answer": a, "tokens": t}
                                              for i, (a, t) in sorted(ticket.answers.items())],
                "failed": [], "time": ticket.times()}

    def health(self):
        return {"spec": "held"}


def test_more_requests_than_allowed_in_flight_are_refused():
    service = _HeldService(LimitsSpec(max_concurrent_requests=1))
    server = GatewayServer(service, "127.0.0.1", 0).start()
    try:
        with ThreadPoolExecutor(1) as pool, GatewayClient(server.address, timeout=60) as c:
            first = pool.submit(c.solve, "held")
            assert service.submitted.wait(60)
            with pytest.raises(GatewayBusy) as busy:
                c.solve("one too many")
            assert busy.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limits.max_concurrent_requests = 1" in str(busy.value)
            assert c.health()["in_flight"] == 1  # Health still answers while the limit is reached
            service.tickets[0].record({0: ("released", 3)}, {})
            assert first.result(60)["answers"] == [{"index": 0, "answer": "released", "tokens": 3}]
            assert c.health()["in_flight"] == 0
    finally:
        server.stop(0)


def test_stop_finishes_calls_in_flight_and_refuses_new_ones():
    service = _HeldService(LimitsSpec())
    server = GatewayServer(service, "127.0.0.1", 0).start()
    with ThreadPoolExecutor(1) as pool, GatewayClient(server.address, timeout=60) as c:
        first = pool.submit(c.solve, "held")
        assert service.submitted.wait(60)
        stopped = server.stop(600, wait=False)
        with pytest.raises(GatewayUnavailable):
            c.solve("too late")
        service.tickets[0].record({0: ("finished", 1)}, {})
        assert first.result(60)["answers"] == [{"index": 0, "answer": "finished", "tokens": 1}]
        assert stopped.wait(60)


def _groups(batch_size: int, window_s: float, sizes: list, overrides: list | None = None) -> list:
    """The groups a Collector forms from tickets of these sizes (and overrides), put at once,
    then closed."""
    import queue

    from latentray.runtime.gateway.batching import NO_OVERRIDES, Collector

    formed: queue.Queue = queue.Queue()
    collector = Collector(batch_size, window_s, lambda group: formed.put([len(t.valid) for t in group]))
    for n, o in zip(sizes, overrides or [NO_OVERRIDES] * len(sizes)):
        collector.put(Ticket([f"q{i}" for i in range(n)], {}, overrides=o))
    collector.close()
    groups = []
    while sum(map(len, groups)) < len(sizes):
        groups.append(formed.get(timeout=60))
    return groups


def test_collector_batches_whole_requests_up_to_batch_size():
    # a full batch leaves at once, however long the window; a request that does not fit starts the next
    assert _groups(4, 600.0, [1, 1, 1, 1]) == [[1, 1, 1, 1]]
    assert _groups(4, 600.0, [3, 2]) == [[3], [2]]
    assert _groups(4, 600.0, [1, 6, 1]) == [[1], [6], [1]]
    assert _groups(4, 0.0, [1, 1]) == [[1], [1]]  # no window: nothing waits for company


def test_only_requests_with_equal_overrides_share_a_batch():
    from latentray.runtime.gateway.batching import NO_OVERRIDES, Overrides

    short, hot = Overrides(max_new_tokens=3), Overrides(temperature=0.7, seed=1)
    asked = [NO_OVERRIDES, NO_OVERRIDES, short, Overrides(max_new_tokens=3), hot, NO_OVERRIDES]
    assert _groups(8, 600.0, [1, 2, 1, 1, 1, 1], asked) == [[1, 2], [1, 1], [1], [1]]


def _cli(*args, ray_address: str | None = None):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "LATENTRAY_GATEWAY_TOKEN")}
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
    return subprocess.Popen([sys.executable, "-m", "latentray", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_ask_command_exit_codes(gateway, reference, monkeypatch, capsys):
    from latentray.runtime.cli import main

    from conftest import free_port

    address = gateway[1].address
    monkeypatch.setenv("LATENTRAY_GATEWAY_TOKEN", TOKEN)
    assert main(["ask", "--address", address, QUESTIONS[0]]) == 0
    answer, tokens = reference[QUESTIONS[0]]
    assert f"[0] Q: {QUESTIONS[0]}\n    A: {answer!r} ({tokens} tokens)" in capsys.readouterr().out
    monkeypatch.delenv("LATENTRAY_GATEWAY_TOKEN")
    for args, status in (([address], "UNAUTHENTICATED"), ([f"127.0.0.1:{free_port()}"], "UNAVAILABLE")):
        assert main(["ask", "--address", *args, QUESTIONS[0]]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: gateway") and status in err and len(err.strip().splitlines()) == 1


def test_serve_and_ask_end_to_end(tmp_path, reference, ray_for_other_drivers):
    """`latentray serve` in a process of its own, joining the session's Ray (as a job's driver
    joins a cluster), asked by `latentray ask` over gRPC and by the openai client over its
    OpenAI-compatible endpoint. Its agents share one actor (one process to start; the same
    weights, so the same answers)."""
    import openai

    spec_file = tmp_path / "shared.yaml"
    spec_file.write_text(SPEC_TEXT.replace("    model: base\n", "    model: base\n    actor: shared\n"))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    serve = _cli("serve", str(spec_file), "--port", "0", "--openai-port", "0", "--token-file", str(token_file),
                 "--name", "gw-e2e",
                 ray_address=ray_for_other_drivers.get_runtime_context().gcs_address)
    try:
        line = serve.stdout.readline()  # printed once the actors are up
        assert line.startswith("serving latent_chain on 127.0.0.1:"), (line, serve.stderr.read() if not line else "")
        assert "(actors: 1; token: required)" in line
        address = line.split(" on ")[1].split()[0]
        url = re.search(r" and (http://\S+/v1) \(OpenAI API\)", line).group(1)
        ask = _cli("ask", "--address", address, "--token-file", str(token_file), QUESTIONS[0], "bad\x01question")
        out, err = ask.communicate(timeout=120)
        assert ask.returncode == 1, err  # one question failed its checks
        answer, tokens = reference[QUESTIONS[0]]
        assert f"[0] Q: {QUESTIONS[0]}\n    A: {answer!r} ({tokens} tokens)" in out
        assert "[1] Q: bad\x01question\n    FAILED: the question holds binary content" in out
        reply = openai.OpenAI(base_url=url, api_key=TOKEN, max_retries=0, timeout=120).chat.completions.create(
            model="latent_chain", messages=[{"role": "user", "content": QUESTIONS[0]}])
        assert (reply.choices[0].message.content, reply.usage.completion_tokens) == (answer, tokens)
        serve.send_signal(signal.SIGTERM)
        rest, serve_err = serve.communicate(timeout=120)
        assert serve.returncode == 0, serve_err
        assert "stopped; requests served: 2" in serve_err
        assert TOKEN not in line + rest + serve_err and "Traceback" not in serve_err
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.communicate()


def test_a_call_the_server_cancelled_as_it_stopped_is_unavailable():
    """gRPC answers a call that arrives while the server shuts down with UNAVAILABLE or,
    when it had just taken the call, CANCELLED: both mean no gateway serves it."""
    import grpc

    from latentray.runtime.gateway.errors import GatewayUnavailable, from_rpc_error

    class Cancelled(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.CANCELLED

        def details(self):
            return "CANCELLED"

    error = from_rpc_error(Cancelled(), "127.0.0.1:1")
    assert isinstance(error, GatewayUnavailable) and "CANCELLED" in str(error)
