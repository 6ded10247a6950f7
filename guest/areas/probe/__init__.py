"""probe.*: what the booted kernel supports, asked of the kernel itself."""
