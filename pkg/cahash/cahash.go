// Package cahash computes the cluster CA hash that a secure RKE2 token pins
// (K10<hash>::user:password), by the rule k3s applies to the body of the
// supervisor's /cacerts:
//
//   - one certificate: the SHA-256 of the bytes exactly as served;
//   - a bundle: the SHA-256 of the DER of the root that the first
//     certificate verifies against, where a later certificate with no
//     AuthorityKeyId, or one equal to its SubjectKeyId, counts as a root and
//     every other later certificate as an intermediate;
//   - a bundle whose first certificate does not verify: the raw bytes again.
//
// The VIP probe, the datastore guard and the secure token all use Of, so a
// joiner, this daemon and RKE2 agree on the hash of any CA RKE2 serves.
package cahash

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
)

// Size is the length of a hash in hex digits.
const Size = 2 * sha256.Size

// Of returns the CA hash (lower-case hex) of a PEM bundle as /cacerts serves
// it. It fails when the bundle holds no parseable certificate.
func Of(bundle []byte) (string, error) {
	certs, err := parse(bundle)
	if err != nil {
		return "", err
	}
	hashed := bundle
	if len(certs) > 1 {
		if root := rootOf(certs); root != nil {
			hashed = root.Raw
		}
	}
	sum := sha256.Sum256(hashed)
	return hex.EncodeToString(sum[:]), nil
}

// Valid reports whether h has the form of a CA hash as k3s compares it:
// 64 lower-case hex digits.
func Valid(h string) bool {
	if len(h) != Size {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func parse(bundle []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := bundle; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("cahash: CA bundle: %w", err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("cahash: CA bundle holds no PEM certificate")
	}
	return certs, nil
}

// rootOf is the root certs[0] verifies against, or nil when it does not.
func rootOf(certs []*x509.Certificate) *x509.Certificate {
	roots, intermediates := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range certs[1:] {
		if len(c.AuthorityKeyId) == 0 || bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId) {
			roots.AddCert(c)
		} else {
			intermediates.AddCert(c)
		}
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates})
	if err != nil || len(chains) == 0 {
		return nil
	}
	chain := chains[0]
	return chain[len(chain)-1]
}
