package rke2sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// CA is the cluster's certificate authority: CertPEM is served on /cacerts
// byte for byte and hashed into the secure token.
type CA struct {
	CertPEM []byte
	KeyPEM  []byte
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
}

// NewCA generates a fresh ECDSA P-256 CA, as a cluster-init does.
func NewCA(now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("ca: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("rke2-server-ca@%d", now.Unix())},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("ca: certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ca: marshal key: %w", err)
	}
	return ParseCA(
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	)
}

// ParseCA loads a CA from PEM.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil {
		return nil, errors.New("ca: certificate: no PEM block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: certificate: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("ca: key: no PEM block")
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: key: %w", err)
	}
	return &CA{CertPEM: certPEM, KeyPEM: keyPEM, cert: cert, key: key}, nil
}

// Hash is the CA hash of the secure token: SHA-256 of the PEM as served.
func (c *CA) Hash() string { return HashCACerts(c.CertPEM) }

// HashCACerts hashes a /cacerts body the way a joiner does.
func HashCACerts(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// Pool is a cert pool holding only this CA.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// ServingCert issues the certificate for 9345/6443. Its SANs are exactly
// node-ip, localhost, 127.0.0.1 and the tls-san entries: an address outside
// them fails verification, as with real RKE2.
func (c *CA) ServingCert(nodeName string, sans []string, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("serving cert: key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("serving cert: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "rke2-supervisor", Organization: []string{nodeName}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if s != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("serving cert: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// servingSANs lists the SANs real RKE2 puts on its supervisor certificate
// that matter here.
func servingSANs(nodeIP string, tlsSAN []string) []string {
	out := []string{nodeIP, "localhost", "127.0.0.1"}
	for _, s := range tlsSAN {
		dup := false
		for _, o := range out {
			dup = dup || o == s
		}
		if !dup {
			out = append(out, s)
		}
	}
	return out
}

// caFiles are where the CA lives under the data-dir (RKE2's own names).
func caFiles(dataDir string) (certPath, keyPath string) {
	dir := filepath.Join(dataDir, "server", "tls")
	return filepath.Join(dir, "server-ca.crt"), filepath.Join(dir, "server-ca.key")
}

// SaveCA writes the CA under dataDir.
func SaveCA(dataDir string, c *CA) error {
	certPath, keyPath := caFiles(dataDir)
	if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	if err := writeFileAtomic(certPath, c.CertPEM, 0o644); err != nil {
		return err
	}
	return writeFileAtomic(keyPath, c.KeyPEM, 0o600)
}

// LoadCA reads the CA saved under dataDir.
func LoadCA(dataDir string) (*CA, error) {
	certPath, keyPath := caFiles(dataDir)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return ParseCA(certPEM, keyPEM)
}

// Token is a parsed join token.
type Token struct {
	CAHash   string // "" for a short token
	Username string // "server" or "node"; "server" for a short token
	Secret   string
}

// ParseToken accepts the secure form K10<hash>::<user>:<secret> and a short
// token (the whole string is the secret).
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, errors.New("token: empty")
	}
	rest, ok := strings.CutPrefix(s, "K10")
	if !ok || !strings.Contains(rest, "::") {
		return Token{Username: "server", Secret: s}, nil
	}
	hash, creds, _ := strings.Cut(rest, "::")
	user, secret, ok := strings.Cut(creds, ":")
	if !ok || secret == "" || user == "" {
		return Token{}, errors.New("token: secure form must be K10<ca-hash>::<user>:<secret>")
	}
	if len(hash) != 64 {
		return Token{}, fmt.Errorf("token: CA hash has %d hex digits, want 64", len(hash))
	}
	if _, err := hex.DecodeString(hash); err != nil {
		return Token{}, errors.New("token: CA hash is not hex")
	}
	return Token{CAHash: strings.ToLower(hash), Username: user, Secret: secret}, nil
}

// SecureToken formats the secure server token for a CA hash and secret.
func SecureToken(caHash, user, secret string) string {
	return "K10" + caHash + "::" + user + ":" + secret
}

func randomSecret() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// writeFileAtomic writes via a temporary file and rename.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
