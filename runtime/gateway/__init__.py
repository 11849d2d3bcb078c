"""The gRPC serving gateway: warm agent actors behind a msgpack-over-gRPC API
(`latentray serve`), and its Python client (`latentray ask`). See docs/gateway.md."""
