"""Network architectures behind a name registry (see :mod:`pipeline_lib.models.registry`)."""

from pipeline_lib.models import monai_nets, rsunet  # noqa: F401  (register their architectures)
from pipeline_lib.models.registry import available, create_model, create_network, register, supports_deep_supervision

__all__ = ["available", "create_model", "create_network", "register", "supports_deep_supervision"]
