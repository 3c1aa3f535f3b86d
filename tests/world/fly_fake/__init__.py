"""A local Fly Machines API for tests and the sandbox: see ``server.py``."""

from tests.world.fly_fake.server import FlyFake

__all__ = ["FlyFake"]
