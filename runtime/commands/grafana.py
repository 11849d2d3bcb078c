"""`latentray grafana [--out DIR]`: write latentray's Grafana dashboard (problems, tokens,
failures; bytes and latency per edge; step time per agent) where Grafana reads it.

A Ray head started with its dashboard writes a Grafana set-up for its session
(`<ray temp>/session_latest/metrics/grafana/`): a `grafana.ini` whose provisioning loads
every dashboard in its `dashboards/` folder. By default the dashboard goes there, beside
Ray's own, so a Grafana started with that `grafana.ini` shows it in its "Ray" folder.
"""
from __future__ import annotations

import shutil
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[1] / "engine" / "grafana" / "latentray.json"


def add_parser(sub) -> None:
    p = sub.add_parser("grafana", help="write latentray's Grafana dashboard where Ray's Grafana set-up reads it")
    p.add_argument("--out", metavar="DIR",
                   help="folder to write latentray.json into (default: the Grafana dashboards folder of this "
                        "machine's newest Ray session)")


def run(args) -> int:
    from latentray.runtime.engine.errors import RunError
    from latentray.runtime.engine.ray_setup import ray_grafana_dashboards_dir

    out = Path(args.out) if args.out else Path(ray_grafana_dashboards_dir())
    if not out.is_dir():
        how = ("create it, or name another with --out" if args.out else
               "start a Ray head with its dashboard on this machine (`ray start --head`) to have it written, or "
               "name a folder with --out")
        raise RunError(f"no folder {out} to write the Grafana dashboard into: {how}")
    target = out / DASHBOARD.name
    shutil.copyfile(DASHBOARD, target)
    print(target)
    return 0
