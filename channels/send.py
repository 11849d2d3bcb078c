"""The send side of a step, and what the receiving side reports per edge.

A step makes one message; its outgoing edges may want it in several forms (variants): a
hidden message encoded with the edge codec's encoder part (once per codec, skipped when
it already lives in a codec's space, as an aggregate does), then compressed with the
channel's list. Every variant is held to limits.max_message_bytes. The message is
stamped with its send time so each receiver can report the edge's latency.
"""
from __future__ import annotations

import time

from .codecs.apply import encode_message
from .compression import compress_message
from .errors import MessageTooLargeError
from .kinds import get_kind
from .message import LatentMessage, message_checksum

SENT_AT = "sent_at"  # header.extra: wall-clock time the sender finished the message
SENT_FROM = "sent_from"  # header.extra: the sender's Ray node id, so a receiver knows what crossed nodes


def output_variants(msg: LatentMessage, compressions: tuple, encodes: tuple, encoder_for) -> list:
    """One message per variant: compressions[i] is variant i's compression list, encodes[i]
    the codec use it is encoded with (or None; an empty `encodes` means none at all);
    encoder_for(use) -> the encoder half."""
    encodes = encodes or (None,) * len(compressions)
    encodable = get_kind(msg.kind).takes_codec and "space" not in msg.header.extra
    out = []
    for names, use in zip(compressions, encodes):
        m = encode_message(msg, encoder_for(use), use.codec) if (use is not None and encodable) else msg
        out.append(compress_message(m, list(names)) if names else m)
    return out


def check_sizes(outputs: list, limit: int | None, *, agent: str, step_id: str) -> None:
    """MessageTooLargeError for the first variant over `limit` bytes (None: no limit)."""
    for out in outputs:
        if limit is not None and out.nbytes > limit:
            raise MessageTooLargeError(
                f"agent {agent!r} (step {step_id}) made a {out.kind} message of {out.nbytes} bytes for "
                f"{len(out.header.seq_lens) or '?'} problem(s), more than limits.max_message_bytes = {limit}; lower "
                "run.batch_size, compress the channel (channels.compression), or raise the limit", sender=agent)


def send(msg: LatentMessage, *, compressions: tuple, encodes: tuple, encoder_for, limit: int | None,
         agent: str, step_id: str, checksum: bool = False, node: str = "") -> tuple:
    """(the variants to return, the stats they add: out_bytes, and out_checksums if asked).
    node: the sender's node id, stamped on the message."""
    msg = msg.replace(extra={**msg.header.extra, SENT_AT: time.time(), SENT_FROM: node})
    outputs = output_variants(msg, compressions, encodes, encoder_for)
    check_sizes(outputs, limit, agent=agent, step_id=step_id)
    stats = {"out_bytes": [o.nbytes for o in outputs]}
    if checksum:  # proves later that no reader wrote into a message
        stats["out_checksums"] = [message_checksum(o) for o in outputs]
    return outputs, stats


def edge_stats(msg: LatentMessage, node: str = "") -> dict:
    """What one received message cost on its edge: its kind and bytes as they travelled
    (the receiver records them as extra wire_kind / wire_bytes before decoding), its bytes
    once decoded, the time since it was sent, and whether it crossed from another node to
    the receiver's (`node`; unknown when either end did not say)."""
    sent, src_node = msg.header.extra.get(SENT_AT), msg.header.extra.get(SENT_FROM, "")
    return {"src": msg.sender, "kind": msg.header.extra.get("wire_kind", msg.kind),
            "bytes": msg.header.extra.get("wire_bytes", msg.nbytes),
            "decoded_bytes": msg.nbytes,
            "latency_s": (time.time() - sent) if sent else None,
            "src_node": src_node, "cross_node": bool(src_node and node and src_node != node)}
