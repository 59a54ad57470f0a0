"""parnn: train neural networks in parallel on the cores of a CPU, and measure what each
choice costs.

The public surface is the names in ``__all__``; everything else may change.
"""

from __future__ import annotations

from parnn.errors import ParnnError

__version__ = "0.1.0"

__all__ = ["ParnnError", "__version__"]
