package cahash

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

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial int64

// newCA makes a CA certificate signed by parent (self-signed when nil).
func newCA(t *testing.T, name string, parent *ca) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ca{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestOf(t *testing.T) {
	root := newCA(t, "root", nil)
	other := newCA(t, "other-root", nil)
	inter := newCA(t, "intermediate", root)
	sub := newCA(t, "sub-intermediate", inter)
	if len(inter.cert.AuthorityKeyId) == 0 || len(root.cert.AuthorityKeyId) != 0 {
		t.Fatalf("test certificates: want an AKI on the intermediate only")
	}
	for _, tc := range []struct {
		name   string
		bundle []byte
		want   string
	}{
		{"one certificate: the bytes as served", root.pem, sum(root.pem)},
		{"one certificate with a trailing line: still the bytes as served", append(append([]byte{}, root.pem...), '\n'), sum(append(append([]byte{}, root.pem...), '\n'))},
		{"intermediate then root: the root's DER", cat(inter.pem, root.pem), sum(root.cert.Raw)},
		// The old rule (first self-signed) picked the unrelated root here.
		{"intermediate, an unrelated root, its root: the root it verifies against", cat(inter.pem, other.pem, root.pem), sum(root.cert.Raw)},
		{"a chain of two intermediates: the root at its end", cat(sub.pem, inter.pem, root.pem), sum(root.cert.Raw)},
		// The old rule took the last certificate's DER for these two.
		{"an intermediate without its root: the raw bytes", cat(sub.pem, inter.pem), sum(cat(sub.pem, inter.pem))},
		{"a root first, then an intermediate: does not verify, the raw bytes", cat(root.pem, inter.pem), sum(cat(root.pem, inter.pem))},
	} {
		got, err := Of(tc.bundle)
		if err != nil || got != tc.want {
			t.Errorf("%s: Of = %s, %v; want %s", tc.name, got, err, tc.want)
		}
	}
	for _, bad := range [][]byte{nil, []byte("not pem"), []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")} {
		if h, err := Of(bad); err == nil {
			t.Errorf("Of(%q) = %s; want an error", bad, h)
		}
	}
}

func TestValid(t *testing.T) {
	good := sum([]byte("x"))
	for h, want := range map[string]bool{
		good:                true,
		good[:63]:           false,
		good + "0":          false,
		"":                  false,
		"ABCDEF" + good[6:]: false, // k3s compares lower-case hex
		"g" + good[1:]:      false,
	} {
		if Valid(h) != want {
			t.Errorf("Valid(%q) = %v, want %v", h, !want, want)
		}
	}
}

func FuzzOf(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Of(b)
		if err == nil && !Valid(h) {
			t.Fatalf("Of returned %q", h)
		}
	})
}
