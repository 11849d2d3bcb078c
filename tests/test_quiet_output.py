"""The main job's terminal shows latentray's lines only: progress, questions and answers,
model loads and the summary. Ray's banners and notices, the actors' relayed output and
library warnings stay out of it unless --verbose."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import yaml

from latentray.runtime.cli import parser
from latentray.runtime.engine import ray_setup

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "topologies" / "examples" / "latent_chain.yaml"
QUESTIONS = ROOT / "topologies" / "examples" / "questions.jsonl"
SCRIPT = shutil.which("latentray", path=str(Path(sys.executable).parent))

# Every line the main job may print, and nothing else.
ALLOWED = [re.compile(p) for p in (
    r"\[latentray\] latent_chain: \d+/\d+ problems, [\d.]+ problems/s, [\d.]+ tokens/s",  # progress
    r"\[[^\]]+\] Q: .+",  # a question
    r"    A: .+",  # its answer
    r"model tiny:qwen3-64 in \S+: [\d.]+ s \(built in code\)",  # a model load
    r"wrote \S+ .*summary\.json",  # where the results are
    r"summary: \d+ questions, .+",  # the summary
)]


def _tiny_example(tmp_path) -> Path:
    """The example chain on a tiny model, answers cut short, its agents in one actor: the
    same command, fast."""
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["models"]["base"]["ref"] = "tiny:qwen3-64"
    spec["agents"]["judger"]["max_new_tokens"] = 4
    for agent in spec["agents"].values():
        agent["actor"] = "team"
    path = tmp_path / "latent_chain.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_main_job_prints_only_its_own_lines(tmp_path):
    command = [SCRIPT] if SCRIPT else [sys.executable, "-m", "latentray"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own local Ray, as the demo
    proc = subprocess.run([*command, "run", str(_tiny_example(tmp_path)), "--input", str(QUESTIONS),
                           "--output", str(tmp_path / "out"), "--restart"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    for noise in ("Warning", "FutureWarning", "(pid=", "Token authentication", "Started a local Ray",
                  "de-quantizing", "Traceback"):
        assert noise not in output, output
    strays = [line for line in output.splitlines() if not any(p.fullmatch(line) for p in ALLOWED)]
    assert strays == [], output
    questions = len(QUESTIONS.read_text().splitlines())
    assert output.count(" Q: ") == questions and output.count("    A: ") == questions
    assert output.count("model tiny:qwen3-64 in ") == 1 and "summary: " in proc.stdout


@pytest.mark.parametrize("argv", [["run", "s.yaml", "-q", "x"], ["eval", "s.yaml", "-d", "d.jsonl", "-o", "out"],
                                  ["serve", "s.yaml"]])
def test_run_eval_and_serve_take_verbose(argv):
    assert parser().parse_args(argv).verbose is False
    assert parser().parse_args([*argv, "--verbose"]).verbose is True


@pytest.mark.parametrize("verbose", [False, True])
def test_ray_relays_actor_output_only_when_verbose(monkeypatch, verbose):
    seen = {}

    def fake_init(**kwargs):
        seen.update(kwargs)

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray_setup, "STARTED_LOCALLY", False)
    ray_setup.ensure_ray(verbose=verbose)
    assert seen["log_to_driver"] is verbose and seen["configure_logging"] is verbose


def test_gguf_conversion_draws_no_bar(capsys):
    """transformers draws this bar with tqdm directly; inside an actor each redraw would be a
    line on the driver (agents/models/gguf.py silences it while a GGUF file is read)."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    from latentray.agents.models.gguf import _no_conversion_bar

    bar = gguf_utils.tqdm
    with _no_conversion_bar():
        assert list(gguf_utils.tqdm(range(3), desc="Converting and de-quantizing GGUF tensors...")) == [0, 1, 2]
    assert "de-quantizing" not in capsys.readouterr().err
    assert gguf_utils.tqdm is bar
