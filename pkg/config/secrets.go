package config

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/keys"
)

// k3s's bootstrap-token form, the credentials of K10<hash>::<id>.<secret>.
var reBootstrapToken = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)

// bareHint is what to do instead of a malformed or unsuited K10 token.
const bareHint = "give the bare secret instead: rke2-hanode builds the secure token (K10<CA hash>::<user>:<secret>) itself once the cluster CA exists"

// TokenShape is the form of a token as k3s parses it.
type TokenShape int

// The token forms k3s knows.
const (
	// TokenBare is a secret without the K10 prefix (k3s's short form).
	TokenBare TokenShape = iota + 1
	// TokenFull is K10<hash or empty>::<user>:<password>.
	TokenFull
	// TokenBootstrap is K10<hash or empty>::<id>.<secret>, which joins agents only.
	TokenBootstrap
)

// CheckTokenShape reads a token the way k3s does: one that begins with K10
// must be K10<64 lower-case hex or nothing>::<user>:<password> with a
// password, or K10<hash>::<bootstrap token>. The error uses k3s's words
// ("invalid token format", "invalid token CA hash length"), which is what
// RKE2 would exit with.
func CheckTokenShape(token string) (TokenShape, error) {
	rest, ok := strings.CutPrefix(token, "K10")
	if !ok {
		return TokenBare, nil
	}
	hash, creds, ok := strings.Cut(rest, "::")
	if !ok {
		return 0, fmt.Errorf("invalid token format: it begins with K10, so k3s reads it as a secure token K10<CA hash>::<user>:<password>, and it has no '::'")
	}
	if hash != "" && len(hash) != 64 {
		return 0, fmt.Errorf("invalid token CA hash length: the CA hash of a K10 token is 64 lower-case hex digits, this one has %d", len(hash))
	}
	for _, r := range hash {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return 0, fmt.Errorf("invalid token CA hash: k3s compares the CA hash as 64 lower-case hex digits, and this one holds %q", r)
		}
	}
	if reBootstrapToken.MatchString(creds) {
		return TokenBootstrap, nil
	}
	user, password, ok := strings.Cut(creds, ":")
	if !ok || user == "" || password == "" {
		return 0, fmt.Errorf("invalid token format: after '::' k3s wants <user>:<password> with both set, or a bootstrap token <6 of a-z0-9>.<16 of a-z0-9>")
	}
	return TokenFull, nil
}

// resolveAgentToken reads the agent secret on servers; agents hold theirs
// in token, as in RKE2.
func (c *Config) resolveAgentToken(opts LoadOptions, probs *problems) {
	if c.AgentToken == "" && c.AgentTokenFile == "" {
		return
	}
	if c.Role == "agent" {
		key := "agent-token"
		if c.AgentTokenFile != "" {
			key = "agent-token-file"
		}
		probs.add(key, c.AgentTokenFile, c.SourceOf(key),
			"is a server key: on an agent, token (or token-file) holds the agent token, as in RKE2; move the agent secret there")
		return
	}
	switch {
	case c.AgentToken != "" && c.AgentTokenFile != "":
		probs.add("agent-token-file", c.AgentTokenFile, c.SourceOf("agent-token-file"),
			fmt.Sprintf("agent-token and agent-token-file are both set (agent-token from %s): set at most one", c.SourceOf("agent-token")))
	case c.AgentToken != "":
		c.agentSecret = c.AgentToken
	default:
		c.agentSecret = c.readSecretFile(opts, "agent-token-file", c.AgentTokenFile, probs)
	}
}

// validateSecrets checks the shape of the token and the agent token.
func (c *Config) validateSecrets(probs *problems) {
	c.checkSecret("token", "token-file", c.secret, probs)
	c.checkSecret("agent-token", "agent-token-file", c.agentSecret, probs)
	if c.agentSecret != "" && c.agentSecret == c.secret {
		key := "agent-token"
		if c.AgentTokenFile != "" {
			key = "agent-token-file"
		}
		probs.add(key, c.AgentTokenFile, c.SourceOf(key),
			"is the same secret as the token: agents would hold the server secret; set a different agent secret, or leave agent-token unset")
	}
}

func (c *Config) checkSecret(key, fileKey, secret string, probs *problems) {
	if secret == "" {
		return
	}
	where, value, src := key, "", c.SourceOf(key)
	if c.fieldString(key) == "" {
		where, value, src = fileKey, c.fieldString(fileKey), c.SourceOf(fileKey)
	}
	in, what := "", "this token"
	if value != "" {
		in, what = "the token in "+value+": ", "the token in "+value
	}
	shape, err := CheckTokenShape(secret)
	switch {
	case err != nil:
		probs.add(where, value, src, fmt.Sprintf("%s%v; %s", in, err, bareHint))
	case shape == TokenBootstrap && (c.IsServer() || key == "agent-token"):
		probs.add(where, value, src, fmt.Sprintf("%s is a bootstrap token (K10<hash>::<id>.<secret>), which only joins agents; %s", what, bareHint))
	}
}

func (c *Config) fieldString(key string) string {
	switch key {
	case "token":
		return c.Token
	case "token-file":
		return c.TokenFile
	case "agent-token":
		return c.AgentToken
	case "agent-token-file":
		return c.AgentTokenFile
	}
	return ""
}

// tokenStrength is keys.CheckStrength of a token's secret: of an agent
// token (<fingerprint>.<secret>) only the part after the '.', since the
// fingerprint is public and adds nothing an outsider must guess.
func tokenStrength(token string) error {
	if _, ok := claims.AgentTokenFingerprint(token); ok {
		_, secret, _ := strings.Cut(token, ".")
		if err := keys.CheckStrength(secret); err != nil {
			return fmt.Errorf("the secret part after the '.' (the part before it is the public server-claims fingerprint) is %w", err)
		}
		return nil
	}
	return keys.CheckStrength(token)
}

// validateClaimKeys checks that agents will be able to verify the servers'
// signed claims (pkg/claims): they verify with the fingerprint in the agent
// token, so in the two-token set-up a server's agent token must carry the
// fingerprint of its server token's key, and in the single-token set-up the
// token must not look like an agent token (agents would read a fingerprint
// from it that no server signs with).
func (c *Config) validateClaimKeys(v func(key, value, msg string)) {
	if !c.IsServer() || c.secret == "" || tokenStrength(c.secret) != nil {
		return
	}
	generate := "`rke2-hanode token generate --cluster-name " + c.ClusterName + "`"
	if c.agentSecret == "" {
		if _, ok := claims.AgentTokenFingerprint(c.secret); ok {
			v(map[bool]string{true: "token-file", false: "token"}[c.TokenFile != ""], "",
				"looks like an agent token (<fingerprint>.<secret>, the agent-token line of "+generate+"): a server's token is the server-token line; set the agent token as agent-token")
		}
		return
	}
	if tokenStrength(c.agentSecret) != nil {
		return
	}
	key := map[bool]string{true: "agent-token-file", false: "agent-token"}[c.AgentTokenFile != ""]
	if _, ok := claims.AgentTokenFingerprint(c.agentSecret); !ok {
		v(key, "", "carries no server-claims fingerprint, so agents could not tell the servers from a host that only says it is one: make the two tokens with "+generate+" (its server-token line for token, its agent-token line for agent-token and for the agents' token)")
		return
	}
	if _, err := claims.TrustedFingerprint(c.secret, c.agentSecret, c.ClusterName); err != nil {
		v(key, "", "does not belong to the token: its server-claims fingerprint is another key's; make the two tokens together with "+generate)
	}
}
