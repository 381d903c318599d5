// Package etcdview reads this server's view of its local etcd — the member
// list, its own member, revision, raft index, leader and health — the way
// any client of RKE2's etcd may, with net/http only: no etcd or gRPC module
// is linked into the daemon.
//
// # How RKE2 serves etcd (k3s pkg/etcd, pkg/daemons/control/deps)
//
//   - listen-client-urls https://127.0.0.1:2379,https://<node-ip>:2379:
//     gRPC only, because k3s also sets listen-client-http-urls
//     https://127.0.0.1:2382 (etcd then serves HTTP on that URL alone).
//   - The HTTP URL carries /health, /version and etcd's JSON gRPC gateway
//     (/v3/...): k3s's etcd config file does not name enable-grpc-gateway,
//     so etcd's default (on) applies. It listens on loopback only.
//   - Client TLS: the server certificate is
//     <data-dir>/server/tls/etcd/server-client.crt, client-cert-auth is on
//     and trusts <data-dir>/server/tls/etcd/server-ca.crt; clients (the
//     apiserver, `rke2 etcd-snapshot`) use client.crt and client.key from
//     the same folder. A client without a certificate from that CA is
//     refused in the TLS handshake.
//
// So Read POSTs to https://<loopback>:2382/v3/maintenance/status and
// /v3/cluster/member/list and GETs /health, with the client certificate
// and the etcd server CA, each call under its own deadline. The gateway's
// JSON uses proto field names, and 64-bit integers are strings.
//
// <loopback> is 127.0.0.1, except where several hosts share one machine
// (the loopback test cluster, every host on its own 127.0.0.x): there the
// host's own loopback address is its advertise address. The caller passes
// the address; the rule lives in pkg/node.
//
// The package reads only; it never writes to etcd. Nothing it returns
// holds key material.
package etcdview
