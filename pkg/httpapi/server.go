// Package httpapi serves the daemon's HTTP endpoints: /metrics, /healthz,
// /readyz, /status and the status page at /. It only reads state handed to
// it; it changes nothing.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// Config is what the server serves.
type Config struct {
	// Address is host:port to listen on.
	Address string
	// Gatherer is scraped on /metrics.
	Gatherer prometheus.Gatherer
	// Status returns the current /status document.
	Status func() status.Status
	Logger *zap.Logger
}

// Server is the HTTP endpoint of one daemon.
type Server struct {
	cfg Config
	ln  net.Listener
	srv *http.Server
}

// Listen binds the address, so that readiness can be announced only once
// the endpoints really answer; an address in use fails here. The server's
// lifecycle is the project's one: Listen, Run(ctx), Close.
func Listen(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	ln, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("http-address %s: %w", cfg.Address, err)
	}
	s := &Server{cfg: cfg, ln: ln}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /status", s.status)
	s.mountPage(mux)
	s.srv = newHTTPServer(mux)
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Run answers requests until ctx is cancelled, then shuts down gracefully
// (requests in flight get 5 s) and releases the address.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(shutCtx); err != nil {
		s.srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http: %w", err)
	}
	return nil
}

// Close releases the address of a server that is not running, and stops a
// running one at once. Closing twice is harmless.
func (s *Server) Close() error {
	err := s.srv.Close()
	if lerr := s.ln.Close(); lerr != nil && !errors.Is(lerr, net.ErrClosed) && err == nil {
		err = lerr
	}
	return err
}

func (s *Server) current() status.Status {
	if s.cfg.Status == nil {
		return status.Status{}
	}
	return s.cfg.Status()
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	st := s.current()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if st.Node.Phase != status.PhaseReady {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: phase %s\n", st.Node.Phase)
		return
	}
	fmt.Fprintln(w, "ok")
}

// statusDocument is /status with empty lists as [] and {}, never null.
func (s *Server) statusDocument() status.Status {
	st := s.current()
	if st.Members == nil {
		st.Members = []status.Member{}
	}
	if st.Timeline == nil {
		st.Timeline = map[string][]status.Transition{}
	}
	return st
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := s.statusDocument()
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(st); err != nil {
		s.cfg.Logger.Debug("write /status", zap.Error(err))
	}
}
