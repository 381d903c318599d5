package vip

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/backoff"
	"github.com/rke2-hanode/rke2-hanode/pkg/cahash"
	"github.com/rke2-hanode/rke2-hanode/pkg/clock"
)

// Defaults of ProberConfig.
const (
	DefaultSupervisorPort = 9345
	DefaultRequestTimeout = 5 * time.Second
	DefaultBackoffBase    = time.Second
	DefaultBackoffMax     = 30 * time.Second
)

// Bodies larger than these are not a supervisor's answer.
const (
	maxCABundleBytes = 1 << 20
	maxPingBytes     = 64
)

// ErrCAMismatch is wrapped by the error of a probe that found the VIP serving
// another CA than the expected one: another cluster, or a squatter, holds
// the VIP. It is an alarm, never "not ready yet"; the caller retries with
// backoff, since a squatter can go away and the probe sends nothing secret.
var ErrCAMismatch = errors.New("vip: cluster CA hash mismatch")

// CAMismatchError names the hash expected and the hash served.
type CAMismatchError struct {
	URL      string
	Expected string
	Got      string
}

func (e *CAMismatchError) Error() string {
	return fmt.Sprintf("vip: the CA served at %s hashes to %s, but the cluster's CA hash is %s: another cluster or an impostor holds the VIP",
		e.URL, e.Got, e.Expected)
}

// Unwrap makes errors.Is(err, ErrCAMismatch) true.
func (e *CAMismatchError) Unwrap() error { return ErrCAMismatch }

// Permanent reports false: whoever holds the VIP can change (a squatter
// leaves, kube-vip takes the address), so a mismatch is retried.
func (e *CAMismatchError) Permanent() bool { return false }

// Clock is the time source of the prober, injectable for tests.
type Clock = clock.Clock

// ProberConfig configures a Prober. Zero values take the defaults named.
type ProberConfig struct {
	// Port is the RKE2 supervisor port; default 9345.
	Port int
	// RequestTimeout bounds each HTTP request of a probe; default 5s.
	RequestTimeout time.Duration
	// BackoffBase and BackoffMax shape WaitReachable's exponential backoff
	// with full jitter: the n-th wait is uniform in [0, min(max, base·2^n)).
	// Defaults 1s and 30s.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// NodeName is returned by Holder when this host holds the VIP.
	NodeName string

	Logger     *zap.Logger           // nil: no logging
	Registerer prometheus.Registerer // nil: metrics are kept but not registered

	Clock Clock // nil: the system clock
	// Jitter returns a uniform random number in [0, n); nil: math/rand/v2.
	Jitter func(n int64) int64
	// LocalAddrs lists this host's addresses; nil: net.InterfaceAddrs.
	LocalAddrs func() ([]net.Addr, error)
	// Neighbours lists the IPv4 neighbour table; nil: /proc/net/arp.
	Neighbours func() ([]Neighbour, error)
	// LoopbackHolder answers Holder for a VIP in 127.0.0.0/8, where every
	// host owns every address and no MAC tells them apart (the loopback demo
	// and tests). nil: Holder returns ErrHolderUnknown for such VIPs.
	LoopbackHolder func(vip string) (name string, local bool, err error)
}

// Result is the outcome of one probe.
type Result struct {
	// Reachable is true when /ping answered pong over TLS verified against
	// the served CA, and that CA matched the expected hash (if any).
	Reachable bool
	// CAHash is the hash of the CA bundle the VIP served, when it served one.
	CAHash  string
	Latency time.Duration
	Err     error
}

// Prober probes the VIP's supervisor port. Safe for concurrent use.
type Prober struct {
	cfg     ProberConfig
	log     *zap.Logger
	clock   Clock
	jitter  func(n int64) int64
	metrics proberMetrics
	// probe is Probe; the backoff tests replace it.
	probe func(ctx context.Context, vip, expectCAHash string) Result
}

type proberMetrics struct {
	reachable prometheus.Gauge
	local     prometheus.Gauge
	duration  prometheus.Histogram
}

