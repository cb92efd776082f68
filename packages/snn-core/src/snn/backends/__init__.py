"""In-tree neuron-kernel backends (the torch reference backend)."""

__all__: list[str] = []
