from tests.daemon.support import daemons

__all__ = ["daemons"]
