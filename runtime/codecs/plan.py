"""Which codec half runs where, and the pre-flight check that every fitted part exists.

For each edge of a kind codecs map (hidden) the sender encodes (if its codec has an
encoder part) and the receiver decodes; an edge of another soft-token kind (embeds)
only decodes, with identity, which sets the vector size its messages must have. An
aggregation step (the hub) does neither: it combines messages in the wire space they
arrive in, and its receivers decode the result. Part names come from the models' refs,
so the check runs on metadata alone, before any actor starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from latentray.agents.step_call import CodecUse
from latentray.channels.codecs import make_codec, part_role
from latentray.channels.codecs.storage import read_meta
from latentray.channels.errors import CodecError
from latentray.channels.kinds import SOFT_TOKENS, get_kind


@dataclass(frozen=True)
class EdgeCodec:
    encode: CodecUse | None
    decode: CodecUse | None


def edge_refs(spec, plan, edge) -> tuple:
    ref = lambda step_id: spec.models[spec.agents[plan.step(step_id).agent].model].ref  # noqa: E731
    return ref(edge.src), ref(edge.dst)


def edge_codec(spec, plan, edge) -> EdgeCodec:
    kind = get_kind(edge.kind)
    if kind.role != SOFT_TOKENS:
        return EdgeCodec(None, None)
    codec = make_codec(edge.codec)
    src, dst = edge_refs(spec, plan, edge)
    encode = None
    if kind.takes_codec and plan.step(edge.src).action != "aggregate":
        part = codec.encode_part(src, dst)
        encode = CodecUse(edge.codec, part) if part else None
    decode = None
    if plan.step(edge.dst).action != "aggregate":
        read = spec.channels.codec_read if spec.channels.codec_read in codec.readings else "mixture"
        decode = CodecUse(edge.codec, codec.decode_part(src, dst) or "", spec.channels.latent_decode, read)
    return EdgeCodec(encode, decode)


def needed_parts(spec, plan) -> list:
    """The names of the fitted parts the plan's edges apply, each once."""
    names = []
    for edge in plan.edges:
        ec = edge_codec(spec, plan, edge)
        for use in (ec.encode, ec.decode):
            if use is not None and use.part and use.part not in names:
                names.append(use.part)
    return names


def read_parts(spec, plan) -> dict:
    """{part name: Part} of every part the plan needs, read here (on the driver), so actors
    on any node get them through the object store and never read a path of this machine."""
    from latentray.channels.codecs.storage import load_part

    directory = codec_dir(spec)
    return {name: load_part(directory, name) for name in needed_parts(spec, plan)} if directory else {}


def codec_dir(spec) -> str:
    return str(Path(spec.channels.codecs).expanduser()) if spec.channels.codecs else ""


def required_fits(spec, plan, codecs: list | None = None) -> dict:
    """{codec name: [(src ref, dst ref), ...]} the plan's hidden edges (of kinds codecs map)
    need fitted; with `codecs`, those codecs for every such edge instead of each edge's own."""
    out: dict = {}
    for edge in plan.edges:
        if not get_kind(edge.kind).takes_codec:
            continue
        for name in (codecs or [edge.codec]):
            if make_codec(name).needs_fit:
                pair = edge_refs(spec, plan, edge)
                out.setdefault(name, [])
                if pair not in out[name]:
                    out[name].append(pair)
    return out


def check_codec_parts(spec, plan) -> None:
    """CodecError naming channels.codecs and the fix unless every part the plan needs
    exists, belongs to the spec's models, and shared-space parts come from one fit."""
    fits = required_fits(spec, plan)
    if not fits:
        return
    directory = codec_dir(spec)
    if not directory:
        raise CodecError(f"channels.codecs: edges use codec {', '.join(sorted(fits))}, which must be fitted first; "
                         "set channels.codecs to a directory and run `latentray fit-codec SPEC` to fill it")
    for name, pairs in fits.items():
        codec = make_codec(name)
        spaces = set()
        for src, dst in pairs:
            for side, part, ref in (("encode", codec.encode_part(src, dst), src),
                                    ("decode", codec.decode_part(src, dst), dst)):
                if not part:
                    continue
                try:
                    meta = read_meta(directory, part)
                except CodecError as exc:
                    raise CodecError(f"channels.codecs: {exc}") from None
                fitted = (meta.get("models") or {}).get(part_role(codec, side), {}).get("ref")
                if meta.get("codec") != name or fitted != ref:
                    raise CodecError(f"channels.codecs: part {part!r} in {directory} was fitted as codec "
                                     f"{meta.get('codec')!r} for {fitted!r}, not {name!r} for {ref!r}; "
                                     "rerun latentray fit-codec for this spec")
                if codec.shared_space:
                    spaces.add(meta.get("space"))
        if len(spaces) > 1:
            raise CodecError(f"channels.codecs: the {name} parts in {directory} come from different fits "
                             f"({len(spaces)} spaces); rerun latentray fit-codec to fit them together")
