package rke2sim

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// etcd's client URLs are served as RKE2 serves them: TLS with the
// certificates under server/tls/etcd, client-cert-auth, gRPC on 2379 and
// HTTP (/health, the JSON gateway) on the loopback HTTP URL. A client with
// RKE2's client certificate reads the member list; one without is refused.
func TestEtcdClientTLS(t *testing.T) {
	a := startSim(t, simSpec{config: "node-ip: " + addr(17, 1) + "\nnode-name: a\ntoken: et\n"})
	a.waitReady()
	f := etcdTLSIn(a.dataDir)
	for _, p := range []string{f.CA, f.ServerCert, f.ServerKey, f.ClientCert, f.ClientKey} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("RKE2's etcd file %s: %v", p, err)
		}
	}
	good, err := f.clientTLS()
	if err != nil {
		t.Fatal(err)
	}
	post := func(cfg *tls.Config, url string) (*http.Response, error) {
		c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		return c.Post(url, "application/json", strings.NewReader("{}"))
	}
	gw := "https://" + addr(17, 1) + ":22382"
	resp, err := post(good, gw+"/v3/cluster/member/list")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var ml struct {
		Members []struct {
			ID   string `json:"ID"`
			Name string `json:"name"`
		} `json:"members"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &ml) != nil || len(ml.Members) != 1 || !strings.HasPrefix(ml.Members[0].Name, "a-") || ml.Members[0].ID == "" {
		t.Fatalf("member list through the gateway: %s %s", resp.Status, body)
	}
	resp, err = post(good, gw+"/v3/maintenance/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"leader":"`) || !strings.Contains(string(body), `"revision":"`) {
		t.Fatalf("status through the gateway: %s %s", resp.Status, body)
	}

	// Without a client certificate, or with one etcd's CA did not sign.
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(f.CA)
	pool.AppendCertsFromPEM(caPEM)
	other, err := NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	oc, ok, err := other.ClientCert("intruder", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := tls.X509KeyPair(oc, ok)
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*tls.Config{
		"no certificate":      {RootCAs: pool},
		"another CA's client": {RootCAs: pool, Certificates: []tls.Certificate{foreign}},
	} {
		for _, url := range []string{gw + "/v3/cluster/member/list", "https://" + addr(17, 1) + ":22379/v3/cluster/member/list"} {
			if resp, err := post(cfg, url); err == nil {
				resp.Body.Close()
				t.Errorf("%s: %s answered %s, want the TLS handshake refused", name, url, resp.Status)
			}
		}
	}
	// The client URL serves gRPC only, as under RKE2 (HTTP moved to the
	// HTTP URL): the gateway is not there.
	if resp, err := post(good, "https://"+addr(17, 1)+":22379/v3/cluster/member/list"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && strings.Contains(string(b), `"members"`) {
			t.Errorf("the gRPC client URL serves the JSON gateway too: %s", b)
		}
	}
}
