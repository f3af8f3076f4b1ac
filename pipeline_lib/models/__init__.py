"""Network architectures behind a name registry (see :mod:`pipeline_lib.models.registry`)."""

from pipeline_lib.models import monai_nets  # noqa: F401  (registers its architectures)
from pipeline_lib.models.registry import available, create_model, register

__all__ = ["available", "create_model", "register"]
