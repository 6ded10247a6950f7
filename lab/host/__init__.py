"""The host: prerequisites (`lab doctor`) and installing the Debian packages the lab drives."""
