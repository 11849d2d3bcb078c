"""What a receiving actor does with each inbox message before the agent sees it:
unpack it from its transport, validate it against the receiver (and the edge codec's
wire size), undo compression, then decode it with the edge codec into the receiver's
input space (hidden -> embeds). Aggregation steps keep messages in their wire space."""
from __future__ import annotations

from latentray.channels.codecs.apply import decode_message
from latentray.channels.compression import decompress_message
from latentray.channels.errors import MessageError, TransportError
from latentray.channels.transports import get_transport
from latentray.channels.validate import validate_message


def receive_messages(call, inbox: tuple, *, receiver_fingerprint: dict, model_dtype, codecs=None,
                     realign=None) -> list:
    """codecs: the actor's CodecBank; realign: the receiving agent's hidden -> input-space map."""
    out = []
    for edge, obj in zip(call.inputs, inbox):
        options = {"backend": edge.backend} if edge.transport == "rdt" else {}
        transport = get_transport(edge.transport, **options)
        try:
            msg = transport.unpack(obj)
        except TransportError as exc:  # the envelope itself is broken: name the edge, as validation does
            raise MessageError(str(exc), sender=edge.src, receiver=call.agent, field=exc.field or "envelope") from None
        decoder = codecs.decoder(edge.decode, call.codec_dir) if (codecs and edge.decode) else None
        if decoder is not None:
            soft_dim = decoder.in_dim  # the codec's wire size
        elif codecs is not None:
            soft_dim = None  # no decode on this edge (an aggregation step): any wire size
        else:
            soft_dim = "receiver"
        validate_message(msg, receiver=call.agent, receiver_fingerprint=receiver_fingerprint,
                         edge_kind=edge.kind, model_dtype=model_dtype, soft_dim=soft_dim)
        wire, kind = msg.nbytes, msg.kind
        msg = decompress_message(msg, model_dtype)
        if decoder is not None:
            msg = decode_message(msg, decoder, realign, receiver=call.agent, out_dtype=model_dtype,
                                 latent_decode=edge.decode.latent_decode)
        out.append(msg.replace(extra={**msg.header.extra, "wire_bytes": wire, "wire_kind": kind}))
    return out