// NewProber returns a Prober and registers its metrics on cfg.Registerer.
func NewProber(cfg ProberConfig) (*Prober, error) {
	if cfg.Port == 0 {
		cfg.Port = DefaultSupervisorPort
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("vip: supervisor port %d: must be 1-65535", cfg.Port)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = DefaultBackoffBase
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.BackoffMax < cfg.BackoffBase {
		return nil, fmt.Errorf("vip: backoff max %v is below backoff base %v", cfg.BackoffMax, cfg.BackoffBase)
	}
	p := &Prober{cfg: cfg, log: cfg.Logger, clock: cfg.Clock, jitter: cfg.Jitter}
	if p.log == nil {
		p.log = zap.NewNop()
	}
	p.log = p.log.Named("vip")
	if p.clock == nil {
		p.clock = clock.System
	}
	if p.jitter == nil {
		p.jitter = rand.Int64N
	}
	p.probe = p.Probe
	p.metrics = proberMetrics{
		reachable: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "rke2_hanode", Name: "vip_reachable",
			Help: "1 when the last probe of the VIP's supervisor port answered pong with the expected cluster CA, else 0.",
		}),
		local: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "rke2_hanode", Name: "vip_local",
			Help: "1 when this host holds the VIP, else 0.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "rke2_hanode", Name: "vip_probe_duration_seconds",
			Help:    "Duration of VIP probes (/cacerts then /ping on the supervisor port), successful or not.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{p.metrics.reachable, p.metrics.local, p.metrics.duration} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("vip: register metrics: %w", err)
			}
		}
	}
	return p, nil
}

// CAHash returns the hash RKE2 puts into a secure token for a CA bundle as
// /cacerts serves it, by k3s's rule (pkg/cahash).
func CAHash(bundle []byte) (string, error) {
	return cahash.Of(bundle)
}

// Probe checks the VIP the way an RKE2 joiner does: GET
// https://VIP:port/cacerts without verification (that is how the joiner
// bootstraps trust), hash it and compare it with expectCAHash when that is
// not empty, then GET /ping verified against the served CA, with the VIP as
// the name the server certificate must carry. Nothing secret is sent.
func (p *Prober) Probe(ctx context.Context, vip, expectCAHash string) Result {
	start := p.clock.Now()
	r := p.probeOnce(ctx, vip, expectCAHash)
	r.Latency = p.clock.Now().Sub(start)
	p.metrics.duration.Observe(r.Latency.Seconds())
	if r.Reachable {
		p.metrics.reachable.Set(1)
	} else {
		p.metrics.reachable.Set(0)
	}
	if errors.Is(r.Err, ErrCAMismatch) {
		p.log.Error("VIP serves another cluster's CA: not joining through it",
			zap.String("vip", vip), zap.String("expected_ca_hash", expectCAHash),
			zap.String("served_ca_hash", r.CAHash), zap.Error(r.Err))
	}
	return r
}

func (p *Prober) probeOnce(ctx context.Context, vip, expectCAHash string) Result {
	addr, err := ParseVIP(vip)
	if err != nil {
		return Result{Err: err}
	}
	base := "https://" + net.JoinHostPort(addr.String(), strconv.Itoa(p.cfg.Port))

	// Unverified on purpose, for this one fetch: the answer is checked
	// against the expected hash before anything relies on it.
	bundle, err := p.get(ctx, &tls.Config{InsecureSkipVerify: true}, base+"/cacerts", maxCABundleBytes)
	if err != nil {
		return Result{Err: err}
	}
	hash, err := CAHash(bundle)
	if err != nil {
		return Result{Err: fmt.Errorf("vip: %s/cacerts: %w", base, err)}
	}
	if expectCAHash != "" && !strings.EqualFold(hash, expectCAHash) {
		return Result{CAHash: hash, Err: &CAMismatchError{URL: base + "/cacerts", Expected: expectCAHash, Got: hash}}
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(bundle) // CAHash parsed at least one certificate
	body, err := p.get(ctx, &tls.Config{RootCAs: roots, ServerName: addr.String(), MinVersion: tls.VersionTLS12}, base+"/ping", maxPingBytes)
	if err != nil {
		return Result{CAHash: hash, Err: err}
	}
	if answer := strings.TrimSpace(string(body)); answer != "pong" {
		return Result{CAHash: hash, Err: fmt.Errorf("vip: %s/ping answered %q, want pong", base, answer)}
	}
	return Result{Reachable: true, CAHash: hash}
}

// get fetches url over a fresh connection within the request timeout and
// returns a 200 answer's body (at most limit bytes).
func (p *Prober) get(ctx context.Context, tlsConfig *tls.Config, url string, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.RequestTimeout)
	defer cancel()
	transport := &http.Transport{
		Proxy:             nil, // the VIP is on the local L2 network: never through a proxy
		DialContext:       (&net.Dialer{Timeout: p.cfg.RequestTimeout}).DialContext,
		TLSClientConfig:   tlsConfig,
		DisableKeepAlives: true,
	}
	defer transport.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("vip: GET %s: %w", url, err)
	}
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("vip: GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("vip: GET %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("vip: GET %s: read: %w", url, err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("vip: GET %s: answer longer than %d bytes", url, limit)
	}
	return body, nil
}

