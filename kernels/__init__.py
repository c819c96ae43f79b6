"""JAX kernels: masked per-user AUC and exact blocked top-k."""

from kernels.auc import auc_1d, masked_auc
from kernels.topk import exact_topk

__all__ = ["masked_auc", "auc_1d", "exact_topk"]
