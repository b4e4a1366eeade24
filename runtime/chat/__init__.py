"""Chat formats, pure Python: M1's own (render and parse) and any other family through its
template. Shared by the engine (server process) and the `vllm serve` parsers (vLLM's API
process), so it lives beside both rather than inside either."""
