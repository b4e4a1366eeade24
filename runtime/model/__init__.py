"""What vLLM loads in every process: the M1 config and architecture spec, the model, the
lightning layer, the plugin's `register()`, the vLLM-version compatibility module and the
`vllm serve` parsers. Nothing here imports the engine or MCP."""
