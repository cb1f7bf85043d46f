"""The broker fixture of the platform tests (a module, not a conftest.py: the
top-level tests import ``conftest`` by name): a mosquitto on 127.0.0.1 (never another
interface), installed from Debian when missing; a test fails (not skips)
when it cannot be had."""
import pytest

from host_tools.platform.broker import BrokerError, Mosquitto


@pytest.fixture
def broker():
    try:
        b = Mosquitto()
    except BrokerError as e:
        pytest.fail("platform tests need mosquitto (Debian package): %s" % e)
    assert b.host == "127.0.0.1"
    try:
        yield b
    finally:
        b.close()
