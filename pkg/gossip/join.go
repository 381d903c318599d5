package gossip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/backoff"
)

// run joins the seeds until one answers and rejoins whenever this member is
// alone. While it has company it still contacts, now and then, the seeds
// that are not members: two groups that formed apart (a partition that
// outlived memberlist's memory of the dead) merge again. It also forgets
// long-dead members. It returns when ctx ends.
func (m *Member) run(ctx context.Context) {
	t := m.cfg.Timings
	// Equal jitter: half the delay fixed, half random, so hosts that
	// booted together do not retry in lockstep.
	joinBackoff := backoff.Policy{Base: t.JoinBackoffMin, Max: t.JoinBackoffMax, Jitter: 0.5,
		Rand: func(n int64) int64 { return int64(m.cfg.Jitter(time.Duration(n))) }}.Start()
	var lastSeedCheck time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		m.prune()
		switch {
		case len(m.cfg.Join) == 0 || m.left.Load():
		case !m.alone():
			if now := m.cfg.Clock.Now(); now.Sub(lastSeedCheck) >= t.SeedCheckInterval {
				lastSeedCheck = now
				m.joinMissingSeeds(ctx)
			}
		case m.joinOnce(ctx) && !m.alone():
			lastSeedCheck = m.cfg.Clock.Now()
		default:
			timer.Reset(joinBackoff.Next())
			continue
		}
		joinBackoff.Reset()
		timer.Reset(t.JoinBackoffMin)
	}
}

// alone reports whether memberlist knows no other live member.
func (m *Member) alone() bool {
	return m.ml.Load().NumMembers() <= 1
}

// joinOnce resolves the seeds again (they may have come up or moved since
// the last attempt) and contacts all of them at once. It reports whether at
// least one answered.
func (m *Member) joinOnce(ctx context.Context) bool {
	m.metrics.joinAttempts.Inc()
	addrs, resolveErrs := m.resolveSeeds(ctx)
	if len(addrs) == 0 && len(resolveErrs) == 0 {
		m.establish() // the first of the cluster: nobody held its name before
		return false  // every seed is this member: wait for the others to join us
	}
	m.joining.Add(1)
	joined, errs := m.joinAll(addrs)
	m.joining.Add(-1)
	if joined {
		m.establish()
		m.log.Info("joined the gossip cluster", zap.Strings("seeds", addrs), zap.Int("members", m.ml.Load().NumMembers()))
		return true
	}
	m.metrics.joinFailures.Inc()
	if ok, suppressed := m.warns.allow("join"); ok {
		m.log.Warn("no gossip seed answered; retrying (a seed that closes the connection at once may use another token or cluster name)",
			zap.Strings("join", m.cfg.Join),
			zap.Strings("seeds", addrs),
			zap.Errors("errors", append(resolveErrs, errs...)),
			zap.Int("suppressed", suppressed))
	}
	return false
}

// joinMissingSeeds contacts the seeds that are not live members.
func (m *Member) joinMissingSeeds(ctx context.Context) {
	addrs, _ := m.resolveSeeds(ctx)
	live := map[string]bool{}
	for _, mi := range m.Members() {
		if mi.State == StateAlive || mi.State == StateSuspect {
			live[net.JoinHostPort(mi.Addr, strconv.Itoa(mi.Port))] = true
		}
	}
	addrs = slices.DeleteFunc(addrs, func(a string) bool { return live[a] })
	if len(addrs) == 0 {
		return
	}
	before := m.ml.Load().NumMembers()
	if joined, errs := m.joinAll(addrs); joined {
		m.log.Info("contacted seeds that were not members", zap.Strings("seeds", addrs),
			zap.Int("members_before", before), zap.Int("members", m.ml.Load().NumMembers()))
	} else {
		m.log.Debug("seeds that are not members did not answer", zap.Errors("errors", errs))
	}
}

// joinAll contacts every address at once (each waits up to TCPTimeout) and
// reports whether any answered.
func (m *Member) joinAll(addrs []string) (joined bool, errs []error) {
	ml := m.ml.Load()
	results := make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Go(func() {
			if _, err := ml.Join([]string{addr}); err != nil {
				results[i] = fmt.Errorf("gossip: %w", firstError(err)) // memberlist names the address
			}
		})
	}
	wg.Wait()
	for i, err := range results {
		if err == nil {
			joined = true
			continue
		}
		if isDecryptError(err.Error()) {
			host, _, _ := net.SplitHostPort(addrs[i])
			m.rejected(host, false)
		}
		errs = append(errs, err)
	}
	return joined, errs
}

// resolveSeeds turns the join list into ip:port addresses, leaving out this
// member's own address.
func (m *Member) resolveSeeds(ctx context.Context) (addrs []string, errs []error) {
	self := m.selfAddrs()
	for _, seed := range m.cfg.Join {
		host, port, err := splitSeed(seed, m.port)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var ips []netip.Addr
		if ip, err := netip.ParseAddr(host); err == nil {
			ips = []netip.Addr{ip}
		} else {
			lctx, cancel := context.WithTimeout(ctx, m.cfg.Timings.TCPTimeout)
			found, err := m.cfg.Resolver.LookupHost(lctx, host)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("gossip: resolve join entry %q: %w", seed, err))
				continue
			}
			for _, s := range found {
				if ip, err := netip.ParseAddr(s); err == nil {
					ips = append(ips, ip.WithZone(""))
				}
			}
		}
		for _, ip := range ips {
			ap := netip.AddrPortFrom(ip.Unmap(), uint16(port))
			if slices.Contains(self, ap) {
				continue
			}
			if s := ap.String(); !slices.Contains(addrs, s) {
				addrs = append(addrs, s)
			}
		}
	}
	return addrs, errs
}

// selfAddrs are the addresses at which a seed would be this member.
func (m *Member) selfAddrs() []netip.AddrPort {
	var self []netip.AddrPort
	if m.self.IsValid() {
		self = append(self, m.self)
	}
	if ip, err := netip.ParseAddr(m.cfg.BindAddr); err == nil && !ip.IsUnspecified() {
		self = append(self, netip.AddrPortFrom(ip.Unmap(), uint16(m.port)))
	}
	return self
}

// splitSeed parses a join entry: an IP, a host name, or either with a port.
func splitSeed(seed string, defaultPort int) (host string, port int, err error) {
	seed = strings.TrimSpace(seed)
	if seed == "" {
		return "", 0, errors.New("gossip: join entry is empty")
	}
	if _, err := netip.ParseAddr(seed); err == nil { // an IP, IPv6 without brackets included
		return seed, defaultPort, nil
	}
	host, port = seed, defaultPort
	if h, p, err := net.SplitHostPort(seed); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, fmt.Errorf("gossip: join entry %q: port %q is not 1-65535", seed, p)
		}
		host, port = h, n
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return host, port, nil
	}
	if !validHostName(host) {
		return "", 0, fmt.Errorf("gossip: join entry %q: not an IP address or host name", seed)
	}
	return host, port, nil
}

func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// firstError unwraps the multi-error memberlist returns for a single
// address, whose text spans several lines.
func firstError(err error) error {
	var multi interface{ WrappedErrors() []error }
	if errors.As(err, &multi) && len(multi.WrappedErrors()) > 0 {
		return multi.WrappedErrors()[0]
	}
	return err
}
