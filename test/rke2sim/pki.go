package rke2sim

import (
	"bytes"
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
	"regexp"
	"strings"
	"time"
)

// CA is the cluster's certificate authority: CertPEM is served on /cacerts
// byte for byte and hashed into the secure token. With a bundle (RKE2SIM_CA=
// bundle) CertPEM is the intermediate followed by the root, and the
// intermediate (whose key KeyPEM holds) signs the serving certificates.
type CA struct {
	CertPEM []byte
	KeyPEM  []byte
	cert    *x509.Certificate   // the signer
	certs   []*x509.Certificate // all of CertPEM, in order
	key     *ecdsa.PrivateKey
}

// NewCA generates a fresh ECDSA P-256 CA, as a cluster-init does.
func NewCA(now time.Time) (*CA, error) {
	key, der, err := newCACert(now, fmt.Sprintf("rke2-server-ca@%d", now.Unix()), nil, nil)
	if err != nil {
		return nil, err
	}
	return caFromDER(key, der)
}

// NewBundleCA generates a root and an intermediate signed by it; the
// intermediate signs. /cacerts then serves the intermediate and the root.
func NewBundleCA(now time.Time) (*CA, error) {
	rootKey, rootDER, err := newCACert(now, fmt.Sprintf("rke2-root-ca@%d", now.Unix()), nil, nil)
	if err != nil {
		return nil, err
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, fmt.Errorf("ca: root: %w", err)
	}
	key, der, err := newCACert(now, fmt.Sprintf("rke2-server-ca@%d", now.Unix()), root, rootKey)
	if err != nil {
		return nil, err
	}
	return caFromDER(key, der, rootDER)
}

// newCACert makes a CA certificate signed by parent (self-signed when nil).
func newCACert(now time.Time, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, fmt.Errorf("ca: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent, parentKey
		tmpl.MaxPathLenZero = true
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: certificate: %w", err)
	}
	return key, der, nil
}

func caFromDER(key *ecdsa.PrivateKey, signerDER []byte, more ...[]byte) (*CA, error) {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ca: marshal key: %w", err)
	}
	var bundle []byte
	for _, der := range append([][]byte{signerDER}, more...) {
		bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return ParseCA(bundle, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
}

// ParseCA loads a CA from PEM: the certificates in order, the first one the signer.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	certs := parseCerts(certPEM)
	if len(certs) == 0 {
		return nil, errors.New("ca: certificate: no PEM block")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("ca: key: no PEM block")
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: key: %w", err)
	}
	if !key.PublicKey.Equal(certs[0].PublicKey) {
		return nil, errors.New("ca: the key does not belong to the first certificate")
	}
	return &CA{CertPEM: certPEM, KeyPEM: keyPEM, cert: certs[0], certs: certs, key: key}, nil
}

// parseCerts reads every CERTIFICATE block it can parse.
func parseCerts(body []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, body = pem.Decode(body)
		if b == nil {
			return out
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

// Hash is the CA hash of the secure token, as a joiner computes it from /cacerts.
func (c *CA) Hash() string { return HashCACerts(c.CertPEM) }

// HashCACerts hashes a /cacerts body as k3s's hashCA does: one certificate
// (or none parsed): SHA-256 of the bytes as served; a bundle: SHA-256 of the
// DER of the root that the first certificate verifies against (certificates
// after the first without an AuthorityKeyId, or with one equal to their
// SubjectKeyId, are roots; the others intermediates); if that verification
// fails, the bytes as served again.
func HashCACerts(body []byte) string {
	raw := func() string {
		sum := sha256.Sum256(body)
		return hex.EncodeToString(sum[:])
	}
	certs := parseCerts(body)
	if len(certs) <= 1 {
		return raw()
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range certs[1:] {
		if len(c.AuthorityKeyId) == 0 || bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId) {
			roots.AddCert(c)
		} else {
			inter.AddCert(c)
		}
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil || len(chains) == 0 || len(chains[0]) == 0 {
		return raw()
	}
	root := chains[0][len(chains[0])-1]
	sum := sha256.Sum256(root.Raw)
	return hex.EncodeToString(sum[:])
}

// Pool is a cert pool holding this CA's certificates.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, cert := range c.certs {
		p.AddCert(cert)
	}
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
	chain := [][]byte{der}
	if len(c.certs) > 1 {
		chain = append(chain, c.cert.Raw) // the intermediate travels with the leaf
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key}, nil
}

// ClientCert issues a client certificate (CN user, O groups) as PEM, the
// way RKE2 signs the admin kubeconfig's system:admin in system:masters.
func (c *CA) ClientCert(user string, groups []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	return c.issuePEM(pkix.Name{CommonName: user, Organization: groups}, nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, now)
}

// issuePEM issues a leaf for subject with the given SANs and usages, as
// PEM (with the intermediate when the CA is a bundle).
func (c *CA) issuePEM(subject pkix.Name, sans []string, usages []x509.ExtKeyUsage, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate %s: key: %w", subject.CommonName, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, fmt.Errorf("certificate %s: serial: %w", subject.CommonName, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usages,
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
		return nil, nil, fmt.Errorf("certificate %s: %w", subject.CommonName, err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate %s: %w", subject.CommonName, err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if len(c.certs) > 1 {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})...)
	}
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
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
	CAHash    string // "" for a bare password
	Username  string // "" for a bare password (the role decides: server or node)
	Secret    string // the password, or the bootstrap token
	Bootstrap bool   // Secret is a bootstrap token [a-z0-9]{6}.[a-z0-9]{16}
}

var bootstrapToken = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)

// ParseToken reads a token as k3s's clientaccess does. One that does not
// begin with K10 is a bare password (or a bootstrap token). One that does
// must be K10<hash>::<user>:<password> or K10<hash>::<bootstrap token>, the
// hash empty or exactly 64 characters; the hash is kept as written and
// compared exactly.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, errors.New("token must not be empty")
	}
	rest, secure := strings.CutPrefix(s, "K10")
	if !secure {
		return Token{Secret: s, Bootstrap: bootstrapToken.MatchString(s)}, nil
	}
	var tok Token
	if hash, creds, ok := strings.Cut(rest, "::"); ok {
		if len(hash) > 0 && len(hash) != 64 {
			return Token{}, errors.New("invalid token CA hash length")
		}
		tok.CAHash, rest = hash, creds
	}
	if bootstrapToken.MatchString(rest) {
		tok.Secret, tok.Bootstrap = rest, true
		return tok, nil
	}
	user, password, ok := strings.Cut(rest, ":")
	if !ok || password == "" {
		return Token{}, errors.New("invalid token format")
	}
	tok.Username, tok.Secret = user, password
	return tok, nil
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