// WaitReachable probes the VIP until it answers with the expected CA (any CA
// when expectCAHash is empty) and returns the CA hash it served. Between
// probes it waits with exponential backoff and full jitter. A CA mismatch
// returns at once with an error wrapping ErrCAMismatch (and the hash
// served); the end of ctx returns its error with the last probe's.
func (p *Prober) WaitReachable(ctx context.Context, vip, expectCAHash string) (string, error) {
	return p.WaitReachableAmong(ctx, vip, expectCAHash, func() Slot { return Slot{Rank: 0, Of: 1} })
}

// MaxAggregateProbeRate bounds the probes per second that all hosts
// waiting for the VIP send together after their first probe, in line with
// the RKE2 supervisor's own in-flight limits (about 20 reads).
const MaxAggregateProbeRate = 20

// Slot places one host among Of hosts that wait for the same VIP: Rank is
// its position (0 ≤ Rank < Of) in an order every host agrees on, such as
// the sorted names of the members gossip shows alive.
type Slot struct{ Rank, Of int }

// normalize keeps a slot usable when views disagree for a moment (a host
// not yet counted, or counted twice).
func (s Slot) normalize() Slot {
	s.Of = max(s.Of, 1)
	s.Rank = ((s.Rank % s.Of) + s.Of) % s.Of
	return s
}

// WaitReachableAmong is WaitReachable for one of many hosts that wait for
// the same VIP. Time is cut into instants 1/MaxAggregateProbeRate s apart,
// counted from the Unix epoch, and dealt out in turn: the host of rank r
// of n owns the instants r, r+n, r+2n, … Each retry waits its backoff and
// then for its next own instant, so hosts whose clocks agree (NTP, as
// Kubernetes needs anyway) never probe at the same instant and together
// send at most MaxAggregateProbeRate probes in any second after their
// first probe, however many they are. slot is asked again before every
// wait, so a host's turn follows the membership as hosts come and go.
func (p *Prober) WaitReachableAmong(ctx context.Context, vip, expectCAHash string, slot func() Slot) (string, error) {
	for attempt := 0; ; attempt++ {
		r := p.probe(ctx, vip, expectCAHash)
		if r.Reachable {
			p.log.Info("VIP reachable", zap.String("vip", vip), zap.String("ca_hash", r.CAHash),
				zap.Duration("latency", r.Latency), zap.Int("attempts", attempt+1))
			return r.CAHash, nil
		}
		if errors.Is(r.Err, ErrCAMismatch) {
			return r.CAHash, r.Err
		}
		now := p.clock.Now()
		wait := slot().normalize().next(now.Add(p.backoff(attempt))).Sub(now)
		fields := []zap.Field{zap.String("vip", vip), zap.Int("attempt", attempt+1), zap.Duration("next_in", wait), zap.Error(r.Err)}
		if attempt%10 == 0 {
			p.log.Info("VIP not reachable yet", fields...)
		} else {
			p.log.Debug("VIP not reachable yet", fields...)
		}
		if err := p.clock.Sleep(ctx, wait); err != nil {
			return "", fmt.Errorf("vip: wait for %s to answer on %d: %w (last probe: %v)", vip, p.cfg.Port, err, r.Err)
		}
	}
}

// probeSpacing is the time between two instants of the shared schedule.
const probeSpacing = time.Second / MaxAggregateProbeRate

// next is the slot's first own instant at or after t; a lone waiter has
// nobody to keep out of step with and owns every instant.
func (s Slot) next(t time.Time) time.Time {
	if s.Of == 1 {
		return t
	}
	period := int64(s.Of) * int64(probeSpacing)
	ns := t.UnixNano()
	at := ns - ns%period + int64(s.Rank)*int64(probeSpacing)
	if at < ns {
		at += period
	}
	return time.Unix(0, at)
}

// backoff is the wait after the attempt-th failed probe: uniform in
// [0, min(BackoffMax, BackoffBase·2^attempt)) ("full jitter").
func (p *Prober) backoff(attempt int) time.Duration {
	return backoff.Policy{Base: p.cfg.BackoffBase, Max: p.cfg.BackoffMax, Jitter: 1, Rand: p.jitter}.Delay(attempt)
}

// FetchCAHash fetches https://host:port/cacerts from one server's own
// address (not the VIP) without verification, as a joiner does, and
// returns its CA hash by k3s's rule. The caller compares it with what that
// server claims; nothing secret is sent.
func (p *Prober) FetchCAHash(ctx context.Context, host string) (string, error) {
	url := "https://" + net.JoinHostPort(host, strconv.Itoa(p.cfg.Port)) + "/cacerts"
	bundle, err := p.get(ctx, &tls.Config{InsecureSkipVerify: true}, url, maxCABundleBytes)
	if err != nil {
		return "", err
	}
	hash, err := CAHash(bundle)
	if err != nil {
		return "", fmt.Errorf("vip: %s: %w", url, err)
	}
	return hash, nil
}
