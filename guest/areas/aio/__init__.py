"""aio.*: Linux AIO (io_setup, io_submit, io_getevents, io_cancel, io_destroy) on raw syscalls."""
