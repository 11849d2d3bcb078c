"""The shipped Grafana dashboard queries only metrics latentray exports (the table a
Prometheus scrape is checked against in tests/test_metrics_export.py), and shows what an
operator watches: problems/s, tokens/s, failed and retried, bytes and latency per edge, step
seconds per agent at p50 and p95. `latentray grafana` writes it where Grafana reads it."""
import json
import re

from latentray.runtime.cli import main
from latentray.runtime.commands.grafana import DASHBOARD
from latentray.runtime.engine.metrics import prometheus_names


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def queries() -> list:
    """(where, PromQL) of every query: each panel's targets and the templating variables'."""
    out = [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]
    out += [(v["name"], v["query"]["query"]) for v in dashboard()["templating"]["list"] if v["type"] == "query"]
    return out


def test_every_query_names_only_metrics_latentray_exports():
    exported = prometheus_names()
    assert all(p["targets"] for p in panels())
    for where, expr in queries():
        names = set(re.findall(r"\bray_\w+", expr))
        assert names and names <= exported, (where, names - exported)
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), where


def test_it_shows_what_an_operator_watches():
    everything = " ".join(expr for _, expr in queries())
    for counter in ("problems_done", "tokens_decoded", "problems_failed", "problems_retried", "message_bytes",
                    "replicas_lost"):
        assert f"rate(ray_latentray_{counter}_total" in everything, counter
    for histogram, by in (("transfer_latency_seconds", "src, dst"), ("step_seconds", "agent")):
        for q in ("0.5", "0.95"):
            assert f"histogram_quantile({q}, sum by ({by}, le) (rate(ray_latentray_{histogram}_bucket" in everything
    # every panel follows the run picker
    assert all('{run=~"$run"}' in expr for where, expr in queries() if where != "run")


def test_the_command_writes_it_where_grafana_reads_it(tmp_path, monkeypatch, capsys):
    assert main(["grafana", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "latentray.json").read_bytes() == DASHBOARD.read_bytes()
    provisioned = tmp_path / "session" / "dashboards"
    provisioned.mkdir(parents=True)
    monkeypatch.setenv("RAY_METRICS_GRAFANA_DASHBOARD_OUTPUT_DIR", str(provisioned))
    assert main(["grafana"]) == 0 and (provisioned / "latentray.json").exists()
    capsys.readouterr()
    assert main(["grafana", "--out", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "--out" in err and len(err.strip().splitlines()) == 1
