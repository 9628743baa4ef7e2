"""Data: the SynthCXR generator (``bundle.data.synthcxr``) and datalists (``bundle.data.datalist``)."""
