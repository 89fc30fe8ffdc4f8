"""Objectives (losses). Each module registers its classes in `OBJECTIVES`."""

from vaelab.objectives import base, terms, elbo, tc, factor, dip, nonsyn, gmvae, ugvae  # noqa: F401
from vaelab.objectives import weak  # noqa: F401
from vaelab.objectives.base import Objective

__all__ = ["Objective"]
