package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// etcdMember is one rke2sim server of one etcd run.
type etcdMember struct {
	Role    string  // cluster-init, first joiner, second joiner
	Ready   float64 // process start → /v1-rke2/readyz answers 200, s
	RSSMB   float64 // VmRSS once every member was ready and settle had passed
	PeakMB  float64 // VmHWM at the same moment
	Refused int     // member adds etcd refused this joiner ("unhealthy cluster"), from its log
}

// etcdResult is what the etcd command measured: rke2sim's own cost per
// member, on real etcd, with no simulated delay.
type etcdResult struct {
	Runs   [][]etcdMember
	Settle float64 // s after the last member was ready before RSS was read
}

const etcdToken = "bench-etcd-token"

// runEtcd starts `rke2sim server` processes on ip(0), ip(1), … one after
// the other, each as soon as the previous answered /v1-rke2/readyz, with
// RKE2SIM_START_DELAY and RKE2SIM_JOIN_DELAY at 0: the time measured is
// rke2sim's and etcd's own (first election, learner add, catch-up,
// promotion, and etcd's refusals of a member add).
func runEtcd(ctx context.Context, members, runs int, settle time.Duration, sim, dir string, progress func(string, ...any)) (*etcdResult, error) {
	res := &etcdResult{Settle: settle.Seconds()}
	for run := range runs {
		ms, err := etcdRun(ctx, members, settle, sim, filepath.Join(dir, fmt.Sprintf("etcd-%d", run+1)))
		if err != nil {
			return nil, fmt.Errorf("etcd run %d: %w", run+1, err)
		}
		for _, m := range ms {
			progress("etcd run %d: %s ready in %.2f s, RSS %.1f MB", run+1, m.Role, m.Ready, m.RSSMB)
		}
		res.Runs = append(res.Runs, ms)
	}
	return res, nil
}

func etcdRun(ctx context.Context, members int, settle time.Duration, sim, dir string) ([]etcdMember, error) {
	ip := func(i int) string { return fmt.Sprintf("127.96.0.%d", i+1) }
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // only readiness is read
	}
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			done := make(chan struct{})
			go func() { _ = p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = p.Process.Kill()
				<-done
			}
		}
	}()
	out := make([]etcdMember, members)
	for i := range members {
		hostDir := filepath.Join(dir, fmt.Sprintf("server-%d", i+1))
		if err := os.MkdirAll(hostDir, 0o700); err != nil {
			return nil, err
		}
		cfg := fmt.Sprintf("data-dir: %s\nnode-ip: %s\nnode-name: server-%d\ntoken: %s\n", filepath.Join(hostDir, "data"), ip(i), i+1, etcdToken)
		role := "cluster-init"
		if i > 0 {
			cfg += fmt.Sprintf("server: https://%s:9345\n", ip(0))
			role = map[int]string{1: "first joiner", 2: "second joiner"}[i]
			if role == "" {
				role = fmt.Sprintf("joiner %d", i)
			}
		}
		cfgPath := filepath.Join(hostDir, "config.yaml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		logf, err := os.Create(filepath.Join(hostDir, "rke2sim.log"))
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(sim, "server", "--config", cfgPath)
		cmd.Env = append(os.Environ(), "RKE2SIM_START_DELAY=0s", "RKE2SIM_JOIN_DELAY=0s", "RKE2SIM_LOG_LEVEL=info")
		cmd.Stdout, cmd.Stderr = logf, logf
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			logf.Close()
			return nil, err
		}
		logf.Close()
		procs = append(procs, cmd)
		if err := waitReadyz(ctx, client, ip(i), 2*time.Minute); err != nil {
			return nil, fmt.Errorf("server-%d (%s): %w (log: %s)", i+1, role, err, filepath.Join(hostDir, "rke2sim.log"))
		}
		out[i] = etcdMember{Role: role, Ready: time.Since(t0).Seconds()}
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(settle):
	}
	for i, p := range procs {
		_, rss, hwm, err := procStat(p.Process.Pid)
		if err != nil {
			return nil, err
		}
		out[i].RSSMB, out[i].PeakMB = float64(rss)/1024, float64(hwm)/1024
		out[i].Refused = refusals(filepath.Join(dir, fmt.Sprintf("server-%d", i+1), "rke2sim.log"))
	}
	return out, nil
}

// refusals counts the member adds etcd refused a joiner (its "join refused,
// retrying" lines with "unhealthy cluster"; the serving member logs each
// refusal too, in other words, and is not counted).
func refusals(logPath string) int {
	raw, err := os.ReadFile(logPath)
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.Contains(line, "join refused, retrying") && strings.Contains(line, "unhealthy cluster") {
			n++
		}
	}
	return n
}

func waitReadyz(ctx context.Context, client *http.Client, ip string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+ip+":9345/v1-rke2/readyz", nil)
		if err != nil {
			return err
		}
		req.SetBasicAuth("server", etcdToken)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/v1-rke2/readyz not 200 within %v", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// span is "min–max" of one member's field over every run.
func span(runs [][]etcdMember, i int, field func(etcdMember) float64, format string) string {
	var v []float64
	for _, r := range runs {
		if i < len(r) {
			v = append(v, field(r[i]))
		}
	}
	if len(v) == 0 {
		return "–"
	}
	lo, hi := slices.Min(v), slices.Max(v)
	if fmt.Sprintf(format, lo) == fmt.Sprintf(format, hi) {
		return fmt.Sprintf(format, lo)
	}
	return fmt.Sprintf(format+"–"+format, lo, hi)
}
