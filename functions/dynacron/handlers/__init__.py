"""Thin Lambda entrypoints: build dependencies once, delegate to the library."""
