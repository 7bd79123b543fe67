"""instancemonitor: libvirt instance failures become recovery notifications."""
