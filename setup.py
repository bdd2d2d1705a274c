"""Package discovery: every package folder (one with an ``__init__.py``) under mathtune's four layers is a
``mathtune.*`` package, so a new family folder under trainables/ ships without an edit here or in
pyproject.toml (which holds everything else)."""

from setuptools import find_packages, setup

LAYERS = ("search", "spaces", "trainables", "analysis")
FOUND = find_packages(include=[*LAYERS, *(f"{layer}.*" for layer in LAYERS)])

setup(packages=[f"mathtune.{p}" for p in FOUND], package_dir={f"mathtune.{p}": p.replace(".", "/") for p in FOUND})
