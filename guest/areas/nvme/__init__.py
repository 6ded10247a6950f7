"""nvme.*: the guest's NVMe namespaces, by ioctl and by io_uring's uring_cmd."""
