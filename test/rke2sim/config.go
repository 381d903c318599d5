package rke2sim

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Default locations, as RKE2 has them.
const (
	DefaultConfigPath = "/etc/rancher/rke2/config.yaml"
	DefaultDataDir    = "/var/lib/rancher/rke2"
)

// criticalKeys must hold the same value on every server or a join fails with
// "critical configuration value mismatch", as in k3s.
var criticalKeys = []string{
	"agent-token", "cluster-cidr", "cluster-dns", "cluster-domain", "service-cidr",
	"disable-cloud-controller", "disable-kube-proxy", "egress-selector-mode",
}

// NodeConfig is the part of RKE2's config that the sim honours. Every other
// key is accepted and ignored, as real RKE2 accepts many more keys.
type NodeConfig struct {
	DataDir   string
	Server    string
	Token     string
	TLSSAN    []string
	NodeTaint []string
	NodeIP    string
	NodeName  string
	// AgentToken is agent-token: then agents authenticate as node with it.
	AgentToken string
	// Kubeconfig is write-kubeconfig; default: rke2.yaml beside the config
	// file (/etc/rancher/rke2/rke2.yaml for the default config, as RKE2).
	Kubeconfig     string
	KubeconfigMode os.FileMode // write-kubeconfig-mode, default 0600
	// NodePasswordFile is the node's own password: /etc/rancher/node/password
	// for the default config (RKE2's path), else node/password beside the
	// config file; RKE2SIM_NODE_PASSWORD_FILE overrides it.
	NodePasswordFile string
	// Critical holds the values of criticalKeys ("" when unset), compared on join.
	Critical map[string]string
	// Files lists the files read, in order.
	Files []string
}

// LoadConfig reads path and then path+".d/*.yaml" and "*.yml" in lexical order. A key
// ending in "+" appends to a list instead of replacing it. A missing main file
// is not an error when path is the default one (RKE2 runs without it).
func LoadConfig(path string, explicit bool) (NodeConfig, error) {
	merged := map[string]any{}
	var files []string
	if err := mergeFile(merged, path); err != nil {
		if !errors.Is(err, fs.ErrNotExist) || explicit {
			return NodeConfig{}, err
		}
	} else {
		files = append(files, path)
	}
	// RKE2 reads *.yaml and *.yml drop-ins, in one alphabetical order.
	var dropins []string
	for _, pattern := range []string{"*.yaml", "*.yml"} {
		found, err := filepath.Glob(filepath.Join(path+".d", pattern))
		if err != nil {
			return NodeConfig{}, fmt.Errorf("config: %s.d: %w", path, err)
		}
		dropins = append(dropins, found...)
	}
	sort.Strings(dropins)
	for _, f := range dropins {
		if err := mergeFile(merged, f); err != nil {
			return NodeConfig{}, err
		}
		files = append(files, f)
	}
	cfg, err := fromMap(merged)
	if err != nil {
		return NodeConfig{}, err
	}
	cfg.Files = files
	if cfg.Kubeconfig == "" {
		cfg.Kubeconfig = filepath.Join(filepath.Dir(path), "rke2.yaml")
	}
	cfg.NodePasswordFile = filepath.Join(filepath.Dir(path), "node", "password")
	if path == DefaultConfigPath {
		cfg.NodePasswordFile = "/etc/rancher/node/password"
	}
	return cfg, nil
}

func mergeFile(into map[string]any, path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	doc := map[string]any{}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	for k, v := range doc {
		if base, ok := strings.CutSuffix(k, "+"); ok {
			into[base] = append(asList(into[base]), asList(v)...)
			continue
		}
		into[k] = v
	}
	return nil
}

func asList(v any) []any {
	switch t := v.(type) {
	case nil:
		return nil
	case []any:
		return t
	default:
		return []any{t}
	}
}

