package rke2sim

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultVersion is what `rke2 --version` prints unless RKE2SIM_VERSION or a
// share/rke2/sim-version file beside the binary says otherwise. Set at build
// time with -ldflags "-X github.com/rke2-hanode/rke2-hanode/test/rke2sim.DefaultVersion=v…".
var DefaultVersion = "v1.36.4+rke2r1"

// Settings are the sim's knobs, read from the environment (see doc.go).
type Settings struct {
	StartDelay     time.Duration // RKE2SIM_START_DELAY
	JoinDelay      time.Duration // RKE2SIM_JOIN_DELAY
	AgentDelay     time.Duration // RKE2SIM_AGENT_DELAY
	SupervisorPort int           // RKE2SIM_SUPERVISOR_PORT
	APIPort        int           // RKE2SIM_API_PORT
	VIPRetry       time.Duration // RKE2SIM_VIP_RETRY (0: vip_retryperiod from the manifest)
	VIPLease       time.Duration // RKE2SIM_VIP_LEASE (0: vip_leaseduration from the manifest)
	ConnectRetry   time.Duration // RKE2SIM_CONNECT_RETRY
	ManifestPoll   time.Duration // RKE2SIM_MANIFEST_POLL
	KubeVIPVersion string        // RKE2SIM_KUBEVIP_VERSION
	KubeVIPImage   string        // RKE2SIM_KUBEVIP_IMAGE
	Version        string        // RKE2SIM_VERSION
	// The embedded etcd.
	EtcdClientPort  int           // RKE2SIM_ETCD_CLIENT_PORT (2379)
	EtcdPeerPort    int           // RKE2SIM_ETCD_PEER_PORT (2380)
	EtcdHTTPPort    int           // RKE2SIM_ETCD_HTTP_PORT (2382): /health and the JSON gateway, loopback only
	EtcdLogLevel    string        // RKE2SIM_ETCD_LOG_LEVEL (warn)
	PromoteInterval time.Duration // RKE2SIM_PROMOTE_INTERVAL: the leader's promotion loop
	LearnerStall    time.Duration // RKE2SIM_LEARNER_STALL: a learner this old is removed
	JoinRetry       time.Duration // RKE2SIM_JOIN_RETRY: after a refusal k3s retries (1s, as k3s)
	// CABundle (RKE2SIM_CA=bundle): a root and an intermediate on /cacerts.
	CABundle bool
	// KubeVIPOutlives (RKE2SIM_KUBEVIP_OUTLIVES=1): kube-vip keeps the VIP
	// after its server stops.
	KubeVIPOutlives bool
	// The pods this node runs (see Pods in doc.go), read when
	// the node registers and its pods are made.
	WorkloadPods int // RKE2SIM_WORKLOAD_PODS (0): pods of a ReplicaSet in default
	PDBRefusals  int // RKE2SIM_PDB_REFUSALS (0): evictions refused (429) per workload pod
	// Executable runs the outliving kube-vip (Options.Executable).
	Executable string
}

