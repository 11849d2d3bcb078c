"""Turn spec entries into the plain AgentConfig objects the actors build agents from."""
from __future__ import annotations

from latentray.agents.agent import AgentConfig
from latentray.agents.decoding import SamplingConfig


def agent_configs_for(names, spec, latent: bool = True) -> dict:
    """{agent id: AgentConfig} for the named agents of a spec. latent=False (the text
    baseline) drops every latent step: agents talk in text only."""
    out = {}
    for name in names:
        a = spec.agents[name]
        m = spec.models[a.model]
        out[name] = AgentConfig(
            name=name, role=a.role, latent_steps=a.latent_steps if latent else 0,
            max_new_tokens=a.max_new_tokens, stop=a.stop,
            sampling=SamplingConfig(a.sampling.temperature, a.sampling.top_p, a.sampling.top_k, spec.run.seed),
            realign=a.realign, ridge_lambda=a.ridge_lambda, system_prompt=m.system_prompt,
            template_kwargs=tuple(sorted(m.chat_template_kwargs.items())))
    return out


def spec_agent_configs(names, spec) -> dict:
    """agent_configs_for as the spec's run method asks: the text baseline has no latent steps."""
    return agent_configs_for(names, spec, latent=spec.run.method != "text")
