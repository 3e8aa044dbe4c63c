"""First-stage depth estimators bundled with refinedepth, one family per module.

They are registered through the ``refinedepth.backbones`` entry-point group in ``pyproject.toml``,
the same path a third-party plugin takes; importing this package imports none of them.
"""