// LoadSettings reads the RKE2SIM_* variables through getenv; a malformed
// value is an error naming the variable.
func LoadSettings(getenv func(string) string) (Settings, error) {
	s := Settings{
		StartDelay:      300 * time.Millisecond,
		JoinDelay:       300 * time.Millisecond,
		AgentDelay:      300 * time.Millisecond,
		SupervisorPort:  9345,
		APIPort:         6443,
		ConnectRetry:    time.Second,
		ManifestPoll:    time.Second,
		KubeVIPVersion:  "v1.2.3",
		KubeVIPImage:    "ghcr.io/kube-vip/kube-vip",
		EtcdClientPort:  2379,
		EtcdPeerPort:    2380,
		EtcdHTTPPort:    2382,
		EtcdLogLevel:    "warn",
		PromoteInterval: 2 * time.Second,
		LearnerStall:    5 * time.Minute,
		JoinRetry:       time.Second,
	}
	var err error
	dur := func(name string, into *time.Duration) {
		v := getenv(name)
		if v == "" || err != nil {
			return
		}
		d, perr := time.ParseDuration(v)
		if perr != nil || d < 0 {
			err = fmt.Errorf("%s=%q: want a Go duration such as 300ms", name, v)
			return
		}
		*into = d
	}
	port := func(name string, into *int) {
		v := getenv(name)
		if v == "" || err != nil {
			return
		}
		p, perr := strconv.Atoi(v)
		if perr != nil || p <= 0 || p > 65535 {
			err = fmt.Errorf("%s=%q: want a port number", name, v)
			return
		}
		*into = p
	}
	count := func(name string, into *int) {
		v := getenv(name)
		if v == "" || err != nil {
			return
		}
		c, perr := strconv.Atoi(v)
		if perr != nil || c < 0 || c > maxPodCount {
			err = fmt.Errorf("%s=%q: want a whole number from 0 to %d", name, v, maxPodCount)
			return
		}
		*into = c
	}
	count("RKE2SIM_WORKLOAD_PODS", &s.WorkloadPods)
	count("RKE2SIM_PDB_REFUSALS", &s.PDBRefusals)
	dur("RKE2SIM_START_DELAY", &s.StartDelay)
	dur("RKE2SIM_JOIN_DELAY", &s.JoinDelay)
	dur("RKE2SIM_AGENT_DELAY", &s.AgentDelay)
	dur("RKE2SIM_VIP_RETRY", &s.VIPRetry)
	dur("RKE2SIM_VIP_LEASE", &s.VIPLease)
	dur("RKE2SIM_CONNECT_RETRY", &s.ConnectRetry)
	dur("RKE2SIM_MANIFEST_POLL", &s.ManifestPoll)
	dur("RKE2SIM_PROMOTE_INTERVAL", &s.PromoteInterval)
	dur("RKE2SIM_LEARNER_STALL", &s.LearnerStall)
	dur("RKE2SIM_JOIN_RETRY", &s.JoinRetry)
	port("RKE2SIM_ETCD_CLIENT_PORT", &s.EtcdClientPort)
	port("RKE2SIM_ETCD_PEER_PORT", &s.EtcdPeerPort)
	port("RKE2SIM_ETCD_HTTP_PORT", &s.EtcdHTTPPort)
	if v := getenv("RKE2SIM_ETCD_LOG_LEVEL"); v != "" {
		s.EtcdLogLevel = v
	}
	port("RKE2SIM_SUPERVISOR_PORT", &s.SupervisorPort)
	port("RKE2SIM_API_PORT", &s.APIPort)
	if v := getenv("RKE2SIM_KUBEVIP_VERSION"); v != "" {
		s.KubeVIPVersion = v
	}
	if v := getenv("RKE2SIM_KUBEVIP_IMAGE"); v != "" {
		s.KubeVIPImage = v
	}
	switch v := getenv("RKE2SIM_CA"); v {
	case "":
	case "bundle":
		s.CABundle = true
	default:
		if err == nil {
			err = fmt.Errorf("RKE2SIM_CA=%q: want bundle or nothing", v)
		}
	}
	switch v := getenv("RKE2SIM_KUBEVIP_OUTLIVES"); v {
	case "", "0":
	case "1":
		s.KubeVIPOutlives = true
	default:
		if err == nil {
			err = fmt.Errorf("RKE2SIM_KUBEVIP_OUTLIVES=%q: want 1 or 0", v)
		}
	}
	s.Version = versionString(getenv)
	return s, err
}

// versionString: RKE2SIM_VERSION, then <exe dir>/../share/rke2/sim-version
// (written by make-artifacts.sh), then DefaultVersion.
func versionString(getenv func(string) string) string {
	if v := strings.TrimSpace(getenv("RKE2SIM_VERSION")); v != "" {
		return v
	}
	if exe, err := os.Executable(); err == nil {
		if raw, err := os.ReadFile(filepath.Join(filepath.Dir(exe), "..", "share", "rke2", "sim-version")); err == nil {
			if v := strings.TrimSpace(string(raw)); v != "" {
				return v
			}
		}
	}
	return DefaultVersion
}
