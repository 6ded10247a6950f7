"""mem.*: buffers the agent maps and hands to the kernel by address."""
