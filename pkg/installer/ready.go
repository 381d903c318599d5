package installer

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Readiness answers "is RKE2 ready on this host": its service is active
// (READY=1) and, for a server, the local supervisor answers /ping.
type Readiness struct {
	Services ServiceManager
	// Client does the ping; NewReadiness's skips certificate checks.
	Client *http.Client
	// Port is the supervisor's port (9345).
	Port int
}

// NewReadiness returns a Readiness for services with the local ping client.
//
// The ping skips certificate verification on purpose: it only asks whether
// this host's own supervisor, at this host's node-ip, answers, and sends no
// credentials; the bootstrap server has no CA to verify against before it
// is up. Anything that trusts an answer through the VIP must verify the CA
// (the VIP probe does).
func NewReadiness(services ServiceManager) *Readiness {
	return &Readiness{
		Services: services,
		Port:     SupervisorPort,
		Client: &http.Client{
			Timeout: 5 * time.Second,
			Transport: &http.Transport{
				TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
				DisableKeepAlives: true,
				Proxy:             nil, // never through a proxy: this is the host itself
			},
		},
	}
}

// Ready returns nil when role's service is active and, for a server, the
// supervisor on nodeIP answers "pong"; otherwise an error saying which.
func (r *Readiness) Ready(ctx context.Context, role Role, nodeIP string) error {
	if err := role.valid(); err != nil {
		return err
	}
	active, err := r.Services.Active(ctx, role)
	if err != nil {
		return fmt.Errorf("installer: readiness: %w", err)
	}
	if !active {
		return fmt.Errorf("installer: readiness: %s is not active", UnitName(role))
	}
	if role == RoleAgent {
		return nil
	}
	return r.ping(ctx, nodeIP)
}

func (r *Readiness) ping(ctx context.Context, nodeIP string) error {
	port := r.Port
	if port == 0 {
		port = SupervisorPort
	}
	url := "https://" + net.JoinHostPort(nodeIP, strconv.Itoa(port)) + "/ping"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("installer: readiness: node-ip %q: %w", nodeIP, err)
	}
	resp, err := r.Client.Do(req)
	if err != nil {
		return fmt.Errorf("installer: readiness: supervisor: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	if err != nil {
		return fmt.Errorf("installer: readiness: supervisor %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "pong" {
		return fmt.Errorf("installer: readiness: supervisor %s answered %s %q, want 200 \"pong\"", url, resp.Status, body)
	}
	return nil
}
