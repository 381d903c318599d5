#!/bin/sh
# RPM %preun ($1: instances left afterwards, 0 on erase): on erase, disable and
# stop the daemon. RKE2, which it installed and started, is left running.
if [ "$1" -eq 0 ]; then
	systemctl --no-reload disable --now rke2-hanode.service >/dev/null 2>&1 || :
fi
exit 0
