// Package installer does on one host what the runbook does by hand for
// RKE2: write its config.yaml, install it, start its service and see it come
// up, against the real RKE2's behaviour.
//
// It owns:
//   - RKE2's config.yaml for the three cases (RenderConfig, WriteConfig):
//     bootstrap server (short token, no server:), joining server and agent
//     (server: https://VIP:9345 and the secure token K10<ca-hash>::server:<secret>),
//     tls-san with the VIP first, and rke2-config passthrough that may not
//     touch the keys listed in OwnedKeys;
//   - install methods (Install): "script" runs RKE2's install script with
//     INSTALL_RKE2_* variables, retried with backoff, skipped when the wanted
//     version is there, and copies a kube-vip image archive for airgap;
//     "none" only checks that rke2 is there;
//   - two ServiceManagers that mean the same by active (READY=1 under
//     Type=notify): SystemdManager over D-Bus, and ExecManager supervising
//     `rke2 server|agent` as a child with a NOTIFY_SOCKET of its own;
//   - Inspect for a host that already holds RKE2 (whether its datastore may
//     be started is pkg/node's resume plan), and the host's Preflight checks. (Whether RKE2 answers is asked with
//     pkg/vip's prober, which also checks the cluster CA.)
//
// It must never: start a service from Install (installs run in parallel on
// every host while only starts sit on the critical path); write a config
// without server: over an existing datastore unless the cluster says this
// host is resuming; block on a systemd start job (RKE2's units can take
// minutes to become ready); log, print or put in an error the token or the
// secure token (RenderConfig's output holds it, so it is never logged); or
// decide anything about the cluster: which case a host is in is pkg/node's
// call, from the election.
//
// rke2_hanode_install_duration_seconds is a gauge of the last Install's
// wall-clock time (a host installs once per daemon start, so a histogram
// would hold one sample).
package installer
