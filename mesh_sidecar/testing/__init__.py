"""Test harness: start real sidecars, model servers and coordinators for end-to-end tests."""
