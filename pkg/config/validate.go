package config

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/rke2version"
	"github.com/rke2-hanode/rke2-hanode/pkg/upgrade"
)

// Problem is one thing wrong with the configuration.
type Problem struct {
	Key    string
	Value  string
	Source Source
	Msg    string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Key != "" {
		b.WriteString(p.Key)
		if p.Value != "" {
			fmt.Fprintf(&b, " = %q", p.Value)
		}
		fmt.Fprintf(&b, " (%s): ", p.Source)
	} else {
		fmt.Fprintf(&b, "%s: ", p.Source)
	}
	b.WriteString(p.Msg)
	return b.String()
}

type problems []Problem

func (ps *problems) add(key, value string, src Source, msg string) {
	*ps = append(*ps, Problem{Key: key, Value: value, Source: src, Msg: msg})
}

// Error is a configuration that failed to load or validate.
type Error struct{ Problems []Problem }

func (e *Error) Error() string {
	lines := make([]string, 0, len(e.Problems)+1)
	lines = append(lines, fmt.Sprintf("invalid configuration (%d problem%s):", len(e.Problems), plural(len(e.Problems))))
	for _, p := range e.Problems {
		lines = append(lines, "  - "+p.String())
	}
	return strings.Join(lines, "\n")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

var (
	dnsLabel     = `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
	reNodeName   = regexp.MustCompile(`^` + dnsLabel + `(\.` + dnsLabel + `)*$`)
	reDNSName    = regexp.MustCompile(`^(\*\.)?[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$`)
	reClusterNam = regexp.MustCompile(`^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$`)
	reIfName     = regexp.MustCompile(`^[^\s/:]{1,15}$`)
	reTaintKey   = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	reTaintValue = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`)
)

// Ports RKE2 itself listens on; ours must not collide with them.
var rke2Ports = map[int]string{6443: "the Kubernetes API", 9345: "the RKE2 supervisor", 2379: "etcd", 2380: "etcd peers", 10250: "the kubelet"}

// TaintEffects are the effects Kubernetes accepts.
var TaintEffects = []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}

