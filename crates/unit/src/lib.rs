//! systemd's formats, pure: systemd-escape, os-release, unit files and drop-ins.
