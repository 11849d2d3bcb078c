"""The OpenAI chat-completions wire format: a request body checked field by field into a
ChatRequest, and the completions, stream chunks and errors as OpenAI clients read them.
Nothing here runs a model; openai_server.py does the HTTP and the waiting.

The last message is the user's question. The messages before it are not shown to the
agents (the spec's roles prompt them); the reply counts them in x_latentray. A field that
would change the answer and that latentray cannot honour (n > 1, tools, logprobs,
penalties, a JSON response format) is refused, never ignored.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

from latentray.runtime.gateway.batching import Overrides

TEXT = "invalid_request_error"
MAX_SEED = 2 ** 63 - 1
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# Fields that change nothing here whatever their value (who asked, what to store, tags).
HARMLESS = ("user", "metadata", "service_tier", "parallel_tool_calls", "prompt_cache_key", "safety_identifier")
# Fields accepted only at the value that asks for nothing latentray lacks: {field: (allowed values...)}.
NEUTRAL = {"n": (1,), "logprobs": (False,), "top_logprobs": (0,), "presence_penalty": (0,),
           "frequency_penalty": (0,), "logit_bias": ({},), "tools": ([],), "functions": ([],),
           "tool_choice": ("none", "auto"), "function_call": ("none", "auto"),
           "response_format": ({"type": "text"},), "store": (False,)}
USED = ("model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop",
        "stream", "stream_options", "x_latentray")
MAX_STOPS = 4  # as OpenAI's API allows
X_FIELDS = ("context", "events")


class OpenAIError(Exception):
    """A refused request: the HTTP status and OpenAI's error object."""

    def __init__(self, status: int, message: str, type: str = TEXT, param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.type, self.param, self.code = status, type, param, code

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}


def invalid(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, TEXT, param, code)


@dataclass(frozen=True)
class ChatRequest:
    model: str
    question: object  # str, or {"question": str, "context": str}
    overrides: Overrides = Overrides()
    stream: bool = False
    include_usage: bool = False
    events: bool = False  # stream the steps' progress as chunks with x_latentray.event
    earlier_messages: int = 0  # messages before the question, not shown to the agents
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))


def decode_json(body: bytes) -> object:
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise invalid("the body is not UTF-8; send JSON encoded as UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise invalid(f"the body is not JSON ({type(exc).__name__}: {str(exc)[:120]}); send a JSON object "
                      "such as {\"model\": ..., \"messages\": [...]}") from None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text_content(content, where: str) -> str:
    """A message's text: a string, or a list of {"type": "text", "text": ...} parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text" or not isinstance(part.get("text"), str):
                raise invalid(f"{where}.content[{i}] is {kind or type(part).__name__!r}; this endpoint takes text "
                              "parts ({\"type\": \"text\", \"text\": ...}) only", f"{where}.content")
            texts.append(part["text"])
        return "\n".join(texts)
    raise invalid(f"{where}.content must be a string or a list of text parts, not {type(content).__name__}",
                  f"{where}.content")


def _messages(value) -> tuple:
    """(the question, how many messages came before it)."""
    if not isinstance(value, list) or not value:
        raise invalid("messages must be a non-empty list of {\"role\", \"content\"} objects", "messages")
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise invalid(f"{where} must be an object with role and content, not {type(message).__name__}", where)
        if message.get("role") not in ROLES:
            raise invalid(f"{where}.role must be one of {', '.join(ROLES)}, not {message.get('role')!r}",
                          f"{where}.role")
    last = value[-1]
    where = f"messages[{len(value) - 1}]"
    if last["role"] != "user":
        raise invalid(f"the last message is the question and must have role 'user', not {last['role']!r}; "
                      "end the list with the user's message", f"{where}.role")
    if "content" not in last:
        raise invalid(f"{where} has no content; give the question as its content", f"{where}.content")
    return _text_content(last["content"], where), len(value) - 1


def _neutral(obj: dict) -> None:
    for name, allowed in NEUTRAL.items():
        value = obj.get(name)
        if value is None or any(value == a and isinstance(value, bool) == isinstance(a, bool) for a in allowed):
            continue
        raise invalid(f"{name} = {json.dumps(value)[:80]} is not supported: latentray answers with the spec's "
                      f"agents and has no {name.replace('_', ' ')}; leave it out", name, "unsupported_parameter")


def _max_tokens(obj: dict, bound: int) -> int | None:
    given = {k: obj[k] for k in ("max_tokens", "max_completion_tokens") if obj.get(k) is not None}
    if len(set(map(repr, given.values()))) > 1:
        raise invalid("max_tokens and max_completion_tokens differ; give one of them", "max_tokens")
    if not given:
        return None
    name, value = next(iter(given.items()))
    if not _is_int(value) or value < 1:
        raise invalid(f"{name} must be a whole number >= 1, not {json.dumps(value)[:40]}", name)
    if value > bound:
        raise invalid(f"{name} = {value} is more than the answering agent's max_new_tokens = {bound} in the spec; "
                      f"ask for at most {bound}, or raise max_new_tokens in the spec", name)
    return value


def _number(obj: dict, name: str, low: float, high: float, low_open: bool = False) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    if not _is_number(value) or not (low < value if low_open else low <= value) or value > high:
        bounds = f"{'>' if low_open else '>='} {low:g} and <= {high:g}"
        raise invalid(f"{name} must be a number {bounds}, not {json.dumps(value)[:40]}", name)
    return float(value)


def _seed(obj: dict) -> int | None:
    value = obj.get("seed")
    if value is None:
        return None
    if not _is_int(value) or abs(value) > MAX_SEED:
        raise invalid(f"seed must be a whole number within +-{MAX_SEED}, not {json.dumps(value)[:40]}", "seed")
    return value


def _stop(obj: dict) -> tuple | None:
    """The request's stop strings: one string or a list of up to MAX_STOPS (null or []: none)."""
    value = obj.get("stop")
    if value is None:
        return None
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
        raise invalid(f"stop must be a non-empty string or a list of up to {MAX_STOPS} of them, not "
                      f"{json.dumps(value)[:80]}", "stop")
    return tuple(stops) or None


