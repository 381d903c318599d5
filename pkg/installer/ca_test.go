package installer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// testCAs makes a root and an intermediate it signed, and returns the root
// alone as PEM, the bundle intermediate+root as /cacerts would serve it, and
// the bundle's CA hash by k3s's rule (the root's DER).
func testCAs(t *testing.T) (rootPEM, bundle []byte, bundleHash string) {
	t.Helper()
	mk := func(name string, serial int64, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	root, rootKey, rootPEM := mk("rke2-server-ca-root", 1, nil, nil)
	_, _, interPEM := mk("rke2-server-ca", 2, root, rootKey)
	sum := sha256.Sum256(root.Raw)
	return rootPEM, append(append([]byte{}, interPEM...), rootPEM...), hex.EncodeToString(sum[:])
}
