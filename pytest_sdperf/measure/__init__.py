"""Measurements: latency, memory, similarity. Each returns a frozen dataclass of plain data."""