func (c *Config) validate(ps *problems) {
	v := func(key, value, msg string) { ps.add(key, value, c.SourceOf(key), msg) }

	if !reNodeName.MatchString(c.NodeName) || len(c.NodeName) > 63 {
		v("node-name", c.NodeName, "must be a lower-case DNS name of at most 63 characters (letters, digits, '-' and '.')")
	}
	switch c.Role {
	case "server", "agent":
	case "":
		v("role", "", "required: server or agent")
	default:
		v("role", c.Role, "accepted values are server, agent")
	}
	if err := tokenStrength(c.secret); c.secret != "" && err != nil {
		v(map[bool]string{true: "token-file", false: "token"}[c.TokenFile != ""], "", err.Error())
	}
	if err := tokenStrength(c.agentSecret); c.agentSecret != "" && err != nil {
		v(map[bool]string{true: "agent-token-file", false: "agent-token"}[c.AgentTokenFile != ""], "", err.Error())
	}
	if !reClusterNam.MatchString(c.ClusterName) || len(c.ClusterName) > 63 {
		v("cluster-name", c.ClusterName, "must be 1-63 lower-case letters, digits, '-', '_' or '.'")
	} else {
		c.validateClaimKeys(v)
	}
	es := c.ExpectServers
	switch {
	case c.Role == "server" && es == 0:
		v("expect-servers", "", "required for servers: the number of servers that form the cluster at first boot (1, 3, 5 or 7)")
	case es != 0 && (es < 1 || es > 7 || es%2 == 0):
		v("expect-servers", strconv.Itoa(es), "must be odd, one of 1, 3, 5, 7 (etcd needs an odd number of servers for quorum)")
	}
	if ms := c.MaxServers; ms < 1 || ms > 7 || ms%2 == 0 {
		v("max-servers", strconv.Itoa(ms), "must be odd, one of 1, 3, 5, 7 (the etcd voting set only settles at an odd count)")
	} else if es > 0 && ms < es {
		v("max-servers", strconv.Itoa(ms), fmt.Sprintf("must be at least expect-servers (%d): the cluster forms with that many voters", es))
	}
	if d, err := time.ParseDuration(strings.TrimSpace(c.RemovalTimeout)); err != nil {
		v("server-removal-timeout", c.RemovalTimeout, "must be a duration such as 30m or 2h, or 0 to never remove a dead server by itself")
	} else if d != 0 && d < 10*time.Second {
		v("server-removal-timeout", c.RemovalTimeout, "must be 0 (never) or at least 10s (keep it above the time a server takes to reboot, or rebooting servers are removed)")
	}
	if len(c.Join) == 0 && !(c.Role == "server" && es == 1) {
		v("join", "", "required unless expect-servers is 1: list at least one other host (IP, host name or host:port)")
	}
	for _, j := range c.Join {
		if err := checkHostPort(j); err != nil {
			v("join", j, err.Error())
		}
	}
	if ip := net.ParseIP(c.BindAddress); ip == nil {
		v("bind-address", c.BindAddress, "must be an IP address (0.0.0.0 listens on all)")
	}
	if c.AdvertiseAddress != "" {
		if ip := net.ParseIP(c.AdvertiseAddress); ip == nil || ip.To4() == nil || ip.IsUnspecified() {
			v("advertise-address", c.AdvertiseAddress, "must be a specific IPv4 address of this host")
		}
	}
	switch ip := net.ParseIP(c.VIP); {
	case c.VIP == "":
		v("vip", "", "required: the virtual IPv4 address for the control plane")
	case ip == nil:
		v("vip", c.VIP, "must be an IPv4 address")
	case ip.To4() == nil:
		v("vip", c.VIP, "IPv6 VIPs are not supported yet: use an IPv4 address")
	case ip.IsUnspecified() || ip.IsMulticast():
		v("vip", c.VIP, "must be a unicast IPv4 address")
	}
	switch {
	case c.Interface == "":
		v("interface", "", "required: the network interface that carries the VIP (e.g. eth0)")
	case !reIfName.MatchString(c.Interface):
		v("interface", c.Interface, "must be an interface name (at most 15 characters, no spaces, '/' or ':')")
	}
	c.validatePorts(v)
	for _, san := range c.TLSSAN {
		if net.ParseIP(san) == nil && (!reDNSName.MatchString(san) || len(san) > 253) {
			v("tls-san", san, "must be a DNS name or an IP address")
		}
	}
	for _, t := range c.NodeTaint {
		if err := CheckTaint(t); err != nil {
			v("node-taint", t, err.Error())
		}
	}
	if c.RKE2Version != "" {
		if _, err := rke2version.Parse(c.RKE2Version); err != nil || !strings.HasPrefix(c.RKE2Version, "v") {
			v("rke2-version", c.RKE2Version, "must look like v1.36.4+rke2r1")
		}
	}
	if _, err := rke2version.ParseChannel(c.RKE2Channel); err != nil {
		v("rke2-channel", c.RKE2Channel, "accepted values are stable, latest, testing or a minor version such as v1.36")
	}
	if _, err := upgrade.ParseBudget(c.UpgradeMaxUnav); err != nil {
		v("upgrade-agents-max-unavailable", c.UpgradeMaxUnav, "must be a count of agents (1 or more) or a percentage of them (1% to 100%), e.g. 2 or 10%")
	}
	switch c.InstallMethod {
	case "script", "none":
		// install-script-url and install-script-sha256: validateInstallScript.
	default:
		v("install-method", c.InstallMethod, "accepted values are script, none")
	}
	if c.ArtifactPath != "" && !filepath.IsAbs(c.ArtifactPath) {
		v("artifact-path", c.ArtifactPath, "must be an absolute path")
	}
	if !strings.HasPrefix(c.KubeVIPVersion, "v") || strings.ContainsAny(c.KubeVIPVersion, " :/@") {
		v("kube-vip-version", c.KubeVIPVersion, "must be a release tag such as v1.2.3")
	}
	if c.KubeVIPImage == "" || strings.ContainsAny(c.KubeVIPImage, " @") || strings.HasSuffix(c.KubeVIPImage, ":") {
		v("kube-vip-image", c.KubeVIPImage, "must be an image repository without a tag, such as ghcr.io/kube-vip/kube-vip")
	}
	for _, k := range []struct {
		key string
		val int
	}{{"kube-vip-lease-duration", c.KubeVIPLease}, {"kube-vip-renew-deadline", c.KubeVIPRenew}, {"kube-vip-retry-period", c.KubeVIPRetry}} {
		if k.val < 1 || k.val > 3600 {
			v(k.key, strconv.Itoa(k.val), "must be a whole number of seconds from 1 to 3600")
		}
	}
	// kube-vip's leader election (client-go) refuses to start unless
	// lease > renew > 1.2 × retry; catch it here rather than in a crash loop.
	if c.KubeVIPLease <= c.KubeVIPRenew || c.KubeVIPRenew*10 <= c.KubeVIPRetry*12 {
		v("kube-vip-renew-deadline", strconv.Itoa(c.KubeVIPRenew),
			fmt.Sprintf("must lie between 1.2 × kube-vip-retry-period (%d) and kube-vip-lease-duration (%d): lease > renew > 1.2 × retry", c.KubeVIPRetry, c.KubeVIPLease))
	}
	for key, val := range map[string]string{"rke2-config-dir": c.RKE2ConfigDir, "rke2-data-dir": c.RKE2DataDir, "data-dir": c.DataDir} {
		if !filepath.IsAbs(val) {
			v(key, val, "must be an absolute path")
		}
	}
	switch c.ServiceManager {
	case "systemd", "exec":
	default:
		v("service-manager", c.ServiceManager, "accepted values are systemd, exec")
	}
	if c.RKE2Bin != "" && !filepath.IsAbs(c.RKE2Bin) {
		v("rke2-bin", c.RKE2Bin, "must be an absolute path")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		v("log-level", c.LogLevel, "accepted values are debug, info, warn, error")
	}
	switch c.LogFormat {
	case "console", "json":
	default:
		v("log-format", c.LogFormat, "accepted values are console, json")
	}
}

