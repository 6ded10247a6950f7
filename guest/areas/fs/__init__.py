"""fs.*: files, pipes, eventfds, inode flags and a scratch ext4."""
