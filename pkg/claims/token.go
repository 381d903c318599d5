package claims

import (
	"fmt"
	"strings"

	"github.com/rke2-hanode/rke2-hanode/pkg/keys"
)

// Token formats (documented in docs/operations.md, "Tokens"):
//
//	server token: 64 lower-case hex digits (256 random bits)
//	agent token:  <fingerprint>.<secret>
//	              fingerprint: 32 lower-case hex digits, the server-claims
//	              key's (Fingerprint); secret: 64 lower-case hex digits
//
// The agent token as a whole is the secret agents hold: it is RKE2's
// agent-token, the password of RKE2's user "node", and the root of the
// gossip key. It contains no ':' (RKE2 splits user and password there) and
// is longer than RKE2's bootstrap-token form, so RKE2 reads it as a plain
// password. The fingerprint in it is public information; it lets an agent
// check server claims without holding anything that could make one.

// Tokens is a generated server token and the agent token that goes with it.
type Tokens struct {
	Server, Agent string
}

// Generate makes a strong server token and its agent token for cluster
// (the fingerprint depends on the cluster name).
func Generate(cluster string) (Tokens, error) {
	server := keys.RandomSecret()
	fp, err := FingerprintFromServerToken(server, cluster)
	if err != nil {
		return Tokens{}, err
	}
	return Tokens{Server: server, Agent: fp + "." + keys.RandomSecret()}, nil
}

// AgentTokenFingerprint returns the server-claims fingerprint an agent
// token carries, and whether it carries one (a hand-made agent token does
// not).
func AgentTokenFingerprint(agentToken string) (string, bool) {
	fp, secret, ok := strings.Cut(agentToken, ".")
	if !ok || !isHex(fp, FingerprintLen) || secret == "" {
		return "", false
	}
	return fp, true
}

// TrustedFingerprint is the server-claims fingerprint a host trusts: derived
// from the server token when it holds one (servers; every host of a
// single-token set-up), else read from the agent token.
func TrustedFingerprint(serverToken, agentToken, cluster string) (string, error) {
	if serverToken != "" {
		fp, err := FingerprintFromServerToken(serverToken, cluster)
		if err != nil {
			return "", err
		}
		if afp, ok := AgentTokenFingerprint(agentToken); ok && afp != fp {
			return "", fmt.Errorf("claims: the agent token's fingerprint %s is not the server token's (%s) for cluster %q: the two tokens do not belong together (make both with `rke2-hanode token generate --cluster-name %s`)", afp, fp, cluster, cluster)
		}
		return fp, nil
	}
	if fp, ok := AgentTokenFingerprint(agentToken); ok {
		return fp, nil
	}
	return "", fmt.Errorf("claims: the agent token carries no server-claims fingerprint: make the tokens with `rke2-hanode token generate`")
}
