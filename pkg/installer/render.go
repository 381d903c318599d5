package installer

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/rke2-hanode/rke2-hanode/pkg/cahash"
	"github.com/rke2-hanode/rke2-hanode/pkg/fsutil"
)

// Case is which of the three RKE2 configs a host gets.
type Case int

const (
	// Bootstrap is the one server that initialises the cluster: no `server:`,
	// the short token (its CA does not exist yet).
	Bootstrap Case = iota + 1
	// JoinServer is every other server: `server:` through the VIP and the
	// secure token that pins the cluster CA.
	JoinServer
	// Agent joins like JoinServer but runs `rke2 agent`.
	Agent
)

func (c Case) String() string {
	switch c {
	case Bootstrap:
		return "bootstrap"
	case JoinServer:
		return "join-server"
	case Agent:
		return "agent"
	}
	return fmt.Sprintf("case(%d)", int(c))
}

// Role is the RKE2 service a host runs.
func (c Case) Role() Role {
	if c == Agent {
		return RoleAgent
	}
	return RoleServer
}

// Paths and ports of RKE2 itself.
const (
	DefaultRKE2DataDir   = "/var/lib/rancher/rke2"
	DefaultRKE2ConfigDir = "/etc/rancher/rke2"
	ConfigFileName       = "config.yaml"
	SupervisorPort       = 9345
)

// OwnedKeys are the RKE2 config keys rke2-hanode writes itself; rke2-config
// passthrough may not set them (nor their `key+` append forms), because a
// second value would silently win or merge with the one the cluster depends
// on. `agent-token` is deliberately not owned: rke2-hanode never uses it, and
// since every server gets the same passthrough it matches on all of them, as
// RKE2 requires.
var OwnedKeys = []string{
	"server", "token", "token-file", "tls-san", "node-name", "node-ip",
	"data-dir", "node-taint",
}

// isOwnedKey reports whether an RKE2 config key (or its key+ form) is one
// rke2-hanode writes.
func isOwnedKey(key string) bool {
	return slices.Contains(OwnedKeys, strings.TrimSuffix(key, "+"))
}

// RenderOptions is everything RKE2's config.yaml is made from.
type RenderOptions struct {
	Case Case
	// NodeName and NodeIP become `node-name` and `node-ip` (the advertise
	// address, so RKE2 and gossip agree on the host's address).
	NodeName string
	NodeIP   string
	// VIP is the fixed registration address: first `tls-san` entry and, for
	// joiners, `server: https://VIP:9345`.
	VIP string
	// Token is the shared cluster secret (short form). A token already in
	// the secure form K10<hash>::server:<secret> is used as it is.
	Token string
	// CAHash is the SHA-256 hex of the cluster CA; required for joiners,
	// whose token is made secure with it.
	CAHash string
	// TLSSANs are extra SANs after the VIP (servers only).
	TLSSANs []string
	// NodeTaints become `node-taint`.
	NodeTaints []string
	// RKE2DataDir is written as `data-dir` only when it is not RKE2's default.
	RKE2DataDir string
	// Extra are rke2-config passthrough keys written after the owned ones,
	// in key order. The same keys go to servers and agents: RKE2 skips, with
	// a warning, keys its subcommand does not know.
	Extra map[string]any
}

// RenderConfig returns RKE2's config.yaml for opts. The output is
// deterministic: owned keys in a fixed order, then passthrough keys sorted.
// The result holds the token: never log it.
func RenderConfig(opts RenderOptions) ([]byte, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	token, err := configToken(opts)
	if err != nil {
		return nil, err
	}
	doc := &yaml.Node{Kind: yaml.MappingNode,
		HeadComment: "Written by rke2-hanode: edits are overwritten. Add settings with rke2-config."}
	add := func(key string, value any) (err error) {
		// The encoder panics on values YAML cannot hold (funcs, channels).
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("installer: render %s: %v", key, r)
			}
		}()
		var v yaml.Node
		if err := v.Encode(value); err != nil {
			return fmt.Errorf("installer: render %s: %w", key, err)
		}
		doc.Content = append(doc.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, &v)
		return nil
	}
	if opts.Case != Bootstrap {
		add("server", ServerURL(opts.VIP))
	}
	add("token", token)
	if opts.NodeName != "" {
		add("node-name", opts.NodeName)
	}
	if opts.NodeIP != "" {
		add("node-ip", opts.NodeIP)
	}
	if dir := opts.RKE2DataDir; dir != "" && filepath.Clean(dir) != DefaultRKE2DataDir {
		add("data-dir", filepath.Clean(dir))
	}
	if opts.Case != Agent {
		add("tls-san", tlsSANs(opts.VIP, opts.TLSSANs))
	}
	if len(opts.NodeTaints) > 0 {
		add("node-taint", opts.NodeTaints)
	}
	keys := make([]string, 0, len(opts.Extra))
	for k := range opts.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := add(k, opts.Extra[k]); err != nil {
			return nil, err
		}
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("installer: render config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("installer: render config: %w", err)
	}
	return out.Bytes(), nil
}

