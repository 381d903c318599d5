// Package config loads rke2-hanode's configuration: the config file, its
// drop-ins, RKE2_HANODE_* environment variables and command-line flags, in
// that order, later sources winning. It validates the result and reports every
// problem at once, each naming the key, the bad value, where the value came
// from and what would be accepted.
//
// The struct below is the reference for every key: the tag `key` is the
// kebab-case name used in files, flags and (upper-cased) in the environment,
// `default` the value when no source sets it, and `help` the one-line meaning
// shown by --help and checked against the README's table.
package config

import (
	"os"
	"strings"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/upgrade"
)

// Default locations.
const (
	DefaultFile = "/etc/rke2-hanode/config.yaml"
	EnvPrefix   = "RKE2_HANODE_"
)

// Config is every key of the daemon's configuration.
type Config struct {
	NodeName         string   `key:"node-name" default:"hostname" help:"unique name of this host (lower-case DNS label or subdomain)"`
	Role             string   `key:"role" default:"" help:"server or agent (required)"`
	Token            string   `key:"token" default:"" help:"the shared cluster secret (or token-file; exactly one)"`
	TokenFile        string   `key:"token-file" default:"" help:"file holding the cluster secret; must not be readable by group or others"`
	AgentToken       string   `key:"agent-token" default:"" help:"servers: the agent secret, also RKE2's agent-token; agents then set token to it (or agent-token-file)"`
	AgentTokenFile   string   `key:"agent-token-file" default:"" help:"servers: file holding the agent secret; must not be readable by group or others"`
	ClusterName      string   `key:"cluster-name" default:"rke2" help:"separates clusters sharing a network (gossip label)"`
	ExpectServers    int      `key:"expect-servers" default:"" help:"servers that form the cluster at first boot: 1, 3, 5 or 7 (required for servers)"`
	MaxServers       int      `key:"max-servers" default:"7" help:"servers: the most etcd voters the cluster grows to (odd, 1-7, at least expect-servers); more servers wait in standby, and one that would make the voters even waits for a second"`
	RemovalTimeout   string   `key:"server-removal-timeout" default:"30m" help:"servers: a server dead this long is removed from etcd if quorum allows (Go duration, at least 10s; 0 = never)"`
	Join             []string `key:"join" default:"" help:"gossip seeds: IPs, host names or host:port (required unless expect-servers is 1)"`
	BindAddress      string   `key:"bind-address" default:"0.0.0.0" help:"address for the gossip, raft and HTTP listeners"`
	AdvertiseAddress string   `key:"advertise-address" default:"" help:"address peers use to reach this host (default: the first IPv4 address of interface)"`
	GossipPort       int      `key:"gossip-port" default:"9347" help:"gossip port, tcp and udp"`
	RaftPort         int      `key:"raft-port" default:"9348" help:"raft port, tcp, servers only"`
	HTTPAddress      string   `key:"http-address" default:":9349" help:"listen address for /metrics, /status, /healthz and /readyz"`
	VIP              string   `key:"vip" default:"" help:"the virtual IPv4 address kube-vip holds for the control plane (required)"`
	Interface        string   `key:"interface" default:"" help:"the network interface that carries the VIP (required)"`
	TLSSAN           []string `key:"tls-san" default:"" help:"extra SANs for RKE2's certificates; the VIP is always added"`
	NodeTaint        []string `key:"node-taint" default:"" help:"taints passed to RKE2, key=value:Effect"`
	RKE2Version      string   `key:"rke2-version" default:"" help:"RKE2 version to install, e.g. v1.36.4+rke2r1 (empty: the channel's); a change rolls the cluster to it"`
	RKE2Channel      string   `key:"rke2-channel" default:"stable" help:"RKE2 release channel for the first install: stable, latest, testing or vX.Y (upgrades follow rke2-version)"`
	InstallMethod    string   `key:"install-method" default:"script" help:"script (run the RKE2 install script) or none (RKE2 already installed)"`
	InstallScriptURL string   `key:"install-script-url" default:"https://get.rke2.io" help:"https URL of the RKE2 install script (http or a local path only with install-script-sha256)"`
	InstallScriptSHA string   `key:"install-script-sha256" default:"" help:"SHA-256 (hex) the install script's bytes must match; required for an http URL or a local path"`
	ArtifactPath     string   `key:"artifact-path" default:"" help:"airgap: folder with the RKE2 tarball, checksums, images and the kube-vip image archive"`
	KubeVIPVersion   string   `key:"kube-vip-version" default:"v1.2.3" help:"kube-vip version (pinned; no look-up at run time)"`
	KubeVIPImage     string   `key:"kube-vip-image" default:"ghcr.io/kube-vip/kube-vip" help:"kube-vip image repository"`
	KubeVIPLease     int      `key:"kube-vip-lease-duration" default:"15" help:"kube-vip leader lease duration, seconds"`
	KubeVIPRenew     int      `key:"kube-vip-renew-deadline" default:"10" help:"kube-vip leader renew deadline, seconds"`
	KubeVIPRetry     int      `key:"kube-vip-retry-period" default:"2" help:"kube-vip leader retry period, seconds"`
	RKE2Config       Extra    `key:"rke2-config" default:"" help:"extra keys written verbatim into RKE2's config.yaml (cni, cluster-cidr, ...)"`
	RKE2ConfigDir    string   `key:"rke2-config-dir" default:"/etc/rancher/rke2" help:"where RKE2's config.yaml is written"`
	RKE2DataDir      string   `key:"rke2-data-dir" default:"/var/lib/rancher/rke2" help:"RKE2's data-dir (written into its config when not the default)"`
	ServiceManager   string   `key:"service-manager" default:"systemd" help:"systemd (through D-Bus) or exec (supervise rke2-bin as a child)"`
	RKE2Bin          string   `key:"rke2-bin" default:"" help:"the rke2 executable for service-manager exec (default: found on disk)"`
	DataDir          string   `key:"data-dir" default:"/var/lib/rke2-hanode" help:"raft store and this daemon's own state"`
	UpgradeMaxUnav   string   `key:"upgrade-agents-max-unavailable" default:"10%" help:"agents upgraded at once in a rolling RKE2 upgrade: a count (1 or more) or a percentage of the agents, at least 1 and at most 16"`
	UpgradeDrain     bool     `key:"upgrade-drain" default:"false" help:"true: cordon and drain a host through the Kubernetes API before its upgrade restart, uncordon after (a Node cordoned by somebody else before stays cordoned); a server drains itself, and the raft leader's setting decides for agents, which the leader drains (an agent holds no admin kubeconfig)"`
	LogLevel         string   `key:"log-level" default:"info" help:"debug, info, warn or error"`
	LogFormat        string   `key:"log-format" default:"console" help:"console or json"`

	// Where each key's value came from, for error messages and `preflight`.
	sources map[string]Source
	// The secret itself, read from token or token-file by Load.
	secret string
	// The agent secret, read from agent-token or agent-token-file (servers).
	agentSecret string
	// Warnings are what Load found allowed but worth saying.
	warnings []string
}

