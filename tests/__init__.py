"""plp's tests; a package so helpers import as `tests.support...` from the repository root."""

import pytest

# Helper modules assert too: have pytest explain their failures as it does for tests.
# (Registered here, before tests/conftest.py first imports them.)
pytest.register_assert_rewrite("tests.support")
