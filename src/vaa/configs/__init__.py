"""The shipped presets (``*.yaml``): package data, found by ``vaa.config.shipped_presets``."""
