"""`latentray fit-codec SPEC --out DIR`: fit every codec part the spec's edges need.

Each model the fits involve is loaded once, reads the anchor texts (the fit share: held-
out texts are left for `latentray codec-eval`), and gives its last-layer states at the
anchor points; then each codec fits its parts from those states and they are written to
DIR (safetensors + JSON, atomically). The hub's maps can then be trained further by
distillation (`--distill-steps`, runtime/codec_distill.py).
"""
from __future__ import annotations

import sys
import time

from latentray.agents.anchor_states import anchor_states
from latentray.agents.fingerprint import model_fingerprint
from latentray.agents.models import load_model
from latentray.channels.codecs import make_codec
from latentray.channels.codecs.anchors import anchor_hash, load_anchor_texts, split_anchors
from latentray.channels.codecs.storage import save_part
from latentray.channels.errors import CodecError

from latentray.runtime.codecs.plan import required_fits


def progress_bar(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="text", file=sys.stderr, disable=quiet or not sys.stderr.isatty(),
                leave=False)


def model_kwargs(spec, ref: str) -> dict:
    """load_model arguments for the spec's model with this ref."""
    m = next(m for m in spec.models.values() if m.ref == ref)
    return dict(ref=m.ref, dtype=m.dtype, device=m.device, seed=m.seed or 0, trust_remote_code=m.trust_remote_code,
                sha256=m.sha256)


def states_for(spec, refs, texts: list, ahash: str, quiet: bool = False, log=print) -> dict:
    """{ref: AnchorStates} of each model over `texts` ([(index, text)]), one model loaded at a time."""
    out = {}
    for ref in refs:
        t0 = time.perf_counter()
        model, tokenizer, _ = load_model(**model_kwargs(spec, ref))
        fp = model_fingerprint(model, tokenizer)
        with progress_bar(len(texts), ref, quiet) as bar:
            out[ref] = anchor_states(model, tokenizer, texts, ref=ref, fingerprint=fp, anchor_hash=ahash,
                                     progress=bar.update)
        log(f"  {ref}: {len(out[ref].keys)} anchor points, d={out[ref].hidden.shape[1]}, "
            f"{time.perf_counter() - t0:.1f} s")
        del model
    return out


def fit_codecs(spec, plan, out_dir: str, anchors: str | None = None, options: dict | None = None,
               quiet: bool = False, log=print, codecs: list | None = None) -> list:
    """Fit and save every part (of `codecs` instead of the edges' own, if given); returns
    the saved parts' metadata."""
    fits = required_fits(spec, plan, codecs)
    if not fits:
        log("nothing to fit: no hidden edge of this spec uses a fitted codec (ridge, relative, hub)")
        return []
    texts = load_anchor_texts(anchors)
    fit_texts, _ = split_anchors(texts)
    ahash = anchor_hash(texts)
    refs = list(dict.fromkeys(r for pairs in fits.values() for pair in pairs for r in pair))
    log(f"anchors: {len(fit_texts)} fit texts of {len(texts)} ({anchors or 'shipped set'}), models: {', '.join(refs)}")
    states = states_for(spec, refs, fit_texts, ahash, quiet, log)
    saved = []
    for name, pairs in fits.items():
        codec = make_codec(name, **(options or {}))
        try:
            parts = codec.fit(states, pairs)
        except (RuntimeError, ValueError) as exc:
            raise CodecError(f"codec {name}: the fit failed: {exc}") from None
        for part in parts:
            path = save_part(out_dir, part)
            log(f"  {name}: {path}  {_fit_summary(part.meta)}")
            saved.append(part.meta)
    return saved


def _fit_summary(meta: dict) -> str:
    fit = meta.get("fit") or {}
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in fit.items())
