#!/bin/sh
# RPM %postun ($1: instances left, 0 on erase, >=1 on upgrade): reload
# systemd; on upgrade restart a running daemon (it resumes its phase).
# RPM has no purge: /var/lib/rke2-hanode and a modified config stay
# (config.yaml is not owned by the package).
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -ge 1 ]; then
	systemctl try-restart rke2-hanode.service >/dev/null 2>&1 || :
fi
exit 0
