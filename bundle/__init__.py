"""medfilip_cxr: fine-grained chest X-ray vision-language pre-training as a MONAI bundle.

The configs in ``configs/`` import this package and build every object from its modules;
nothing in here reads a config file or the environment.
"""

__version__ = "0.11.0"  # metadata.json's "version" (a test keeps them equal)
