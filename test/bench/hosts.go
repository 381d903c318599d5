package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/pkg/fsutil"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/logging"
	"github.com/rke2-hanode/rke2-hanode/pkg/node"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// host is one simulated host, run either as an `rke2-hanode run` process
// (through pkg/demo) or as a pkg/node daemon inside this process.
type host struct {
	name, role string
	configPath string
	dir        string

	proc *demo.Node // set when the host is a process

	nd      *node.Node // set when the host runs in this process
	reg     *prometheus.Registry
	cancel  context.CancelFunc
	done    chan struct{}
	started time.Time
	runErr  error // why an in-process daemon stopped by itself
}

// exited reports why an in-process daemon stopped by itself, or nil.
func (h *host) exited() error {
	if h.nd == nil {
		return nil
	}
	select {
	case <-h.done:
		if h.runErr != nil {
			return fmt.Errorf("%s stopped: %w", h.name, h.runErr)
		}
		return fmt.Errorf("%s stopped", h.name)
	default:
		return nil
	}
}

// inProcessOptions shape daemons run inside this process.
type inProcessOptions struct {
	Logger *zap.Logger
	// Service replaces the service manager (nil: the one the config names).
	Service func() installer.ServiceManager
}

// fromDemo wraps the hosts of a demo cluster; inProc says which of them run
// in this process instead of as processes.
func fromDemo(c *demo.Cluster, inProc func(i int, n *demo.Node) bool) []*host {
	hosts := make([]*host, len(c.Nodes))
	for i, n := range c.Nodes {
		h := &host{name: n.Name, role: n.Role, configPath: n.ConfigPath, dir: n.Dir}
		if !inProc(i, n) {
			h.proc = n
		}
		hosts[i] = h
	}
	return hosts
}

// start starts the host: a process, or a daemon in this process.
func (h *host) start(opts inProcessOptions) error {
	if h.proc != nil {
		if err := h.proc.Start(); err != nil {
			return err
		}
		h.started = h.proc.Started()
		return nil
	}
	c, err := config.Load(config.LoadOptions{File: h.configPath, FileRequired: true})
	if err != nil {
		return fmt.Errorf("%s: %w", h.name, err)
	}
	h.reg = prometheus.NewRegistry()
	no := node.Options{Config: c, Logger: opts.Logger.With(zap.String("host", h.name)), Registerer: h.reg}
	if opts.Service != nil {
		no.ServiceManager = opts.Service()
	}
	nd, err := node.New(no)
	if err != nil {
		return fmt.Errorf("%s: %w", h.name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.nd, h.cancel, h.done, h.started = nd, cancel, make(chan struct{}), time.Now()
	go func() {
		defer close(h.done)
		if err := nd.Run(ctx); err != nil {
			h.runErr = err
			opts.Logger.Error("daemon stopped", zap.String("host", h.name), zap.Error(err))
		}
	}()
	return nil
}

// stop ends an in-process daemon (processes are stopped by the demo cluster).
func (h *host) stop() {
	if h.nd == nil || h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(15 * time.Second):
	}
}

func stopAll(hosts []*host) {
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(h.stop)
	}
	wg.Wait()
}

// status is the host's /status document.
func (h *host) status(ctx context.Context) (status.Status, error) {
	if h.proc != nil {
		return h.proc.Status(ctx)
	}
	return h.nd.Status(), nil
}

// phaseTimes is when the host last entered each phase, from its
// rke2_hanode_phase_entered_timestamp_seconds metric.
func (h *host) phaseTimes(ctx context.Context) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	add := func(phase string, v float64) {
		if v > 0 {
			out[phase] = time.Unix(0, int64(v*1e9))
		}
	}
	if h.proc == nil {
		mfs, err := h.reg.Gather()
		if err != nil {
			return nil, err
		}
		for _, mf := range mfs {
			if mf.GetName() != "rke2_hanode_phase_entered_timestamp_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "phase" {
						add(l.GetValue(), m.GetGauge().GetValue())
					}
				}
			}
		}
		return out, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.proc.HTTPAddress+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	const prefix = `rke2_hanode_phase_entered_timestamp_seconds{phase="`
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		phase, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err == nil {
			add(phase, v)
		}
	}
	return out, sc.Err()
}

// waitReady polls every host until all are ready and returns when each
// entered ready (the daemon's own timestamp).
func waitReady(ctx context.Context, hosts []*host, progress func(ready int)) (map[string]time.Time, error) {
	ready := map[string]time.Time{}
	last := -1
	var dead error
	err := demo.WaitFor(ctx, 100*time.Millisecond, func() bool {
		for _, h := range hosts {
			if h.proc != nil && !h.proc.Running() {
				dead = fmt.Errorf("%s exited (see %s)", h.name, h.proc.LogPath)
				return true
			}
			if err := h.exited(); err != nil {
				dead = err
				return true
			}
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, h := range hosts {
			if _, ok := ready[h.name]; ok {
				continue
			}
			wg.Go(func() {
				st, err := h.status(ctx)
				if err == nil && st.Node.Phase == status.PhaseReady {
					mu.Lock()
					ready[h.name] = st.Node.Since
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(ready) != last && progress != nil {
			progress(len(ready))
		}
		last = len(ready)
		return len(ready) == len(hosts)
	})
	if dead != nil {
		return ready, dead
	}
	return ready, err
}

// addDropIn writes a config drop-in for the host, with keys the demo does
// not set.
func addDropIn(h *host, name, body string) error {
	return fsutil.WriteFileAtomic(filepath.Join(h.configPath+".d", name), []byte(body), 0o600)
}

// writeScript writes an executable shell script.
func writeScript(path, body string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755)
}

// daemonLog is a logger for the daemons run in this process, writing to
// dir/daemons.log. The file is left open: daemons may still log while
// they stop, and the process ends soon after.
func daemonLog(dir, level string) (*zap.Logger, error) {
	f, err := os.Create(filepath.Join(dir, "daemons.log"))
	if err != nil {
		return nil, err
	}
	return logging.New(level, "console", f)
}
