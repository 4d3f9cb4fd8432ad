"""unravel: compose, generate and bend sound in the latent space of RAVE models."""

from unravel.errors import UnravelError

__all__ = ["UnravelError"]
__version__ = "0.1.0"
