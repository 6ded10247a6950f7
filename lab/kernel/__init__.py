"""Kernels: parse a spec, fetch a Debian package or build a source tree, cache the artifact."""