// Extra holds the rke2-config passthrough map.
type Extra map[string]any

// Secret returns the token, whichever key supplied it: on a server the
// server secret, on an agent the secret agents join with (the agent token
// when the cluster has one). Never log it.
func (c *Config) Secret() string { return c.secret }

// AgentSecret returns a server's agent secret (agent-token or
// agent-token-file), or "" in the single-token set-up. Never log it.
func (c *Config) AgentSecret() string { return c.agentSecret }

// GossipSecret is the secret the gossip key is derived from: the one every
// host of the cluster holds. Servers use their agent secret when they have
// one, since agents hold only that; otherwise it is the token.
func (c *Config) GossipSecret() string {
	if c.IsServer() && c.agentSecret != "" {
		return c.agentSecret
	}
	return c.secret
}

// Warnings are what Load accepted but an operator should hear about (the
// single-token set-up, a token on the command line, RKE2 settings with
// prerequisites). The daemon logs them at start and preflight prints them.
func (c *Config) Warnings() []string { return c.warnings }

// SourceOf says where key's value came from.
func (c *Config) SourceOf(key string) Source {
	if s, ok := c.sources[key]; ok {
		return s
	}
	return Source{Kind: SourceDefault}
}

// ServerRemovalTimeout is server-removal-timeout as a duration; 0 means a
// dead server is never removed by itself. Load has validated it.
func (c *Config) ServerRemovalTimeout() time.Duration {
	d, err := time.ParseDuration(strings.TrimSpace(c.RemovalTimeout))
	if err != nil || d < 0 {
		return 0
	}
	return d
}

// IsServer reports whether the role is server.
func (c *Config) IsServer() bool { return c.Role == "server" }

// RaftEnabled reports whether this host takes part in raft.
func (c *Config) RaftEnabled() bool { return c.IsServer() }

// SourceKind names the kinds of configuration source.
type SourceKind string

// The kinds of source, lowest precedence first.
const (
	SourceDefault SourceKind = "default"
	SourceFile    SourceKind = "file"
	SourceEnv     SourceKind = "env"
	SourceFlag    SourceKind = "flag"
)

// Source is where one value came from.
type Source struct {
	Kind SourceKind
	// Name is the file path, the environment variable or the flag.
	Name string
	// Line is the line in the file, when known.
	Line int
}

func (s Source) String() string {
	switch s.Kind {
	case SourceFile:
		if s.Line > 0 {
			return s.Name + ":" + itoa(s.Line)
		}
		return s.Name
	case SourceEnv:
		return "env " + s.Name
	case SourceFlag:
		return "flag --" + s.Name
	default:
		return "not set"
	}
}

// EnvName is the environment variable for key.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

func defaultNodeName() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	// Kubernetes node names are lower case; RKE2 lower-cases the host name too.
	return strings.ToLower(h)
}

// UpgradeBudget is upgrade-agents-max-unavailable, parsed; the default
// when the value is not valid (Load refuses such a value).
func (c *Config) UpgradeBudget() upgrade.Budget {
	b, err := upgrade.ParseBudget(c.UpgradeMaxUnav)
	if err != nil {
		return upgrade.DefaultBudget
	}
	return b
}