func fromMap(m map[string]any) (NodeConfig, error) {
	cfg := NodeConfig{Critical: map[string]string{}}
	var err error
	str := func(key string) string {
		v, ok := m[key]
		if !ok || v == nil || err != nil {
			return ""
		}
		switch t := v.(type) {
		case string:
			return t
		case bool, int, float64:
			return fmt.Sprint(t)
		}
		err = fmt.Errorf("config: %s: want a string, got %T", key, v)
		return ""
	}
	list := func(key string) []string {
		var out []string
		for _, item := range asList(m[key]) {
			s, ok := item.(string)
			if !ok {
				err = fmt.Errorf("config: %s: want strings, got %T", key, item)
				return nil
			}
			// RKE2 also accepts comma-separated values in one string.
			for part := range strings.SplitSeq(s, ",") {
				if part = strings.TrimSpace(part); part != "" {
					out = append(out, part)
				}
			}
		}
		return out
	}
	cfg.DataDir = str("data-dir")
	cfg.Server = str("server")
	cfg.Token = str("token")
	tokenFile := str("token-file")
	cfg.TLSSAN = list("tls-san")
	cfg.NodeTaint = list("node-taint")
	if ips := list("node-ip"); len(ips) > 0 {
		cfg.NodeIP = ips[0]
	}
	cfg.NodeName = str("node-name")
	cfg.AgentToken = str("agent-token")
	cfg.Kubeconfig = str("write-kubeconfig")
	cfg.KubeconfigMode = 0o600
	if mode := str("write-kubeconfig-mode"); mode != "" {
		m, perr := strconv.ParseUint(mode, 8, 32)
		if perr != nil || m > 0o777 {
			return NodeConfig{}, fmt.Errorf("config: write-kubeconfig-mode %q: want an octal file mode such as 0644", mode)
		}
		cfg.KubeconfigMode = os.FileMode(m)
	}
	for _, k := range criticalKeys {
		cfg.Critical[k] = str(k)
	}
	if err != nil {
		return NodeConfig{}, err
	}
	for _, taint := range cfg.NodeTaint {
		if err := checkTaint(taint); err != nil {
			return NodeConfig{}, err
		}
	}
	if cfg.Token == "" && tokenFile != "" {
		raw, rerr := os.ReadFile(tokenFile)
		if rerr != nil {
			return NodeConfig{}, fmt.Errorf("config: token-file: %w", rerr)
		}
		cfg.Token = strings.TrimSpace(string(raw))
	}
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.NodeIP == "" {
		cfg.NodeIP = defaultNodeIP()
	}
	if cfg.NodeName == "" {
		h, herr := os.Hostname()
		if herr != nil {
			return NodeConfig{}, fmt.Errorf("config: node-name unset and hostname unknown: %w", herr)
		}
		cfg.NodeName = strings.ToLower(h)
	}
	return cfg, nil
}

// defaultNodeIP picks the address of the default route, as RKE2 does, and
// falls back to the first global IPv4 address, then to 127.0.0.1.
func defaultNodeIP() string {
	if c, err := net.Dial("udp4", "192.0.2.1:9"); err == nil {
		defer c.Close()
		if ua, ok := c.LocalAddr().(*net.UDPAddr); ok && !ua.IP.IsUnspecified() {
			return ua.IP.String()
		}
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
			return ipn.IP.String()
		}
	}
	return "127.0.0.1"
}

// checkTaint accepts key[=value]:Effect, as the kubelet's --register-with-taints.
func checkTaint(taint string) error {
	kv, effect, ok := strings.Cut(taint, ":")
	key, _, _ := strings.Cut(kv, "=")
	switch {
	case !ok || key == "":
		return fmt.Errorf("config: node-taint %q: invalid taint spec, want key[=value]:Effect", taint)
	case effect != "NoSchedule" && effect != "PreferNoSchedule" && effect != "NoExecute":
		return fmt.Errorf("config: node-taint %q: invalid taint effect %q, want NoSchedule, PreferNoSchedule or NoExecute", taint, effect)
	}
	return nil
}