func (c *Config) validatePorts(v func(key, value, msg string)) {
	_, httpPortStr, err := net.SplitHostPort(c.HTTPAddress)
	httpPort := -1
	if err != nil {
		v("http-address", c.HTTPAddress, "must be host:port or :port")
	} else if httpPort, err = strconv.Atoi(httpPortStr); err != nil {
		v("http-address", c.HTTPAddress, "the port must be a number from 1 to 65535")
		httpPort = -1
	}
	ports := []struct {
		key  string
		port int
	}{{"gossip-port", c.GossipPort}, {"http-address", httpPort}}
	if c.Role != "agent" {
		ports = append(ports, struct {
			key  string
			port int
		}{"raft-port", c.RaftPort})
	}
	used := map[int]string{}
	for _, p := range ports {
		if p.port == -1 {
			continue
		}
		val := strconv.Itoa(p.port)
		if p.key == "http-address" {
			val = c.HTTPAddress
		}
		switch {
		case p.port < 1 || p.port > 65535:
			v(p.key, val, "the port must be from 1 to 65535")
		case rke2Ports[p.port] != "":
			v(p.key, val, fmt.Sprintf("port %d is %s's port: pick another", p.port, rke2Ports[p.port]))
		case used[p.port] != "":
			v(p.key, val, fmt.Sprintf("port %d is also %s's: the ports must be distinct", p.port, used[p.port]))
		default:
			used[p.port] = p.key
		}
	}
}

// CheckTaint validates a taint in RKE2's form key=value:Effect (or key:Effect).
func CheckTaint(t string) error {
	i := strings.LastIndexByte(t, ':')
	if i < 0 {
		return fmt.Errorf("must be key=value:Effect with Effect one of %s", strings.Join(TaintEffects, ", "))
	}
	kv, effect := t[:i], t[i+1:]
	ok := false
	for _, e := range TaintEffects {
		ok = ok || e == effect
	}
	if !ok {
		return fmt.Errorf("effect %q: accepted effects are %s", effect, strings.Join(TaintEffects, ", "))
	}
	key, value, _ := strings.Cut(kv, "=")
	if !reTaintKey.MatchString(key) || len(key) > 316 {
		return fmt.Errorf("key %q is not a valid taint key (letters, digits, '-', '_', '.', an optional DNS prefix with '/')", key)
	}
	if !reTaintValue.MatchString(value) || len(value) > 63 {
		return fmt.Errorf("value %q is not a valid taint value (at most 63 letters, digits, '-', '_', '.')", value)
	}
	return nil
}

func checkHostPort(s string) error {
	host := s
	if h, p, err := net.SplitHostPort(s); err == nil {
		host = h
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("the port must be from 1 to 65535")
		}
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if !reDNSName.MatchString(host) || len(host) > 253 {
		return fmt.Errorf("must be an IP address, a host name, or either with :port")
	}
	return nil
}
