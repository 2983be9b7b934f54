"""Helpers shared by the tests: real Redis servers, testbeds (in-process, threaded, as processes), load.

Every helper module of the test suite lives here, and only here; test modules and conftests import from
this package, never from each other.
"""
