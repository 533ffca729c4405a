"""Mercato: a unified commerce platform."""

__version__ = "0.1.0"
