"""End-to-end commerce tests run against the demo business (``tests.demo_world``)."""

from tests.demo_world import SYSTEM, DemoWorld

__all__ = ["SYSTEM", "DemoWorld"]