def _extension(obj: dict) -> dict:
    ext = obj.get("x_latentray")
    if ext is None:
        return {}
    if not isinstance(ext, dict):
        raise invalid(f"x_latentray must be an object, not {type(ext).__name__}", "x_latentray")
    extra = [k for k in ext if k not in X_FIELDS]
    if extra:
        raise invalid(f"x_latentray has unknown field {extra[0]!r}; allowed: {', '.join(X_FIELDS)}", "x_latentray")
    if ext.get("context") is not None and not isinstance(ext["context"], str):
        raise invalid("x_latentray.context must be a string (the passage a role's {context} shows)",
                      "x_latentray.context")
    if not isinstance(ext.get("events", False), bool):
        raise invalid("x_latentray.events must be true or false", "x_latentray.events")
    return ext


def parse_chat(obj, model: str, max_new_tokens: int) -> ChatRequest:
    """The ChatRequest in a decoded body, or OpenAIError. model: the one model served (the
    spec's name); max_new_tokens: the most a request may ask the answering agent for."""
    if not isinstance(obj, dict):
        raise invalid(f"the body must be a JSON object, not {type(obj).__name__}")
    unknown = [k for k in obj if k not in USED and k not in HARMLESS and k not in NEUTRAL]
    if unknown:
        raise invalid(f"unrecognized request argument supplied: {unknown[0][:60]!r}", unknown[0][:60],
                      "unknown_parameter")
    if obj.get("model") != model:
        if not isinstance(obj.get("model"), str):
            raise invalid(f"model must be a string: the served model is {model!r}", "model")
        raise OpenAIError(404, f"the model {obj['model'][:80]!r} does not exist here; this endpoint serves "
                               f"{model!r} (GET /v1/models)", TEXT, "model", "model_not_found")
    question, earlier = _messages(obj.get("messages"))
    _neutral(obj)
    stream = obj.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("stream must be true or false", "stream")
    options = obj.get("stream_options") or {}
    if not isinstance(options, dict) or any(k != "include_usage" for k in options) \
            or not isinstance(options.get("include_usage", False), bool):
        raise invalid("stream_options must be {\"include_usage\": true | false}", "stream_options")
    ext = _extension(obj)
    overrides = Overrides(max_new_tokens=_max_tokens(obj, max_new_tokens),
                          temperature=_number(obj, "temperature", 0, 2), top_p=_number(obj, "top_p", 0, 1, True),
                          seed=_seed(obj), stop=_stop(obj))
    problem = {"question": question, "context": ext["context"]} if ext.get("context") else question
    return ChatRequest(model, problem, overrides, stream, bool(options.get("include_usage")),
                       bool(ext.get("events")), earlier)


def usage(detail: dict) -> dict:
    """Prompt and completion tokens summed over the agents' steps for one question."""
    prompt = sum(s["prompt_tokens"] for s in detail["steps"])
    completion = sum(s["tokens"] for s in detail["steps"])
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def per_agent(detail: dict) -> dict:
    agents: dict = {}
    for s in detail["steps"]:
        row = agents.setdefault(s["agent"], {"prompt_tokens": 0, "completion_tokens": 0, "steps": 0, "compute_s": 0.0})
        row["prompt_tokens"] += s["prompt_tokens"]
        row["completion_tokens"] += s["tokens"]
        row["steps"] += 1
        row["compute_s"] += s["compute_s"] or 0.0
    return agents


def extension(detail: dict, times: dict, earlier_messages: int) -> dict:
    """The x_latentray field of a reply: tokens per agent, the steps, the messages between
    agents (bytes of the whole batch the question ran in), times."""
    return {"agents": per_agent(detail), "steps": detail["steps"], "trace": detail["messages"],
            "batch_problems": detail["unit_problems"], "time": times, "earlier_messages": earlier_messages}


def completion(chat: ChatRequest, answer: str, finish: str, detail: dict, times: dict) -> dict:
    return {"id": chat.id, "object": "chat.completion", "created": chat.created, "model": chat.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "logprobs": None,
                         "finish_reason": finish}],
            "usage": usage(detail), "x_latentray": extension(detail, times, chat.earlier_messages)}


def chunk(chat: ChatRequest, delta: dict | None = None, finish: str | None = None, **extra) -> dict:
    """One streamed chunk: a choice with `delta` (none: an empty choices list, as the usage
    and progress chunks have) and any extra top-level fields (usage, x_latentray)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return {"id": chat.id, "object": "chat.completion.chunk", "created": chat.created, "model": chat.model,
            "choices": choices, **extra}


def models(model: str, created: int) -> dict:
    return {"object": "list", "data": [model_card(model, created)]}


def model_card(model: str, created: int) -> dict:
    return {"id": model, "object": "model", "created": created, "owned_by": "latentray"}
