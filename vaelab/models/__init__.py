"""Model families. Each module registers its classes in `MODELS`."""

from vaelab.models import vae, conv, dlib, nonsyn, gmvae, ugvae  # noqa: F401
from vaelab.models.vae import VAE, VAEOutput

__all__ = ["VAE", "VAEOutput"]
