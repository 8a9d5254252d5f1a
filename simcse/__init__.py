"""SimCSE toolkit: contrastive sentence embeddings; ``SimCSE`` is the inference entry point."""

from simcse.tool import SimCSE

__all__ = ["SimCSE"]
