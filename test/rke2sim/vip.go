package rke2sim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// vipStandIn plays kube-vip: it watches the manifests folder, validates the
// kube-vip objects, and while they are valid competes for the VIP.
type vipStandIn struct {
	n        *node
	handlers handlerSet
	cert     tls.Certificate
	applied  *appliedStore
	net      vipNet // nil: the host's (netlink + ARP)
}

func (v *vipStandIn) run(ctx context.Context) {
	dir := filepath.Join(v.n.cfg.DataDir, "server", "manifests")
	check := kubeVIPCheck{
		version: v.n.set.KubeVIPVersion,
		image:   v.n.set.KubeVIPImage,
		ifaceExists: func(name string) bool {
			_, err := net.InterfaceByName(name)
			return err == nil
		},
	}
	log := v.n.log.Named("kube-vip")
	var (
		lastKey string
		running *vipSpec
		stop    = func() {}
	)
	defer func() { stop() }()
	for {
		parseProblems, err := v.applied.applyDir(dir, v.n.cfg.NodeName, v.n.now())
		v.n.pullApplied(ctx, v.applied)
		var (
			spec     vipSpec
			found    bool
			problems []string
		)
		if err == nil {
			spec, found, problems = check.validate(v.applied.docs())
		}
		key := fmt.Sprint(err, parseProblems, found, spec, problems)
		if key != lastKey {
			lastKey = key
			for _, p := range parseProblems {
				log.Error("manifest does not parse: skipped", zap.String("problem", p))
			}
			switch {
			case err != nil:
				log.Error("cannot read manifests", zap.String("dir", dir), zap.Error(err))
			case !found:
				log.Info("no kube-vip DaemonSet applied to the cluster: no VIP", zap.String("dir", dir))
			case len(problems) > 0:
				for _, p := range problems {
					log.Error("kube-vip manifest: " + p)
				}
				log.Error("kube-vip manifest invalid: the VIP stays down", zap.Int("problems", len(problems)))
			default:
				log.Info("kube-vip manifest valid", zap.String("vip", spec.Address.String()), zap.String("interface", spec.Interface))
			}
			valid := err == nil && found && len(problems) == 0
			if running != nil && (!valid || !running.equal(spec)) {
				stop()
				stop, running = func() {}, nil
			}
			if valid && running == nil {
				running = &spec
				cctx, cancel := context.WithCancel(ctx)
				var wg sync.WaitGroup
				wg.Add(1)
				go func(spec vipSpec) {
					defer wg.Done()
					v.compete(cctx, spec, log)
				}(spec)
				stop = func() { cancel(); wg.Wait() }
			}
		}
		if sleep(ctx, v.n.set.ManifestPoll) != nil {
			return
		}
	}
}

func (v *vipStandIn) timings(spec vipSpec) (retry, lease time.Duration) {
	retry, lease = spec.RetryPeriod, spec.LeaseDuration
	if v.n.set.VIPRetry > 0 {
		retry = v.n.set.VIPRetry
	}
	if v.n.set.VIPLease > 0 {
		lease = v.n.set.VIPLease
	}
	return retry, lease
}

func (v *vipStandIn) compete(ctx context.Context, spec vipSpec, log *zap.Logger) {
	log = log.With(zap.String("vip", spec.Address.String()), zap.String("interface", spec.Interface))
	if spec.Interface == "lo" {
		v.competeLoopback(ctx, spec, log)
		return
	}
	nw := v.net
	if nw == nil {
		nw = hostNet{}
	}
	v.competeARP(ctx, spec, nw, log)
}

// competeLoopback holds the VIP by binding VIP:supervisor-port: only one
// process can, so the VIP moves when its holder dies.
func (v *vipStandIn) competeLoopback(ctx context.Context, spec vipSpec, log *zap.Logger) {
	retry, _ := v.timings(spec)
	addr := net.JoinHostPort(spec.Address.String(), strconv.Itoa(v.n.set.SupervisorPort))
	var lastErr string
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			log.Info("VIP acquired", zap.String("listen", addr))
			v.n.setVIPHeld(spec.Address.String())
			var keep *os.File // a copy of the bound socket for the outliving holder
			if v.n.set.KubeVIPOutlives {
				if tl, ok := ln.(*net.TCPListener); ok {
					keep, _ = tl.File()
				}
			}
			v.serveVIP(ctx, spec, ln, log)
			if keep != nil {
				if v.n.stoppingProcess() {
					if fl, err := net.FileListener(keep); err == nil {
						v.n.outlive("lo", spec.Interface, spec.Address, retry, fl)
						_ = fl.Close()
					}
				}
				_ = keep.Close()
			}
			v.n.setVIPHeld("")
			log.Info("VIP released")
			return
		}
		if !errors.Is(err, syscall.EADDRINUSE) && err.Error() != lastErr {
			log.Warn("cannot bind VIP", zap.Error(err))
		}
		lastErr = err.Error()
		if sleep(ctx, retry) != nil {
			return
		}
	}
}

// serveVIP serves the node's handlers (same certificate) on the VIP until
// ctx ends: the supervisor on ln, the API port when it can be bound.
func (v *vipStandIn) serveVIP(ctx context.Context, spec vipSpec, ln net.Listener, log *zap.Logger) {
	var wg sync.WaitGroup
	apiAddr := net.JoinHostPort(spec.Address.String(), strconv.Itoa(v.n.set.APIPort))
	if apiLn, err := net.Listen("tcp", apiAddr); err == nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveTLS(ctx, apiLn, v.handlers.api, v.n.serverTLS(v.cert), log)
		}()
	} else {
		log.Warn("cannot serve the API port on the VIP", zap.Error(err))
	}
	serveTLS(ctx, ln, v.handlers.supervisor, v.n.serverTLS(v.cert), log)
	wg.Wait()
}

