"""Test support shared by several test modules (importable as ``support``: ``tests/`` is on
``sys.path`` through pytest's rootdir-relative conftest import, like ``env_support``)."""
