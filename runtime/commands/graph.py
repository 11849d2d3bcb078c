"""`latentray graph SPEC -o FILE.png|svg`: draw a spec's plan.

One node per step, placed in columns by dependency depth (a mesh shows its rounds, a hub
its fan-in and fan-out), coloured by agent; one arrow per message, labelled with its kind
(and codec when it is not identity). The answer steps are drawn with a thick border.
"""
from __future__ import annotations

import sys
from pathlib import Path

from latentray.topologies.errors import SpecError
from latentray.topologies.loader import load_plan

FORMATS = (".png", ".svg")


def layout(plan) -> dict:
    """step id -> (x, y): x = depth (1 + deepest input), y = spread evenly within the column."""
    depth, columns = {}, {}
    for s in plan.steps:
        depth[s.id] = 1 + max((depth[e.src] for e in s.inputs), default=0)
        columns.setdefault(depth[s.id], []).append(s.id)
    pos = {}
    for x, (_, ids) in enumerate(sorted(columns.items())):
        for i, sid in enumerate(ids):
            pos[sid] = (x * 3.0, (len(ids) - 1) / 2.0 - i)
    return pos


def draw(spec, plan, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # keep labels as searchable text in SVG

    pos = layout(plan)
    agents = list(plan.agents)
    colors = plt.get_cmap("tab10")
    height = max(3.0, 1.1 * max(sum(1 for p in pos.values() if p[0] == x) for x, _ in pos.values()))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len({p[0] for p in pos.values()}) * 2), height))
    for e in plan.edges:
        (x0, y0), (x1, y1) = pos[e.src], pos[e.dst]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color="0.45", shrinkA=22, shrinkB=22, lw=1.0))
        label = e.kind if e.codec == "identity" else f"{e.kind}/{e.codec}"
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, label, fontsize=7, ha="center", va="center",
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    for s in plan.steps:
        x, y = pos[s.id]
        answer = s.id in plan.answer_steps
        ax.text(x, y, f"{s.id}\n{s.action}", fontsize=8, ha="center", va="center",
                bbox=dict(boxstyle="round,pad=0.4", fc=colors(agents.index(s.agent) % 10), alpha=0.85,
                          ec="black", lw=2.0 if answer else 0.5))
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 1.5, max(xs) + 1.5)
    ax.set_ylim(min(ys) - 1.0, max(ys) + 1.0)
    ax.set_axis_off()
    ax.set_title(f"{spec.name}: {plan.topology}, {plan.rounds} rounds, {len(plan.edges)} messages", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, format=out.suffix[1:])
    plt.close(fig)


def add_parser(sub) -> None:
    p = sub.add_parser("graph", help="draw a spec's topology")
    p.add_argument("spec")
    p.add_argument("-o", "--output", required=True, help="FILE.png or FILE.svg")


def run(args) -> int:
    spec_path, out_path = args.spec, args.output
    out = Path(out_path)
    if out.suffix.lower() not in FORMATS:
        print(f"error: {out_path}: cannot draw {out.suffix or 'a file without extension'!r} "
              f"(fix: name the output FILE.png or FILE.svg)", file=sys.stderr)
        return 2
    try:
        spec, plan = load_plan(spec_path)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("error: drawing needs matplotlib (fix: pip install 'latentray[graph]')", file=sys.stderr)
        return 2
    out = out.with_suffix(out.suffix.lower())
    out.parent.mkdir(parents=True, exist_ok=True)
    draw(spec, plan, out)
    print(f"wrote {out}")
    return 0