// vipNet is what ARP mode needs from the host.
type vipNet interface {
	HasAddr(ifname string, ip net.IP) (bool, error)
	AddAddr(ifname string, ip net.IP) error
	DelAddr(ifname string, ip net.IP) error
	// Announce sends gratuitous ARP for ip from ifname.
	Announce(ifname string, ip net.IP) error
}

// competeARP: a simple lease over the network. A server claims the VIP once
// it has not answered /ping for the lease duration (plus jitter), adds it
// (/32) and announces it by gratuitous ARP, again every 3 s while it holds
// it (kube-vip's default vip_arpRate). Every retry period a holder asks
// the other members (on their node addresses) whether they hold it too; of
// two live holders the one with the lower node name keeps it. A dead
// process holds nothing, even if its address is still on its interface.
func (v *vipStandIn) competeARP(ctx context.Context, spec vipSpec, nw vipNet, log *zap.Logger) {
	retry, lease := v.timings(spec)
	jitter := func() time.Duration { return time.Duration(rand.Int64N(int64(retry) + 1)) }
	ifname, ip := spec.Interface, spec.Address
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(v.n.set.SupervisorPort))
	var (
		holding  bool
		serveEnd = func() {}
	)
	release := func(why string) {
		v.n.setVIPHeld("")
		serveEnd()
		serveEnd = func() {}
		if err := nw.DelAddr(ifname, ip); err != nil {
			log.Warn("cannot remove VIP", zap.Error(err))
		}
		holding = false
		log.Info("VIP released", zap.String("why", why))
	}
	defer func() {
		if holding && v.n.set.KubeVIPOutlives && v.n.stoppingProcess() {
			v.n.setVIPHeld("")
			serveEnd()
			v.n.outlive("arp", ifname, ip, retry, nil)
			return
		}
		if holding {
			release("stopping")
		}
	}()
	// A fresh start waits one retry period (plus jitter) before its first claim.
	lastSeen := time.Now().Add(-lease).Add(retry)
	claimAfter := lease + jitter()
	var announced time.Time
	announce := func() {
		announced = time.Now()
		if err := nw.Announce(ifname, ip); err != nil {
			log.Warn("gratuitous ARP failed", zap.Error(err))
		}
	}
	for {
		if !holding {
			if has, err := nw.HasAddr(ifname, ip); err == nil && has {
				log.Info("VIP already on the interface: taking it as ours")
				holding = true
			} else if pingVIP(ctx, addr) {
				lastSeen = time.Now()
			} else if time.Since(lastSeen) >= claimAfter {
				if err := nw.AddAddr(ifname, ip); err != nil {
					log.Warn("cannot add VIP", zap.Error(err))
				} else {
					holding = true
				}
			}
			if holding {
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					log.Warn("cannot serve on VIP", zap.Error(err))
					release("listen failed")
				} else {
					sctx, cancel := context.WithCancel(ctx)
					var wg sync.WaitGroup
					wg.Add(1)
					go func() {
						defer wg.Done()
						v.serveVIP(sctx, spec, ln, log)
					}()
					serveEnd = func() { cancel(); wg.Wait() }
					v.n.setVIPHeld(ip.String())
					announce()
					log.Info("VIP acquired", zap.String("listen", addr))
				}
				claimAfter = lease + jitter()
			}
		} else if other := v.n.otherVIPHolder(ctx, ip); other != "" {
			if other < v.n.cfg.NodeName {
				release("member " + other + " holds it too and has the lower name")
				lastSeen = time.Now()
			} else {
				log.Warn("member holds the VIP too: keeping it (lower name) and announcing again", zap.String("other", other))
				announce()
			}
		} else if time.Since(announced) >= arpRate {
			// kube-vip's leader broadcasts gratuitous ARP on a timer
			// (vip_arpRate, 3 s by default), so that neighbours whose cache
			// still names a previous holder's MAC learn the new one.
			announce()
		}
		if sleep(ctx, retry) != nil {
			return
		}
	}
}

// arpRate is kube-vip's default vip_arpRate: how often its leader repeats
// the gratuitous ARP while it holds the VIP (the manifests the product
// writes leave it unset).
const arpRate = 3 * time.Second

// pingVIP asks the VIP's supervisor for pong (any certificate: this only
// checks that someone holds it).
func pingVIP(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // liveness only
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/ping", nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	return resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "pong"
}

func (n *node) setVIPHeld(ip string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.vipHeld = ip
}

func (n *node) heldVIP() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.vipHeld
}

type vipStatus struct {
	Node string `json:"node"`
	VIP  string `json:"vip"` // the VIP this member holds, "" for none
}

// otherVIPHolder asks every other member whether it holds ip; it returns
// the name of one that does, or "".
func (n *node) otherVIPHolder(ctx context.Context, ip net.IP) string {
	for _, m := range n.members() {
		if m.Name == n.cfg.NodeName {
			continue
		}
		var st vipStatus
		if err := n.memberCall(ctx, m, http.MethodGet, "/v1-rke2/sim/vip", nil, &st); err == nil && st.VIP == ip.String() {
			return m.Name
		}
	}
	return ""
}
