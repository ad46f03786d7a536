"""Re-exports `wharf_datapath.balancer` (its home now) for the runtime's imports."""

from wharf_datapath.balancer import least_loaded, swrr_pick

__all__ = ["least_loaded", "swrr_pick"]
