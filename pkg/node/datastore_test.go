package node

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
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
)

// TestDatastoreOnDisk: the host's datastore and the CA beside it as the
// resume plan reads them. The CA hash is k3s's (a bundle's root DER); a CA
// file that is not a certificate is reported with the reason, never taken
// for any cluster's.
func TestDatastoreOnDisk(t *testing.T) {
	rootPEM, bundle, bundleHash := testCAs(t)
	sum := sha256.Sum256(rootPEM)
	rootHash := hex.EncodeToString(sum[:]) // a lone CA: the file's bytes
	for _, tc := range []struct {
		name      string
		store     bool
		ca        []byte // nil: no CA file
		present   bool
		wantHash  string
		wantCAErr bool
	}{
		{"fresh host", false, nil, false, "", false},
		{"datastore without a CA", true, nil, true, "", false},
		{"the root alone", true, rootPEM, true, rootHash, false},
		{"intermediate and root", true, bundle, true, bundleHash, false},
		{"not a certificate", true, []byte("not a certificate"), true, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Defaults()
			c.RKE2DataDir = t.TempDir()
			if tc.store {
				if err := os.MkdirAll(installer.DatastorePath(c.RKE2DataDir), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			if tc.ca != nil {
				os.MkdirAll(filepath.Dir(installer.ServerCAPath(c.RKE2DataDir)), 0o700)
				if err := os.WriteFile(installer.ServerCAPath(c.RKE2DataDir), tc.ca, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			h := &rke2Installer{cfg: c, log: zap.NewNop()}
			d, err := h.Datastore()
			if err != nil {
				t.Fatal(err)
			}
			if d.Present != tc.present || d.CAHash != tc.wantHash || (d.CAErr != nil) != tc.wantCAErr {
				t.Fatalf("datastore %+v, want present %v, CA hash %q, CA error %v", d, tc.present, tc.wantHash, tc.wantCAErr)
			}
			if tc.wantCAErr {
				p := planResume(resumeFacts{Path: pathJoiner, Datastore: d, Raft: raftFacts{Started: true, ClusterCA: strings.Repeat("ab", 32)}})
				if p.Refuse == nil || !strings.Contains(p.Refuse.Error(), "cannot be read") {
					t.Fatalf("an unreadable CA was not refused with the reason: %v", p.Refuse)
				}
			}
		})
	}
}

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
