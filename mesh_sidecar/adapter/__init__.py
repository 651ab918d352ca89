"""The sidecar process: config, the ModelRuntime gRPC server, model state, logs, metrics, CLI."""
