"""The text-model part of a model's config (multimodal configs nest it; text models are it)."""
from __future__ import annotations


def text_config(model):
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