func (o RenderOptions) validate() error {
	switch o.Case {
	case Bootstrap, JoinServer, Agent:
	default:
		return fmt.Errorf("installer: render config: unknown case %d (want Bootstrap, JoinServer or Agent)", int(o.Case))
	}
	if net.ParseIP(o.VIP) == nil {
		return fmt.Errorf("installer: render config: vip %q is not an IP address", o.VIP)
	}
	if o.NodeIP != "" && net.ParseIP(o.NodeIP) == nil {
		return fmt.Errorf("installer: render config: node-ip %q is not an IP address", o.NodeIP)
	}
	if o.Token == "" {
		return fmt.Errorf("installer: render config: token is empty")
	}
	if strings.ContainsAny(o.Token, "\r\n") {
		return fmt.Errorf("installer: render config: token contains a line break")
	}
	if o.RKE2DataDir != "" && !filepath.IsAbs(o.RKE2DataDir) {
		return fmt.Errorf("installer: render config: rke2-data-dir %q is not an absolute path", o.RKE2DataDir)
	}
	for k := range o.Extra {
		if k == "" {
			return fmt.Errorf("installer: render config: rke2-config has an empty key")
		}
		if isOwnedKey(k) {
			return fmt.Errorf("installer: render config: rke2-config key %q is set by rke2-hanode itself (owned keys: %s); use the rke2-hanode setting instead",
				k, strings.Join(OwnedKeys, ", "))
		}
	}
	return nil
}

// configToken is the token RKE2 gets: the bare secret for the bootstrap
// server, the secure form for joiners.
func configToken(o RenderOptions) (string, error) {
	pinned, secret, secure := splitSecureToken(o.Token)
	if o.Case == Bootstrap {
		// The first server's CA does not exist yet; it only takes the secret.
		return secret, nil
	}
	if secure {
		if o.CAHash != "" && !strings.EqualFold(pinned, o.CAHash) {
			return "", fmt.Errorf("installer: render %s config: token pins CA hash %s but the cluster CA hash is %s", o.Case, pinned, o.CAHash)
		}
		return o.Token, nil
	}
	if o.CAHash == "" {
		return "", fmt.Errorf("installer: render %s config: the cluster CA hash is required to pin the cluster CA (secure token)", o.Case)
	}
	if !validCAHash(o.CAHash) {
		return "", fmt.Errorf("installer: render %s config: CA hash %q is not 64 hex digits", o.Case, o.CAHash)
	}
	return SecureToken(o.CAHash, o.Token), nil
}

func validCAHash(h string) bool { return cahash.Valid(h) }

// tlsSANs is the VIP first, then the extra SANs without duplicates.
func tlsSANs(vip string, extra []string) []string {
	out := []string{vip}
	for _, san := range extra {
		if san != "" && !slices.Contains(out, san) {
			out = append(out, san)
		}
	}
	return out
}

// SecureToken returns RKE2's secure token K10<caHash>::server:<token>, which
// makes a joiner check the cluster CA before it sends credentials. A token
// already in the secure form is returned unchanged.
func SecureToken(caHash, token string) string {
	if _, _, secure := splitSecureToken(token); secure {
		return token
	}
	return "K10" + strings.ToLower(caHash) + "::server:" + token
}

// splitSecureToken splits K10<hash>::server:<secret>. For any other token it
// returns the token itself as the secret.
func splitSecureToken(token string) (caHash, secret string, secure bool) {
	rest, ok := strings.CutPrefix(token, "K10")
	if !ok {
		return "", token, false
	}
	hash, creds, ok := strings.Cut(rest, "::")
	if !ok || !validCAHash(hash) {
		return "", token, false
	}
	_, secret, ok = strings.Cut(creds, ":")
	if !ok || secret == "" {
		return "", token, false
	}
	return hash, secret, true
}

// ConfigPath is RKE2's config file inside dir.
func ConfigPath(dir string) string {
	return filepath.Join(dir, ConfigFileName)
}

// ServerURL is the registration address joiners use.
func ServerURL(vip string) string {
	u := url.URL{Scheme: "https", Host: net.JoinHostPort(vip, fmt.Sprint(SupervisorPort))}
	return u.String()
}

// WriteConfig writes data as dir/config.yaml atomically (a temporary file in
// dir, synced and renamed), mode 0600 because it holds the token. A missing
// dir is created 0700; an existing one keeps its mode, since RKE2 keeps its
// kubeconfig there too.
func WriteConfig(dir string, data []byte) error {
	if err := fsutil.WriteFileAtomic(ConfigPath(dir), data, 0o600); err != nil {
		return fmt.Errorf("installer: rke2 config: %w", err)
	}
	return nil
}
