// Package rke2sim is a test stand-in for the rke2 binary: cmd/rke2sim is
// installed as bin/rke2 by make-artifacts.sh and behaves like RKE2 in every
// way rke2-hanode depends on. It is strict and noisy on purpose: where real
// RKE2 would fail, it fails, logs why, records it in state.json and exits
// non-zero (or, where current k3s retries, records each refusal and retries),
// so that a product bug shows up as a failed test rather than a quiet retry.
// It is its own Go module because it embeds real etcd
// (go.etcd.io/etcd/server/v3), which the daemon's module must never link.
//
// It owns: parsing RKE2's config, the simulated cluster (CA, tokens,
// embedded etcd member, membership as etcd decides it), the supervisor and API
// listeners, the kube-vip stand-in, readiness notification, the evidence
// file, and the airgap artifact layout with an install.sh stand-in.
// It must never: import the product's packages (in particular not pkg/vip:
// its kube-vip check is written independently to catch renderer bugs), talk
// to anything but the server: address, its cluster's members and the VIP, or
// touch anything outside its data-dir, the kubeconfig and, in ARP mode, the
// VIP's address on its interface.
//
// # Command line
//
//	rke2 server|agent [--config FILE]   (also --config=FILE, -c FILE; else
//	                                    RKE2_CONFIG_FILE, else the default)
//	rke2 server --cluster-reset [--cluster-reset-restore-path[=]SNAPSHOT]
//	rke2 etcd-snapshot save [--config FILE] [--name NAME]
//	rke2 --version                      "rke2 version <v> (<8 hex>)" and "go version go1.…",
//	                                    RKE2's format; the hex is a function of <v>
//
// Any other flag fails with exit 2 ("flag provided but not defined"). Exit
// codes: 0 after SIGTERM/SIGINT, 1 on a refusal or error, 2 on misuse.
//
// # Config
//
// /etc/rancher/rke2/config.yaml (or --config, or RKE2_CONFIG_FILE), then
// FILE.d/*.yaml and *.yml in one lexical order; a later file replaces a key,
// "key+:" appends to a list. Under systemd (INVOCATION_ID and NOTIFY_SOCKET
// set and systemd the parent, or RKE2SIM_UNDER_SYSTEMD=1) the real units run
// `rke2 server|agent` without --config: a --config naming another file than
// the unit would read is refused and recorded in the data-dir of the file
// the unit would read. Honoured:
// data-dir (default /var/lib/rancher/rke2), server, token, token-file,
// tls-san, node-taint (validated as key[=value]:Effect), node-ip (default: the
// default route's address), node-name (default: hostname), write-kubeconfig
// (default: rke2.yaml beside the config file, which for the default config
// is RKE2's /etc/rancher/rke2/rke2.yaml) and write-kubeconfig-mode (0600); the
// kubeconfig is written when the server turns ready. The keys that must
// match on all servers (agent-token, cluster-cidr, cluster-dns,
// cluster-domain, service-cidr, disable-cloud-controller, disable-kube-proxy,
// egress-selector-mode) are compared on join. Every other key is accepted
// and ignored, as RKE2 accepts many more.
//
// # Server
//
// Tokens are parsed as k3s's clientaccess does: not K10: a bare password (or
// a bootstrap token [a-z0-9]{6}.[a-z0-9]{16}); K10: K10<hash>::<user>:<password>
// or K10<hash>::<bootstrap token> with the hash empty or 64 characters, else
// "invalid token CA hash length" / "invalid token format". The hash is
// compared as written (lower-case hex matches).
//
// Without server: and without a datastore (the etcd WAL under
// <data-dir>/server/db/etcd) it does a cluster-init: a new ECDSA CA
// (server/tls/server-ca.{crt,key}; RKE2SIM_CA=bundle: an intermediate signed
// by a root, /cacerts serving both), the secure token K10<CA hash>::server:
// <secret> in server/token and server/node-token (server/agent-token with
// agent-token), server/db/etcd/member.json, and a one-member etcd named
// <node-name>-<8 hex> (kept in server/db/etcd/name). The CA hash is k3s's
// hashCA: one certificate: SHA-256 of /cacerts as served; a bundle: SHA-256
// of the DER of the root the first certificate verifies against, else of the
// bytes as served. A secure token given to a cluster-init is refused (its CA
// cannot exist yet); no token generates a secret.
//
// With an existing datastore it restarts its etcd member with the CA from
// disk and ignores server:, as RKE2 does; as k3s starts its supervisor
// listener before the managed etcd, /ping and /cacerts answer at once, while
// the member waits for a quorum (a cold start: the other servers not up
// yet) with readyz 503 and no READY=1. Except: a token whose secret
// differs from the stored one is refused ("bootstrap data already found and
// encrypted with different token"), and a server: that answers with
// another cluster's CA is refused ("this host has a datastore of another
// cluster …") instead of silently running as a second cluster.
//
// With server: and no datastore it joins: GET /cacerts without
// verification (connection failures are retried every
// RKE2SIM_CONNECT_RETRY), compare the secure token's hash ("token CA hash
// does not match the Cluster CA certificate hash"; a short token only warns),
// then POST the join over TLS verified against that CA with the token. The
// serving member (any voter: the VIP may land on any server) checks the
// token, the critical keys, duplicate names, then calls etcd's
// MemberAddAsLearner. Refusals k3s retries ("etcdserver: too many learner
// members in cluster", "etcdserver: unhealthy cluster": etcd wants every
// voter connected for 5 s before any member add, so a join while a voter is
// down waits for it) are recorded and retried every RKE2SIM_JOIN_RETRY (1s);
// a timeout of the member call too. Recorded and exit 1: a TLS verification
// failure, a rejected token (401), "critical configuration value mismatch
// between servers", a duplicate node name ("etcd cluster join failed:
// duplicate node name found, please use a unique name for this node"), any
// other etcd error. The joiner then starts its member with
// initial-cluster-state existing and sends READY=1 only once the etcd
// leader has promoted it to a voter.
//
// # Promotion, as k3s's leader does it
//
// On the etcd leader a loop looks at the learners every 250 ms: the first
// MemberPromote once a learner has been one for RKE2SIM_JOIN_DELAY (the
// learner phase) and has published its name, then one every
// RKE2SIM_PROMOTE_INTERVAL (2s; k3s uses 15 s) while etcd refuses ("can only
// promote a learner member which is in sync with leader"); a learner older
// than RKE2SIM_LEARNER_STALL (5m) is removed. Readiness (both readyz) needs
// an etcd quorum: a linearizable read, etcd's own health test, every 250 ms;
// without quorum both answer 503, and a restarted member sends READY=1 only
// once it has one.
//
// # Endpoints (TLS, certificate SANs: node-ip, localhost, 127.0.0.1, tls-san)
//
// Supervisor (node-ip:RKE2SIM_SUPERVISOR_PORT): GET /ping → "pong" and GET
// /cacerts → the CA PEM (text/plain, no auth). Token-authenticated (basic
// server:<server secret>, or node:<agent-token when the servers have one,
// else the server secret>, or bearer with the secret or a whole token; an
// agent always authenticates as node), at most 20 reads and 10 writes in flight (429 beyond):
// GET /v1-rke2/readyz ("ok", 503 until ready or without etcd quorum),
// GET /db/info (the etcd member list, server user only), GET
// /v1-rke2/apiservers (JSON list of members' host:API-port), POST
// /v1-rke2/sim/join, and member-to-member POST /v1-rke2/sim/member,
// GET /v1-rke2/sim/members, GET /v1-rke2/sim/vip, GET /v1-rke2/sim/applied. Everything else falls
// through to the API handler. API (node-ip:RKE2SIM_API_PORT): GET /readyz,
// /livez, /healthz, /version, token-authenticated (RKE2's apiserver runs
// without anonymous auth).
//
// etcd (as RKE2 configures it, k3s pkg/etcd): listen-client-urls
// https://127.0.0.1 and https://node-ip on RKE2SIM_ETCD_CLIENT_PORT, gRPC
// only, because listen-client-http-urls is https://<loopback>:
// RKE2SIM_ETCD_HTTP_PORT (/health, /version and etcd's JSON gRPC gateway,
// which RKE2 leaves on). <loopback> is 127.0.0.1, or node-ip where node-ip
// is itself a loopback address (several sims on one machine); the same then
// holds for the client URLs, which bind node-ip alone. TLS from
// <data-dir>/server/tls/etcd/: server-client.crt/.key served,
// client-cert-auth against server-ca.crt; client.crt/.key is what a local
// client presents (the sim's own client too). A client without a
// certificate of that CA fails the handshake. Unlike RKE2, each server
// makes its own etcd CA (RKE2 shares it through its bootstrap data): only a
// host's own clients reach its etcd, so nothing observable depends on it.
// Peer traffic is plain HTTP.
//
// # Agent
//
// The same checks as a joining server (a node token is enough), then a
// registration with its node password (see the Kubernetes API); READY=1
// after RKE2SIM_AGENT_DELAY. No datastore.
//
// # Kubernetes API (6443, also reached through 9345 and the VIP)
//
// Exactly what the product calls, stored in etcd under /registry/ (so every
// server serves the same view; 503 without an etcd quorum). Authentication
// is the admin kubeconfig's client certificate only: the kubeconfig RKE2
// writes (write-kubeconfig; /etc/rancher/rke2/rke2.yaml for the default
// config; mode write-kubeconfig-mode, 0600) names https://127.0.0.1:<API
// port>, the cluster CA, and a system:admin certificate in group
// system:masters signed by the cluster CA (the sim has one CA for serving
// and clients). No verified certificate: 401; a verified one outside
// system:masters: 403; both in Kubernetes' Status JSON, as are 404s
// ({"kind":"Status",…,"reason":"NotFound","message":"nodes \"x\" not found"}).
// The token-authenticated /readyz, /livez, /healthz, /version stay as they
// were. When node-ip is not a loopback address the API and supervisor also
// listen on 127.0.0.1 (RKE2 listens on every address); in a loopback cluster
// the product must reach a server's API on its node-ip.
//
//	GET    /api/v1/nodes[?labelSelector=k,k=v,k!=v,!k]   NodeList
//	GET    /api/v1/nodes/NAME
//	DELETE /api/v1/nodes/NAME        with finalizers: Terminating (deletionTimestamp)
//	PATCH  /api/v1/nodes/NAME        merge-patch+json or strategic-merge-patch+json
//	                                 (spec.unschedulable for cordon, annotations); 415 otherwise
//	GET|DELETE /api/v1/namespaces/kube-system/secrets/NAME
//	GET    /api/v1/pods, /api/v1/namespaces/NS/pods   PodList of the stored pods
//	                                 [?fieldSelector=F=V,F==V,F!=V][&labelSelector=…], F one of
//	                                 spec.nodeName, metadata.namespace, metadata.name,
//	                                 status.phase; another field: 400 "field label not supported: F"
//	POST   /api/v1/namespaces/NS/pods/NAME/eviction   a policy/v1 Eviction (see Pods)
//
// Each node registers once its own side is up (a server after etcd quorum,
// before READY=1; an agent through the server that admits it): the secret
// <node>.node-password.rke2 (kube-system, immutable, type
// rke2.cattle.io/node-password, data.hash) is made on the first
// registration from the node's password file (random, 0600, made on the
// first start: /etc/rancher/node/password for the default config, else
// node/password beside the config file; RKE2SIM_NODE_PASSWORD_FILE
// overrides it). Another password under the same name is refused with 403
// and RKE2's words ("Node password rejected, duplicate hostname or contents
// of '/etc/rancher/node/password' may not match server node-passwd entry,
// try enabling a unique node name with the --with-node-id flag"), recorded
// in rejections and retried every 5-10 s for ever; a server waits so before
// READY=1. A server's Node carries the labels node-role.kubernetes.io/etcd,
// control-plane and master ("true"), the annotations
// etcd.rke2.cattle.io/node-name (its etcd member) and
// etcd.rke2.cattle.io/node-address (node-ip), and the finalizer
// wrangler.cattle.io/managed-etcd-controller; an agent's none of them.
// status.nodeInfo.kubeletVersion is the node's version.
//
// The etcd controller runs on the etcd leader every 250 ms: for a
// Terminating server Node with the finalizer, or one annotated
// etcd.rke2.cattle.io/remove=true, it removes the member whose name and peer
// host match the annotations (not found counts as done); a Terminating Node
// then loses the finalizer and goes with its node-password secret (an agent's
// Node, without finalizers, goes at once with its secret). The removed
// server's etcd stops (etcd's own behaviour); the sim records "removed" in
// its state.json and serves no more (readyz 503), as RKE2 tears down its
// control plane.
//
// # Pods
//
// A node's registration also makes its pods, in etcd under
// /registry/pods/<namespace>/<name>, each a whole v1 Pod (uid,
// resourceVersion, creationTimestamp, spec.nodeName, a container,
// status.phase Running): kube-system/rke2-canal-<node>, controlled by the
// DaemonSet rke2-canal (ownerReferences: apps/v1 DaemonSet,
// controller: true); kube-system/kube-proxy-<node>, the mirror of the
// kube-proxy static pod (annotation kubernetes.io/config.mirror, controlled
// by its Node, as the kubelet makes mirror pods); and default/workload-<node>-<i>
// for i = 1..RKE2SIM_WORKLOAD_PODS (0), controlled by a ReplicaSet. The
// count, and RKE2SIM_PDB_REFUSALS, are the node's own settings (an agent
// sends them with its registration). Each registration (every start) makes
// only what is absent: a canal or kube-proxy pod missing (evicted) is made
// again, as its DaemonSet or the kubelet would; a workload pod is made once
// per name and never again: one evicted stays gone, as its ReplicaSet's
// replacement would run elsewhere (the sim keeps a record of each under
// /rke2sim/pod-budgets/, no API object). A Node deleted for good takes its
// pods with it (Kubernetes' pod garbage collector); registered again, it gets
// its canal and kube-proxy pods, not its workload pods.
//
// An eviction's body is decoded as the apiserver's create handler and the
// eviction subresource do, each refusal a 400 BadRequest Status in their
// words: Content-Type application/json (or none; else 415); apiVersion and
// kind default to policy/v1 Eviction when absent and must otherwise be
// policy/v1 or policy/v1beta1 Eviction (field names case-sensitive; X in
// version "v" cannot be handled as a Eviction: no kind "X" is registered
// …); not JSON: "the object provided is unrecognized (must be of type
// Eviction): …"; metadata.namespace, when set, the path's ("the namespace of
// the provided object does not match the namespace sent on the request");
// metadata.name the path's ("name in URL does not match name in Eviction
// object"). Dry runs and deleteOptions.preconditions are not simulated
// (400). A missing pod: 404 (pods "x" not found). Any existing pod may
// be evicted, DaemonSet and mirror pods too, as the apiserver allows: it is
// kubectl drain's part, and the product's, to leave them; the record says
// which kind it was. A Running workload pod's first RKE2SIM_PDB_REFUSALS (0)
// evictions are refused as a PodDisruptionBudget with no disruption allowed
// refuses them: 429, reason TooManyRequests, "Cannot evict pod as it would
// violate the pod's disruption budget." with the cause DisruptionBudget
// ("The disruption budget workload needs 1 healthy pods and has 1
// currently"). Otherwise the pod is deleted at once (no grace period) and
// the answer is 201 with a Success Status. Every eviction request is
// recorded in the state.json of the server whose API received it (see
// Readiness and evidence): the pod's node and kind (daemonset, mirror,
// workload; "" without such a pod), whether its Node had
// spec.unschedulable at that moment (a drain cordons first), whether it was
// refused (429), and the HTTP status answered.
//
// # cluster-reset and snapshots
//
// rke2 server --cluster-reset needs the server's datastore: it starts the
// local member with etcd's force-new-cluster (one member, the data kept),
// rewrites the member list, writes <data-dir>/server/db/reset-flag, logs
// RKE2's "Managed etcd cluster membership has been reset, restart without
// --cluster-reset flag now. Backup and delete ${datadir}/server/db on each
// peer etcd server and rejoin the nodes" and exits 0. With
// --cluster-reset-restore-path the member's data moves to
// server/db/etcd-old-<unix> and the snapshot is restored in its place with
// etcd's own restore first ("etcd: snapshot path does not exist: …", "…
// must be a file, not a directory: …"). While reset-flag exists a reset is
// refused, exit 1, in k3s's words ("cluster-reset was successfully
// performed, please remove the cluster-reset flag and start rke2 normally,
// if you need to perform another cluster reset, you must first manually
// delete the <data-dir>/server/db/reset-flag file"). The next normal start
// removes reset-flag and deletes this node's node-password secret, as RKE2
// does. The other servers keep their old datastores: they must delete
// server/db and rejoin (the sim does not do it for them).
//
// rke2 etcd-snapshot save asks the local server (https://127.0.0.1:<supervisor
// port>, or node-ip when that is a loopback address; the server token from
// the data-dir) to POST /db/snapshot, which writes etcd's snapshot
// (Maintenance.Snapshot) to <data-dir>/server/db/snapshots/on-demand-<node>-<unix>
// (0600) and answers its name; the command prints "Snapshot <name> saved."
// and exits 0, or exits 1 when the server is not running. --name NAME
// replaces the base name on-demand, as RKE2's flag does (letters, digits,
// '.', '-', '_'; the server and agent commands do not define it).
//
// # Versions
//
// Each sim records its version in state.json and, through its Node's
// kubeletVersion, in etcd. RKE2 refuses no skew; the sim records each
// violation in state.json's skew (RFC 3339 time and text) and carries on:
// a server started on a datastore whose servers run more than one minor
// older ("server X v… started on a datastore whose server Y runs v…: more
// than one minor older"), servers more than one minor apart the other way
// ("apiservers more than one minor apart: …"), an agent of a newer minor than
// a server ("agent X v… is newer than server Y v…").
//
// # Readiness and evidence
//
// READY=1 goes to NOTIFY_SOCKET (unixgram, "@" for the abstract namespace)
// after RKE2SIM_START_DELAY and etcd quorum for a cluster-init or a restart,
// once its member is a voter for a join, after RKE2SIM_AGENT_DELAY for an
// agent.
// <data-dir>/sim/state.json is written atomically:
//
//	{"mode": "cluster-init"|"join"|"agent", "ca_hash": "<hex>",
//	 "joined_via": "<server: URL>", "join_started": "<RFC 3339 nanos>",
//	 "join_finished": "<RFC 3339 nanos>",
//	 "rejections": [{"at": "<RFC 3339 nanos>", "reason": "…"}],
//	 "etcd": {"members": [{"name", "peer_url", "learner"}], "leader", "revision"},
//	 "version": "<running version>", "skew": [{"at", "reason"}],
//	 "removed": "<RFC 3339 nanos> <why>",
//	 "evictions": [{"at", "namespace", "pod", "node", "kind": "daemonset"|"mirror"|"workload"|"",
//	                "node_cordoned": bool, "refused": bool, "code": <HTTP status>}],
//	 "resets": ["<RFC 3339 nanos>", …]}   (each cluster-reset done here)
//
// Every key is always present ("" when not applicable). For a server join
// the two times are its learner phase: from the learner add to its
// promotion as the joiner saw them (all hosts share a clock in the test
// bed), so tests can prove that joins never overlap. The etcd section is the
// local member's view, rewritten whenever it changes (checked every 250 ms). Rejections accumulate across restarts; a restart keeps the
// mode and join times.
//
// # kube-vip stand-in
//
// A ready server polls <data-dir>/server/manifests/*.{yaml,yml,json} every
// RKE2SIM_MANIFEST_POLL and applies a file when its content changed (every
// file once after a start). As in a real cluster the objects live in the
// cluster, not on the host: an object applied on any server reaches every
// server (members pull each other's applied objects each poll; the newest
// apply of an object wins; kept in <data-dir>/sim/applied-manifests.json),
// objects a changed file no longer holds are pruned, and removing a file
// deletes nothing. So a manifest on one server runs kube-vip on all of them,
// and a bad apply on any server takes the VIP down everywhere. A file that
// does not decode is not applied at all (and logged), as RKE2's deploy
// controller does. When a DaemonSet whose name or image mentions kube-vip
// is applied, the objects are compared field by
// field with what kube-vip's generator prints for "manifest rbac" and
// "manifest daemonset --interface IF --address VIP --inCluster --taint
// --controlplane --arp --leaderElection" (testdata/ holds the golden output):
// ServiceAccount, ClusterRole rules and verbs in order, ClusterRoleBinding,
// DaemonSet name, namespace, labels, selector, image, args, pull policy,
// capabilities, hostNetwork, serviceAccountName, tolerations, node
// affinity, and the env by name and in order, with string values. Absent,
// null, {} and [] are the same; anything the generator does not print is a
// problem. Each problem is logged as "kube-vip manifest: <field> = <got>,
// want <want>" and the VIP stays down (a holder drops it); a fixed apply is
// picked up.
// vip_interface must exist on the host; address must be IPv4 with
// vip_subnet "32"; lease timings must be whole seconds with lease >
// renew > 1.2 × retry (client-go's rule).
//
// The image must be RKE2SIM_KUBEVIP_IMAGE:RKE2SIM_KUBEVIP_VERSION.
//
// With RKE2SIM_KUBEVIP_OUTLIVES=1 (and the real binary) kube-vip outlives a
// stopped server, as kube-vip's container outlives `systemctl stop
// rke2-server` (KillMode=process): a server told to stop while it holds the
// VIP starts `rke2 sim-kube-vip` in its own session, which keeps holding it
// (lo: it inherits the bound VIP socket, so no other server can take it,
// and accepts and closes every connection: nothing answers on 9345; a real
// interface: the address stays and is announced every retry period) and
// writes its pid to <data-dir>/sim/kube-vip.pid (log: sim/kube-vip.log).
// rke2-killall.sh (RKE2_DATA_DIR, default /var/lib/rancher/rke2) stops it,
// freeing the VIP; the next start of the server stops it and competes again.
//
// With a valid manifest it competes for the VIP:
//   - vip_interface lo (the loopback cluster; the VIP is a 127/8 address):
//     it holds the VIP by binding VIP:supervisor-port (only one process
//     can), retrying every retry period, so the VIP moves when its holder
//     stops or dies. It serves the same handlers and
//     certificate there, and the API port when free.
//   - a real interface: a lease over the network. A server claims the VIP
//     once it has not answered /ping for the lease duration plus jitter (a
//     fresh start waits one retry period): it adds VIP/32 with netlink,
//     serves on it and sends gratuitous ARP (request and reply), again every
//     3 s while it holds it (kube-vip's default vip_arpRate). Every retry
//     period a holder asks the other members whether they hold it too; of
//     two live holders the lower node name keeps it. A clean stop removes
//     the address; a killed process leaves it (as a crashed kube-vip does),
//     and the next holder's ARP announcement takes over. A process that
//     finds the VIP on its interface at start takes it as its own.
//
// # Environment
//
//	RKE2SIM_START_DELAY      cluster-init/restart until READY=1 (300ms)
//	RKE2SIM_JOIN_DELAY       a server's learner phase (300ms)
//	RKE2SIM_AGENT_DELAY      agent registration until READY=1 (300ms)
//	RKE2SIM_SUPERVISOR_PORT  supervisor port (9345); tests use their own
//	RKE2SIM_API_PORT         API port (6443)
//	RKE2SIM_CONNECT_RETRY    joiner's retry period while unreachable (1s)
//	RKE2SIM_MANIFEST_POLL    manifests folder poll period (1s)
//	RKE2SIM_VIP_RETRY        overrides vip_retryperiod (Go duration)
//	RKE2SIM_VIP_LEASE        overrides vip_leaseduration (Go duration)
//	RKE2SIM_KUBEVIP_VERSION  the kube-vip version the manifest must name (v1.2.3)
//	RKE2SIM_KUBEVIP_IMAGE    its image repository (ghcr.io/kube-vip/kube-vip)
//	RKE2SIM_VERSION          what --version prints; else share/rke2/sim-version
//	                         beside the binary (make-artifacts.sh writes it from
//	                         its own RKE2SIM_VERSION), else DefaultVersion
//	RKE2SIM_LOG_LEVEL        debug|info|warn|error (info)
//	RKE2SIM_ETCD_CLIENT_PORT etcd's client port on node-ip (2379)
//	RKE2SIM_ETCD_PEER_PORT   etcd's peer port on node-ip (2380)
//	RKE2SIM_ETCD_HTTP_PORT   etcd's HTTP client port on the loopback address (2382)
//	RKE2SIM_ETCD_LOG_LEVEL   etcd's own log level (warn)
//	RKE2SIM_PROMOTE_INTERVAL the leader's promotion retry period (2s)
//	RKE2SIM_LEARNER_STALL    a learner this old is removed (5m)
//	RKE2SIM_JOIN_RETRY       retry period after a refusal k3s retries (1s)
//	RKE2SIM_CA               "bundle": root + intermediate on /cacerts
//	RKE2SIM_UNDER_SYSTEMD    1: behave as started by a unit (tests)
//	RKE2SIM_NODE_PASSWORD_FILE the node's password file (see Kubernetes API)
//	RKE2SIM_KUBEVIP_OUTLIVES 1: kube-vip keeps the VIP after SIGTERM (0)
//	RKE2SIM_WORKLOAD_PODS    workload pods this node runs (0; at most 1000; see Pods)
//	RKE2SIM_PDB_REFUSALS     evictions refused (429) per workload pod of this node (0)
//	RKE2_CONFIG_FILE         the config file when no --config is given
//	NOTIFY_SOCKET            systemd's notification socket
//
// Delays are Go durations, counts whole numbers; a malformed value exits 2
// naming the variable.
//
// # Artifacts
//
// make-artifacts.sh BIN OUTDIR [VERSION] (VERSION, else RKE2SIM_VERSION,
// checked to be v1.MINOR.PATCH+rke2rN, goes to share/rke2/sim-version, so
// two versions of artifacts sit side by side in two folders) writes rke2.linux-amd64.tar.gz (no top-level
// folder: bin/rke2 = BIN, bin/rke2-killall.sh, bin/rke2-uninstall.sh,
// lib/systemd/system/rke2-{server,agent}.{service,env}, share/rke2/…),
// sha256sum-amd64.txt (plain sha256sum output) and install.sh, a stand-in
// for the install script's airgap path (see its header for the variables,
// including INSTALL_RKE2_AGENT_IMAGES_DIR for tests).
package rke2sim
