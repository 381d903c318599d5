package rke2sim

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
)

// etcd's client TLS in RKE2's layout (k3s pkg/daemons/control/deps):
// <data-dir>/server/tls/etcd/server-ca.crt (+ .key) is the CA etcd trusts
// for clients (client-cert-auth on), server-client.crt/.key is what etcd
// serves (and what it dials itself with, so it carries both usages), and
// client.crt/.key is what the apiserver and other local clients present.
//
// Where the sim differs: real RKE2 shares the etcd CAs through its
// bootstrap data, here each server makes its own etcd CA once. Clients only
// ever reach their own host's etcd, so nothing observable depends on it;
// peer traffic stays plain HTTP.

// etcdTLSFiles are the paths of the etcd certificates under a data-dir.
type etcdTLSFiles struct {
	CA, CAKey, ServerCert, ServerKey, ClientCert, ClientKey string
}

func etcdTLSIn(dataDir string) etcdTLSFiles {
	dir := filepath.Join(dataDir, "server", "tls", "etcd")
	return etcdTLSFiles{
		CA: filepath.Join(dir, "server-ca.crt"), CAKey: filepath.Join(dir, "server-ca.key"),
		ServerCert: filepath.Join(dir, "server-client.crt"), ServerKey: filepath.Join(dir, "server-client.key"),
		ClientCert: filepath.Join(dir, "client.crt"), ClientKey: filepath.Join(dir, "client.key"),
	}
}

// ensureEtcdTLS makes the etcd CA once and issues the serving and client
// certificates at every start (RKE2 renews its leaves at start). The
// serving certificate names node-ip, 127.0.0.1 and localhost.
func ensureEtcdTLS(dataDir, nodeIP string, now time.Time) (etcdTLSFiles, error) {
	f := etcdTLSIn(dataDir)
	if err := os.MkdirAll(filepath.Dir(f.CA), 0o700); err != nil {
		return f, fmt.Errorf("etcd tls: %w", err)
	}
	var ca *CA
	certPEM, errC := os.ReadFile(f.CA)
	keyPEM, errK := os.ReadFile(f.CAKey)
	switch {
	case errC == nil && errK == nil:
		c, err := ParseCA(certPEM, keyPEM)
		if err != nil {
			return f, fmt.Errorf("etcd tls: %s: %w", f.CA, err)
		}
		ca = c
	case errors.Is(errC, os.ErrNotExist) && errors.Is(errK, os.ErrNotExist):
		key, der, err := newCACert(now, fmt.Sprintf("etcd-server-ca@%d", now.Unix()), nil, nil)
		if err != nil {
			return f, err
		}
		if ca, err = caFromDER(key, der); err != nil {
			return f, err
		}
		if err := writeFileAtomic(f.CA, ca.CertPEM, 0o644); err != nil {
			return f, err
		}
		if err := writeFileAtomic(f.CAKey, ca.KeyPEM, 0o600); err != nil {
			return f, err
		}
	default:
		return f, fmt.Errorf("etcd tls: %s and %s must both exist or both be absent", f.CA, f.CAKey)
	}
	sc, sk, err := ca.issuePEM(pkix.Name{CommonName: "etcd-server"}, []string{nodeIP, "127.0.0.1", "localhost"},
		[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, now)
	if err != nil {
		return f, err
	}
	cc, ck, err := ca.issuePEM(pkix.Name{CommonName: "etcd-client"}, nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, now)
	if err != nil {
		return f, err
	}
	for path, b := range map[string][]byte{f.ServerCert: sc, f.ServerKey: sk, f.ClientCert: cc, f.ClientKey: ck} {
		if err := writeFileAtomic(path, b, 0o600); err != nil {
			return f, err
		}
	}
	return f, nil
}

// serverTLS is etcd's client-side listener security: its certificate,
// client-cert-auth against the etcd CA.
func (f etcdTLSFiles) serverTLS() transport.TLSInfo {
	return transport.TLSInfo{CertFile: f.ServerCert, KeyFile: f.ServerKey, TrustedCAFile: f.CA, ClientCertAuth: true}
}

// clientTLS is what a local client (the sim itself, as the apiserver)
// presents.
func (f etcdTLSFiles) clientTLS() (*tls.Config, error) {
	return transport.TLSInfo{CertFile: f.ClientCert, KeyFile: f.ClientKey, TrustedCAFile: f.CA}.ClientConfig()
}

// ownLoopback is the loopback address RKE2's loopback-only listeners
// (etcd's HTTP client URL) bind on this host: 127.0.0.1, or node-ip itself
// where node-ip is a loopback address (several sims on one machine, each
// with its own 127.x, cannot share 127.0.0.1).
func ownLoopback(nodeIP string) string {
	if ip := net.ParseIP(nodeIP); ip != nil && ip.IsLoopback() {
		return nodeIP
	}
	return "127.0.0.1"
}
