"""Parity with finemo 0.41: live oracle, recorded oracle, invariants, and the comparison rule.

A package (this file) so that its conftest.py does not shadow tests/conftest.py as a module
named ``conftest``.
"""
