"""Pipeline variants: the registry, composition, and one module per family."""
