package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/vip"
)

// vipWaitResult is what a crowd of agents waiting for the VIP does to it.
type vipWaitResult struct {
	Agents int
	UpAt   float64 // s after the agents began waiting
	// PerSecond[i] is what the VIP saw in second i: connection attempts
	// (a probe of a silent VIP is one refused connection; an answered probe
	// is two, /cacerts and /ping).
	Connections []int
	Probes      []int   // probes begun (/cacerts requests, or refused connections) per second
	MaxRateDown float64 // highest probes/s while down, after the first second
	MaxRateUp   float64 // highest probes/s once up
	StartedP50  float64 // VIP up → an agent's WaitReachable returns, s
	StartedP90  float64
	StartedMax  float64
	Backoff     string
}

// countingListener counts accepted connections by second and, while the
// VIP is "down", closes them at once (a probe finds nobody serving).
type countingListener struct {
	net.Listener
	start time.Time
	up    atomic.Bool
	mu    sync.Mutex
	conns map[int]int
	down  map[int]int
}

func (l *countingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		sec := int(time.Since(l.start) / time.Second)
		l.mu.Lock()
		l.conns[sec]++
		if !l.up.Load() {
			l.down[sec]++
		}
		l.mu.Unlock()
		if !l.up.Load() {
			c.(*net.TCPConn).SetLinger(0) // a reset, as from a port nobody serves
			c.Close()
			continue
		}
		return c, nil
	}
}

// selfSigned makes a CA certificate for ip, which serves as its own
// serving certificate (as /cacerts then verifies /ping).
func selfSigned(ip net.IP) (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench-vip-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{ip},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pemBytes, nil
}

// runVIPWait starts agents waiters, each with its own vip.Prober (as each
// host has one) and the product's default backoff, against a stand-in VIP
// that answers from upAfter on.
func runVIPWait(ctx context.Context, agents int, upAfter time.Duration, progress func(string, ...any)) (*vipWaitResult, error) {
	ip := net.ParseIP("127.95.0.200")
	cert, caPEM, err := selfSigned(ip)
	if err != nil {
		return nil, err
	}
	ca, err := vip.CAHash(caPEM)
	if err != nil {
		return nil, err
	}
	raw, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		return nil, err
	}
	port := raw.Addr().(*net.TCPAddr).Port
	start := time.Now()
	cl := &countingListener{Listener: raw, start: start, conns: map[int]int{}, down: map[int]int{}}
	var mu sync.Mutex
	cacerts := map[int]int{}
	mux := http.NewServeMux()
	mux.HandleFunc("/cacerts", func(w http.ResponseWriter, _ *http.Request) {
		sec := int(time.Since(start) / time.Second)
		mu.Lock()
		cacerts[sec]++
		mu.Unlock()
		w.Write(caPEM)
	})
	mux.HandleFunc("/ping", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("pong")) })
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ErrorLog: discardLog()}
	go srv.Serve(tls.NewListener(cl, srv.TLSConfig))
	defer srv.Close()

	progress("vipwait: %d agents wait for a VIP that answers after %s", agents, upAfter)
	wctx, cancel := context.WithTimeout(ctx, upAfter+5*time.Minute)
	defer cancel()
	done := make([]time.Duration, agents)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range agents {
		p, err := vip.NewProber(vip.ProberConfig{Port: port, NodeName: "agent-" + strconv.Itoa(i)})
		if err != nil {
			return nil, err
		}
		wg.Go(func() {
			if _, err := p.WaitReachableAmong(wctx, ip.String(), ca, func() vip.Slot { return vip.Slot{Rank: i, Of: agents} }); err != nil {
				failed.Add(1)
				return
			}
			done[i] = time.Since(start)
		})
	}
	time.AfterFunc(upAfter, func() { cl.up.Store(true) })
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return nil, fmt.Errorf("vipwait: %d of %d waiters never saw the VIP", n, agents)
	}
	r := &vipWaitResult{Agents: agents, UpAt: upAfter.Seconds(),
		Backoff: fmt.Sprintf("full jitter, base %s, max %s (vip.DefaultBackoffBase/Max)", vip.DefaultBackoffBase, vip.DefaultBackoffMax)}
	last := 0
	for _, d := range done {
		last = max(last, int(d/time.Second))
	}
	upSec := int(upAfter / time.Second)
	cl.mu.Lock()
	mu.Lock()
	for s := 0; s <= last; s++ {
		r.Connections = append(r.Connections, cl.conns[s])
		probes := cl.down[s] + cacerts[s]
		r.Probes = append(r.Probes, probes)
		switch {
		case s >= 1 && s < upSec:
			r.MaxRateDown = max(r.MaxRateDown, float64(probes))
		case s > upSec:
			r.MaxRateUp = max(r.MaxRateUp, float64(probes))
		}
	}
	mu.Unlock()
	cl.mu.Unlock()
	var after []float64
	for _, d := range done {
		after = append(after, (d - upAfter).Seconds())
	}
	sort.Float64s(after)
	r.StartedP50, r.StartedP90, r.StartedMax = after[len(after)/2], after[len(after)*9/10], after[len(after)-1]
	progress("  VIP up → all %d agents through: p50 %.1fs, p90 %.1fs, max %.1fs; peak %v probes/s while down", agents, r.StartedP50, r.StartedP90, r.StartedMax, r.MaxRateDown)
	return r, nil
}

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }
