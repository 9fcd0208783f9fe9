"""The consortium (CA, kits) and coordinator fixtures of tests/coordinator, for the site's tests."""

from tests.coordinator.conftest import consortium, coordinator  # noqa: F401  (fixtures)
