"""Codec tooling on the driver: which codec half runs on which edge and the pre-flight check
of fitted parts (plan), fitting on anchor texts (fit), distilling (distill), and measuring
fidelity on held-out anchors (evaluate)."""
