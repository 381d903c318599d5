#!/bin/sh
# RPM %post ($1: number of installed instances, 1 on first install).
# Reload systemd; enable the unit on first install only, so an administrator's
# "disable" survives upgrades. The unit waits for its config before starting.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
	systemctl enable rke2-hanode.service >/dev/null 2>&1 || :
fi
exit 0
