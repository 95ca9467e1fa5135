"""The smart metering domain: on-demand reads, disconnect/reconnect, time, firmware version."""
