"""Code shared by the test modules (no tests here; fixtures stay in ``tests/conftest.py``)."""
