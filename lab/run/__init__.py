"""A run: ``lab run`` and the pytest plugin (fixtures, options, the kernel-log watch)."""
