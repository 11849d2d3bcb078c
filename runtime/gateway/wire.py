"""The gateway's wire format: msgpack payloads on gRPC, no codegen and no pickle.

A Solve request is a msgpack map: {"question": str} or {"questions": [str | {"question":
str, "context"?: str}, ...]}, with an optional "id" (str or int) echoed in the reply.
decode_request() turns bytes into a Request or raises RequestRejected with the status the
client sees and a message naming the field; nothing here runs a model.
"""
from __future__ import annotations

from dataclasses import dataclass

import grpc
import msgpack

from latentray.runtime.gateway.errors import RequestRejected

DEFAULT_PORT = 50051  # latentray serve and ask, unless --port / --address say otherwise
SERVICE = "latentray.Gateway"
SOLVE, SOLVE_STREAM, HEALTH = "Solve", "SolveStream", "Health"
MAX_ID_CHARS = 256
_REQUEST_FIELDS = ("question", "questions", "id")
_PROBLEM_FIELDS = ("question", "context")
_INVALID = grpc.StatusCode.INVALID_ARGUMENT


@dataclass(frozen=True)
class Request:
    questions: list  # each a str or {"question": str, "context": str}
    id: object = None  # the caller's str or int, echoed back


def method_path(name: str) -> str:
    return f"/{SERVICE}/{name}"


def pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack_reply(data: bytes):
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _unpack(data: bytes, max_bytes: int, raw: bool = False):
    """Exactly one msgpack value, every declared length bounded by the bytes actually sent
    (an entry takes at least one byte), so a forged header cannot make it allocate more."""
    n = len(data)
    unpacker = msgpack.Unpacker(raw=raw, strict_map_key=True, use_list=True, max_buffer_size=max(max_bytes, 1),
                                max_str_len=n, max_bin_len=n, max_array_len=n, max_map_len=n // 2, max_ext_len=n)
    unpacker.feed(data)
    value = unpacker.unpack()
    if unpacker.tell() != n:
        raise msgpack.ExtraData(value, data[unpacker.tell():])
    return value


def _not_utf8_field(obj, path: str = "") -> str:
    """Where the first string that is not UTF-8 sits, in a value decoded with raw=True."""
    if isinstance(obj, bytes):
        try:
            obj.decode("utf-8")
        except UnicodeDecodeError:
            return path or "the request"
    elif isinstance(obj, dict):
        for key, value in obj.items():
            name = key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else str(key)
            found = (_not_utf8_field(key, f"a field name in {path or 'the request'}")
                     or _not_utf8_field(value, f"{path}.{name}" if path else name))
            if found:
                return found
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found = _not_utf8_field(value, f"{path or 'request'}[{i}]")
            if found:
                return found
    return ""


def _short(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n] + "..."


def decode_payload(data: bytes, max_bytes: int):
    """The msgpack value in `data`, or RequestRejected: RESOURCE_EXHAUSTED past max_bytes
    (limits.max_request_bytes), INVALID_ARGUMENT if it is not exactly one msgpack value."""
    if len(data) > max_bytes:
        raise RequestRejected(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"the request has {len(data)} bytes, more than limits.max_request_bytes = {max_bytes}; "
                              "send fewer or shorter questions per request")
    try:
        return _unpack(data, max_bytes)
    except UnicodeDecodeError:
        try:
            where = _not_utf8_field(_unpack(data, max_bytes, raw=True))
        except (msgpack.UnpackException, ValueError):  # it only loses the field's name
            where = ""
        raise RequestRejected(_INVALID, f"{where or 'a string in the request'} is not UTF-8; "
                                        "encode every string as UTF-8") from None
    except (msgpack.UnpackException, ValueError) as exc:
        raise RequestRejected(_INVALID, f"the request is not one msgpack value ({type(exc).__name__}: "
                                        f"{_short(exc) or 'malformed'}); send msgpack.packb({{'question': '...'}})"
                              ) from None


def _text(value, field: str) -> str:
    if not isinstance(value, str):
        raise RequestRejected(_INVALID, f"{field} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise RequestRejected(_INVALID, f"{field} is empty; give some text")
    return value


def _unknown(obj: dict, allowed: tuple, where: str) -> None:
    extra = [k for k in obj if k not in allowed]
    if extra:
        raise RequestRejected(_INVALID, f"{where}: unknown field {_short(repr(extra[0]), 60)}; "
                                        f"allowed: {', '.join(allowed)}")


def _problem(item, field: str):
    if isinstance(item, dict):
        _unknown(item, _PROBLEM_FIELDS, field)
        if "question" not in item:
            raise RequestRejected(_INVALID, f"{field}: missing field 'question'")
        problem = {"question": _text(item["question"], f"{field}.question")}
        if item.get("context") is not None:
            if not isinstance(item["context"], str):
                raise RequestRejected(_INVALID, f"{field}.context must be a string, not "
                                                f"{type(item['context']).__name__}")
            problem["context"] = item["context"]
        return problem
    if isinstance(item, str):
        return _text(item, field)
    raise RequestRejected(_INVALID, f"{field} must be a string or a map with 'question', not {type(item).__name__}")


def _request_id(value):
    if value is None or (isinstance(value, str) and len(value) <= MAX_ID_CHARS):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        raise RequestRejected(_INVALID, f"id has {len(value)} characters, more than {MAX_ID_CHARS}; give a shorter id")
    raise RequestRejected(_INVALID, f"id must be a string or an integer, not {type(value).__name__}")


def parse_request(obj, max_questions: int) -> Request:
    """The Request in a decoded payload. More than `max_questions` questions
    (limits.max_questions_per_request) is RESOURCE_EXHAUSTED: a limit, like the byte size."""
    if not isinstance(obj, dict):
        raise RequestRejected(_INVALID, f"the request must be a map with 'question' or 'questions', "
                                        f"not {type(obj).__name__}")
    _unknown(obj, _REQUEST_FIELDS, "request")
    if ("question" in obj) == ("questions" in obj):
        raise RequestRejected(_INVALID, "the request needs exactly one of 'question' (a string) or "
                                        "'questions' (a list)")
    rid = _request_id(obj.get("id"))
    if "question" in obj:
        return Request([_text(obj["question"], "question")], rid)
    items = obj["questions"]
    if not isinstance(items, list):
        raise RequestRejected(_INVALID, f"questions must be a list, not {type(items).__name__}")
    if not items:
        raise RequestRejected(_INVALID, "questions is empty; give at least one question")
    if len(items) > max_questions:
        raise RequestRejected(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"questions has {len(items)} entries, more than limits.max_questions_per_request = "
                              f"{max_questions}; split them over several requests")
    return Request([_problem(item, f"questions[{i}]") for i, item in enumerate(items)], rid)


def decode_request(data: bytes, limits) -> Request:
    """A Solve request from its bytes, checked against the spec's limits."""
    return parse_request(decode_payload(data, limits.max_request_bytes), limits.max_questions_per_request)
