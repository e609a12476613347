"""Kept only so that tools and make rules that name setup.py still work: the package is
described in pyproject.toml (PEP 621). ``pip install .`` never needs this file."""
from setuptools import setup

setup()
