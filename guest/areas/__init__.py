"""The agent's areas, one folder each: its ops (``ops.py``: ``OPS``, named ``AREA.*``),
its C source with its declarations (``*.c``; ``*.cdef``: the kernel's names), found by
guest/registry.py and guest/build_ffi.py; nothing lists them by hand."""
