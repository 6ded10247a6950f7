"""race.*: C loops that race AIO syscalls against each other, with their overlap measured."""
