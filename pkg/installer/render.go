package installer

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
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
// on. `agent-token` is owned: servers get it from rke2-hanode's agent-token
// key, and agents join with it as the `node` password.
var OwnedKeys = []string{
	"server", "token", "token-file", "agent-token", "agent-token-file", "tls-san",
	"node-name", "node-ip", "data-dir", "node-taint",
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
	// Token is the secret this host joins with, in short form: the server
	// secret on servers, on agents the agent secret (the server secret in the
	// single-token set-up). A token already in a secure form
	// K10<hash>::<user>:<password> is used as it is, its hash filled in when
	// empty.
	Token string
	// AgentToken is the servers' agent secret, written as RKE2's
	// agent-token on servers ("" in the single-token set-up).
	AgentToken string
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
	if opts.AgentToken != "" {
		add("agent-token", opts.AgentToken)
	}
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
	if o.AgentToken != "" && o.Case == Agent {
		return fmt.Errorf("installer: render config: agent-token is a server setting; an agent joins with its token")
	}
	if strings.ContainsAny(o.AgentToken, "\r\n") {
		return fmt.Errorf("installer: render config: agent-token contains a line break")
	}
	if _, _, _, err := splitSecureToken(o.AgentToken); err != nil {
		return fmt.Errorf("installer: render config: agent-token: %w", err)
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
// server; for joiners the secure form, which pins the cluster CA, with user
// `server` for servers and `node` for agents. k3s gives the `node` user the
// agent-token as password when the servers have one and the server token
// when they do not, so an agent's `node:<token>` is right in both set-ups.
func configToken(o RenderOptions) (string, error) {
	pinned, creds, secure, err := splitSecureToken(o.Token)
	if err != nil {
		return "", fmt.Errorf("installer: render %s config: token: %w", o.Case, err)
	}
	if o.Case == Bootstrap {
		// The first server's CA does not exist yet; it only takes the secret.
		if !secure {
			return o.Token, nil
		}
		_, password, ok := strings.Cut(creds, ":")
		if !ok {
			return "", fmt.Errorf("installer: render bootstrap config: a bootstrap token (K10<hash>::<id>.<secret>) cannot initialise a cluster; give the bare server secret")
		}
		return password, nil
	}
	if o.CAHash == "" && !(secure && pinned != "") {
		return "", fmt.Errorf("installer: render %s config: the cluster CA hash is required to pin the cluster CA (secure token)", o.Case)
	}
	if o.CAHash != "" && !validCAHash(strings.ToLower(o.CAHash)) {
		return "", fmt.Errorf("installer: render %s config: CA hash %q is not 64 hex digits", o.Case, o.CAHash)
	}
	hash := strings.ToLower(o.CAHash)
	if secure && pinned != "" {
		if hash != "" && pinned != hash {
			return "", fmt.Errorf("installer: render %s config: token pins CA hash %s but the cluster CA hash is %s", o.Case, pinned, hash)
		}
		return o.Token, nil
	}
	if secure {
		return "K10" + hash + "::" + creds, nil
	}
	user := "server"
	if o.Case == Agent {
		user = "node"
	}
	return SecureToken(hash, user, o.Token), nil
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

// SecureToken returns RKE2's secure token K10<caHash>::<user>:<token>,
// which makes a joiner check the cluster CA before it sends credentials. A
// token already in a secure form is returned unchanged, its CA hash filled
// in when it has none.
func SecureToken(caHash, user, token string) string {
	if pinned, creds, secure, err := splitSecureToken(token); err == nil && secure {
		if pinned == "" {
			return "K10" + strings.ToLower(caHash) + "::" + creds
		}
		return token
	}
	return "K10" + strings.ToLower(caHash) + "::" + user + ":" + token
}

// reBootstrapCreds is k3s's bootstrap-token form <id>.<secret>.
var reBootstrapCreds = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)

// splitSecureToken reads a token as k3s does. One without the K10 prefix is
// a short token (secure false). One with it must be K10<hash>::<creds>, the
// hash empty or 64 lower-case hex digits and creds <user>:<password> or a
// bootstrap token; anything else is refused in k3s's words.
func splitSecureToken(token string) (caHash, creds string, secure bool, err error) {
	rest, ok := strings.CutPrefix(token, "K10")
	if !ok {
		return "", "", false, nil
	}
	hash, creds, ok := strings.Cut(rest, "::")
	if !ok {
		return "", "", false, errors.New("invalid token format (a K10 token is K10<CA hash>::<user>:<password>); give the bare secret")
	}
	if hash != "" && !validCAHash(hash) {
		return "", "", false, errors.New("invalid token CA hash length (64 lower-case hex digits); give the bare secret")
	}
	if reBootstrapCreds.MatchString(creds) {
		return hash, creds, true, nil
	}
	if user, password, ok := strings.Cut(creds, ":"); !ok || user == "" || password == "" {
		return "", "", false, errors.New("invalid token format (K10<CA hash>::<user>:<password>, both set); give the bare secret")
	}
	return hash, creds, true, nil
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
