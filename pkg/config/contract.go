package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

var reSHA256 = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// kubeVIPManifest is the name RKE2 knows kube-vip's manifest by in its
// auto-deploy folder (kube-vip.yaml, written by the vip package).
const kubeVIPManifest = "kube-vip"

// validateInstallScript checks install-script-url and install-script-sha256:
// the script runs as root, so it comes over https or is pinned by its hash.
func (c *Config) validateInstallScript(probs *problems) {
	v := func(key, value, msg string) { probs.add(key, value, c.SourceOf(key), msg) }
	if c.InstallScriptSHA != "" && !reSHA256.MatchString(c.InstallScriptSHA) {
		v("install-script-sha256", c.InstallScriptSHA, "must be a SHA-256 in hex (64 digits), as sha256sum prints it")
	}
	if c.InstallMethod != "script" {
		return
	}
	u := c.InstallScriptURL
	switch {
	case u == "":
		v("install-script-url", "", "required with install-method script: an https URL, or an http URL or a local path together with install-script-sha256")
	case strings.HasPrefix(u, "https://"):
		if p, err := url.Parse(u); err != nil || p.Host == "" {
			v("install-script-url", u, "is not a valid https URL")
		}
	case strings.HasPrefix(u, "http://") || filepath.IsAbs(u) || strings.HasPrefix(u, "file://"):
		if c.InstallScriptSHA == "" {
			v("install-script-url", u, "is not https: the script runs as root, so set install-script-sha256 to the SHA-256 of the script (sha256sum install.sh), or use an https URL")
		}
	default:
		v("install-script-url", u, "must be an https URL, or an http URL or an absolute path together with install-script-sha256")
	}
}

// passthroughRefused are rke2-config keys that break what rke2-hanode
// guarantees, with the reason and what to do instead.
var passthroughRefused = map[string]string{
	"server":                     "rke2-hanode points joiners at the VIP and starts the bootstrap server without it; remove it",
	"token":                      "use rke2-hanode's token or token-file key: it writes RKE2's token in the form each host needs",
	"token-file":                 "use rke2-hanode's token or token-file key: it writes RKE2's token in the form each host needs",
	"agent-token":                "use rke2-hanode's agent-token key (or agent-token-file): it is also RKE2's agent-token, and agents need it to join",
	"agent-token-file":           "use rke2-hanode's agent-token-file key: it is also RKE2's agent-token, and agents need it to join",
	"tls-san":                    "use rke2-hanode's tls-san key: the VIP must come first and is always added",
	"node-name":                  "use rke2-hanode's node-name key: gossip and RKE2 must agree on the name",
	"node-ip":                    "use rke2-hanode's advertise-address key: gossip and RKE2 must agree on the address",
	"data-dir":                   "use rke2-hanode's rke2-data-dir key: the datastore guard and the image copy look there",
	"node-taint":                 "use rke2-hanode's node-taint key",
	"cluster-init":               "rke2-hanode decides which one server initialises the cluster (raft elects it); cluster-init elsewhere makes a second cluster",
	"cluster-reset":              "a reset is a one-off recovery (rke2 server --cluster-reset on one stopped server, then a restart without it), never a setting: in the config it resets etcd membership at every start; follow the recovery steps in docs/operations.md",
	"cluster-reset-restore-path": "restoring a snapshot is a one-off recovery run by hand with --cluster-reset, never a setting; follow the recovery steps in docs/operations.md",
}

// validatePassthrough refuses rke2-config keys that break the HA contract.
func (c *Config) validatePassthrough(probs *problems) {
	src := c.SourceOf("rke2-config")
	keys := make([]string, 0, len(c.RKE2Config))
	for k := range c.RKE2Config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		base := strings.TrimSuffix(k, "+")
		if why, ok := passthroughRefused[base]; ok {
			probs.add("rke2-config", k, src, fmt.Sprintf("RKE2 key %s breaks what rke2-hanode guarantees: %s", k, why))
			continue
		}
		switch base {
		case "disable":
			for _, name := range listOf(c.RKE2Config[k]) {
				if n := strings.TrimSuffix(strings.TrimSuffix(name, ".yaml"), ".yml"); n == kubeVIPManifest {
					probs.add("rke2-config", k+": "+name, src, fmt.Sprintf("disables %s, the manifest that runs kube-vip: RKE2 deletes a disabled manifest's objects, so no host would hold the VIP and joiners lose the control-plane address; remove it", name))
				}
			}
		case "protect-kernel-defaults":
			if profile := c.profile(); profile != "" && fmt.Sprint(c.RKE2Config[k]) == "false" {
				probs.add("rke2-config", k, src, fmt.Sprintf("is false while profile is %s: RKE2 refuses to start a CIS profile without protect-kernel-defaults; remove it", profile))
			}
		}
	}
}

// Profile is RKE2's profile passthrough key (cis, cis-1.23, ...), or "".
func (c *Config) Profile() string { return c.profile() }

func (c *Config) profile() string {
	if v, ok := c.RKE2Config["profile"]; ok && v != nil {
		return fmt.Sprint(v)
	}
	return ""
}

// listOf reads a passthrough value RKE2 takes as a list: a YAML list or a
// comma-separated string.
func listOf(v any) []string {
	var out []string
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			out = append(out, listOf(e)...)
		}
	case string:
		for _, s := range strings.Split(t, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	case nil:
	default:
		out = append(out, fmt.Sprint(t))
	}
	return out
}

// collectWarnings gathers what is accepted but worth an operator's notice.
func (c *Config) collectWarnings() {
	c.warnings = nil
	w := func(format string, args ...any) { c.warnings = append(c.warnings, fmt.Sprintf(format, args...)) }
	if c.IsServer() && c.agentSecret == "" && c.secret != "" {
		w("single-token set-up: no agent-token is set, so every agent holds the server token, and a host holding it can join RKE2 as a server (read etcd and the cluster's CA keys); set agent-token (or agent-token-file) on the servers and give agents that secret as their token")
	}
	for _, key := range []string{"token", "agent-token"} {
		if c.SourceOf(key).Kind == SourceFlag {
			w("%s was given as the command-line flag --%s: every user of this host can read it in the process list; use %s-file or the environment variable %s instead", key, key, key, EnvName(key))
		}
	}
	if p := c.profile(); p != "" {
		w("rke2-config profile %s has prerequisites RKE2 checks at start and exits without: an etcd user and group on every server (useradd -r -c \"etcd user\" -s /sbin/nologin -M -U etcd), the kernel parameters of RKE2's rke2-cis-sysctl.conf copied to /etc/sysctl.d/60-rke2-cis.conf and applied (systemctl restart systemd-sysctl), and protect-kernel-defaults left true (RKE2 sets it)", p)
	}
	if c.Role == "agent" {
		for _, t := range c.NodeTaint {
			if i := strings.LastIndexByte(t, ':'); i >= 0 {
				switch effect := t[i+1:]; effect {
				case "NoSchedule", "NoExecute":
					w("node-taint %s on an agent: ordinary workloads will not be scheduled here (%s); if every agent carries it the cluster has no schedulable workers. CriticalAddonsOnly=true:NoExecute belongs on servers", t, effect)
				}
			}
		}
	}
}
