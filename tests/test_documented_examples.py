"""Every documented example runs as written: the `python` blocks of docs/python.md and of
the README's Python section, and the README's OpenAI-compatible API section (its serve
command on the main job's spec as shipped: SmolLM2-135M in four actors, and its Python
block) with docs/gateway.md's LangChain block. They share one module, so the real model's
actor that the first starts serves the others (runtime/engine/warm_actors.py)."""
import re
import shlex
from pathlib import Path

import pytest

from latentray.runtime.gateway.openai_server import OpenAIServer
from latentray.runtime.gateway.service import GatewayService
from latentray.topologies import build_plan, load_spec

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]


def blocks(path: Path, kind: str, section: str | None = None) -> list:
    text = path.read_text()
    if section is not None:  # that section of the file, up to the next one
        text = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{kind}\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("doc, section", [("docs/python.md", None), ("README.md", "Python")])
def test_the_python_api_examples(ray_session, doc, section, tmp_path, monkeypatch, capsys):
    found = blocks(ROOT / doc, "python", section)
    assert found, f"no python block in {doc}"
    monkeypatch.chdir(tmp_path)  # what they write lands here
    namespace = {"__name__": "__main__"}
    for block in found:
        exec(compile(block, doc, "exec"), namespace)
    printed = capsys.readouterr().out
    assert "Paris" in printed  # the real model answers the first example's question


def test_the_openai_api_examples(ray_session, capsys):
    """The README's serve command on its spec as shipped (in this process, on a free port),
    and the clients of the README and docs/gateway.md against it: real answers."""
    from latentray.runtime.cli import parser

    readme = ROOT / "README.md"
    (command,) = blocks(readme, "bash", "OpenAI-compatible API")
    words = shlex.split(command)
    assert words[:2] == ["latentray", "serve"]
    args = parser().parse_args(words[1:])
    spec = load_spec(ROOT / args.spec)
    service = GatewayService(spec, build_plan(spec), run_name="shipped").start()
    server = OpenAIServer(service, "127.0.0.1", 0).start()
    try:
        clients = blocks(readme, "python", "OpenAI-compatible API")
        clients += [b for b in blocks(ROOT / "docs/gateway.md", "python") if "ChatOpenAI" in b]
        assert len(clients) == 2
        scopes = []
        for block in clients:
            scopes.append({"__name__": "__main__"})
            exec(compile(block.replace(f"127.0.0.1:{args.openai_port}", server.address), "doc", "exec"), scopes[-1])
        printed = capsys.readouterr().out
        assert "Paris" in printed and "CompletionUsage(completion_tokens=" in printed  # the real model's answer
    finally:
        server.stop(5)
        service.close()
    reply = scopes[0]["reply"]  # the README's first question, max_tokens=16
    assert "Paris" in reply.choices[0].message.content
    assert 0 < reply.usage.completion_tokens <= 16
    x = reply.model_extra["x_latentray"]
    assert [m["kind"] for m in x["trace"]] == ["kv"] * 6  # three parts, read by every later agent
    assert list(x["agents"]) == ["planner", "critic", "refiner", "judger"]
    loads = [i["load"]["how"] for i in service.session.actor_info]
    assert len(loads) == 4 and set(loads) <= {"cache", "converted"}, loads
