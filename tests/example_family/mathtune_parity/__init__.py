"""An example model family in a package of its own (see its pyproject.toml's mathtune.families entry)."""
