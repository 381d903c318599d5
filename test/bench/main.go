// Command bench measures rke2-hanode: time-to-cluster against the critical
// path on a loopback cluster with rke2sim, gossip and election at scale, one
// daemon's footprint, many agents waiting for the VIP, and rke2sim's own
// cost on real etcd, a server's death healed, and a rolling upgrade against
// its critical path. docs/bench.sh runs every part and writes docs/BENCHMARKS.md with the report command.
//
//	bench ttc -servers 3 -agents 20 -out ttc-3-20.json
//	bench scale -members 10,100,500 -out scale.json
//	bench footprint -members 50 -out footprint.json
//	bench vipwait -agents 200 -out vipwait.json
//	bench etcd -members 3 -runs 3 -out etcd.json
//	bench heal -removal 10s -join 5s -out heal.json
//	bench upgrade -servers 3 -agents 20 -out upgrade.json
//	bench report -dir RESULTS -out docs/BENCHMARKS.md
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench ttc|scale|footprint|vipwait|etcd|heal|upgrade|report [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func progress(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func run(ctx context.Context, cmd string, args []string) error {
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	out := fs.String("out", "", "write the result as JSON to this file")
	bin := fs.String("bin", "bin", "folder with rke2-hanode and rke2sim")
	work := fs.String("work", "", "scratch folder (default: a temporary one, removed)")
	var result any
	withWork := func() (string, func(), error) {
		if *work != "" {
			return *work, func() {}, os.MkdirAll(*work, 0o700)
		}
		d, err := os.MkdirTemp("", "hanode-bench-")
		return d, func() { os.RemoveAll(d) }, err
	}
	switch cmd {
	case "ttc":
		var o ttcOptions
		fs.IntVar(&o.Servers, "servers", 3, "servers")
		fs.IntVar(&o.Agents, "agents", 20, "agents")
		fs.BoolVar(&o.InProcess, "in-process", false, "run the daemons inside this process instead of as processes")
		fs.StringVar(&o.Base, "base", "127.91.0.11", "first host address")
		fs.DurationVar(&o.Install, "install", 2*time.Second, "I: the install script's duration")
		fs.DurationVar(&o.Start, "start", 4*time.Second, "S: the bootstrap server's start")
		fs.DurationVar(&o.Join, "join", 5*time.Second, "J: a server's join (RKE2SIM_JOIN_DELAY; etcd refuses a member add until every voter has been connected for 5 s, so a J below 5 s would not be what the joins take)")
		fs.DurationVar(&o.Agent, "agent", 2*time.Second, "A: an agent's start")
		fs.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "give up after")
		fs.Parse(args)
		dir, done, err := withWork()
		if err != nil {
			return err
		}
		defer done()
		o.Dir = filepath.Join(dir, fmt.Sprintf("ttc-%d-%d", o.Servers, o.Agents))
		o.Daemon, o.Sim, err = binaries(*bin)
		if err != nil {
			return err
		}
		if result, err = runTTC(ctx, o, progress); err != nil {
			return err
		}
	case "scale":
		sizes := fs.String("members", "10,100,500", "cluster sizes")
		window := fs.Duration("window", 15*time.Second, "steady-state measuring window")
		stagger := fs.Duration("stagger", 20*time.Millisecond, "pause between agent starts")
		convergeTimeout := fs.Duration("converge-timeout", 3*time.Minute, "stop waiting for gossip to converge after")
		lightAgents := fs.Bool("light-agents", true, "agents are bare gossip members instead of whole daemons")
		fs.Parse(args)
		dir, done, err := withWork()
		if err != nil {
			return err
		}
		defer done()
		var rs []*scaleResult
		for _, f := range strings.Split(*sizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 3 {
				return fmt.Errorf("-members %q: want sizes of 3 or more", *sizes)
			}
			r, err := runScale(ctx, n, *window, *stagger, *convergeTimeout, *lightAgents, filepath.Join(dir, fmt.Sprintf("scale-%d", n)), progress)
			if err != nil {
				return err
			}
			rs = append(rs, r)
		}
		result = rs
	case "footprint":
		members := fs.Int("members", 50, "cluster size")
		window := fs.Duration("window", time.Minute, "measuring window")
		fs.Parse(args)
		dir, done, err := withWork()
		if err != nil {
			return err
		}
		defer done()
		daemon, sim, err := binaries(*bin)
		if err != nil {
			return err
		}
		if result, err = runFootprint(ctx, *members, *window, daemon, sim, filepath.Join(dir, "footprint"), progress); err != nil {
			return err
		}
	case "etcd":
		members := fs.Int("members", 3, "rke2sim servers, started one after the other")
		runs := fs.Int("runs", 3, "repeat the whole start this often")
		settle := fs.Duration("settle", 10*time.Second, "after the last member is ready, wait this long before reading RSS")
		fs.Parse(args)
		dir, done, err := withWork()
		if err != nil {
			return err
		}
		defer done()
		_, sim, err := binaries(*bin)
		if err != nil {
			return err
		}
		if result, err = runEtcd(ctx, *members, *runs, *settle, sim, filepath.Join(dir, "etcd"), progress); err != nil {
			return err
		}
	case "vipwait":
		agents := fs.Int("agents", 200, "waiting agents")
		ups := fs.String("up", "10s,60s", "when the VIP starts answering, for each run")
		fs.Parse(args)
		var rs []*vipWaitResult
		for _, f := range strings.Split(*ups, ",") {
			up, err := time.ParseDuration(strings.TrimSpace(f))
			if err != nil {
				return fmt.Errorf("-up %q: %w", *ups, err)
			}
			r, err := runVIPWait(ctx, *agents, up, progress)
			if err != nil {
				return err
			}
			rs = append(rs, r)
		}
		result = rs
	case "heal":
		var o healOptions
		fs.StringVar(&o.Base, "base", "127.97.0.11", "first host address (ends in .11)")
		fs.DurationVar(&o.Removal, "removal", 10*time.Second, "server-removal-timeout")
		fs.DurationVar(&o.Join, "join", 5*time.Second, "J: a server's join (RKE2SIM_JOIN_DELAY)")
		fs.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "give up after")
		fs.Parse(args)
		if !strings.HasSuffix(o.Base, ".11") {
			return fmt.Errorf("-base %q: must end in .11 (the standby takes .14)", o.Base)
		}
		dir, done, err := withWork()
		if err != nil {
			return err
		}
		defer done()
		o.Dir = filepath.Join(dir, "heal")
		o.Daemon, o.Sim, err = binaries(*bin)
		if err != nil {
			return err
		}
		if result, err = runHeal(ctx, o, progress); err != nil {
			return err
		}
	case "upgrade":
		var o upgradeOptions
		fs.IntVar(&o.Servers, "servers", 3, "servers")
		fs.IntVar(&o.Agents, "agents", 20, "agents")
		fs.StringVar(&o.Base, "base", "127.98.0.11", "first host address")
		fs.DurationVar(&o.Start, "start", 2*time.Second, "S: a server's RKE2 restart (RKE2SIM_START_DELAY: a restarted server is ready that long after its start, once etcd has quorum)")
		fs.DurationVar(&o.Agent, "agent", 2*time.Second, "A: an agent's RKE2 restart (RKE2SIM_AGENT_DELAY)")
		fs.DurationVar(&o.Join, "join", 5*time.Second, "J: a server's join while the cluster forms (RKE2SIM_JOIN_DELAY; not on the roll's critical path)")
		fs.StringVar(&o.Batch, "batch", "10%", "upgrade-agents-max-unavailable")
		fs.StringVar(&o.From, "from", "v1.35.2+rke2r1", "the version the cluster forms at")
		fs.StringVar(&o.To, "to", "v1.36.1+rke2r1", "the version rolled out")
		fs.StringVar(&o.ArtifactsScript, "artifacts-script", "test/rke2sim/make-artifacts.sh", "rke2sim's make-artifacts.sh")
		fs.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "give up after")
		fs.Parse(args)
		dir, done, err := withWork()
		if err != nil {
			return err
		}
		defer done()
		o.Dir = filepath.Join(dir, fmt.Sprintf("upgrade-%d-%d", o.Servers, o.Agents))
		if o.ArtifactsScript, err = filepath.Abs(o.ArtifactsScript); err != nil {
			return err
		}
		o.Daemon, o.Sim, err = binaries(*bin)
		if err != nil {
			return err
		}
		if result, err = runUpgrade(ctx, o, progress); err != nil {
			return err
		}
	case "report":
		dir := fs.String("dir", "", "folder with the results of the other commands")
		fs.Parse(args)
		if *out == "" {
			writeReport(os.Stdout, loadInput(*dir))
			return nil
		}
		var b strings.Builder
		writeReport(&b, loadInput(*dir))
		return os.WriteFile(*out, []byte(b.String()), 0o644)
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
	data, err := json.MarshalIndent(result, "", "  ")
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = os.Stdout.Write(append(data, '\n'))
		return err
	}
	return os.WriteFile(*out, append(data, '\n'), 0o644)
}

func binaries(dir string) (daemon, sim string, err error) {
	daemon, err = filepath.Abs(filepath.Join(dir, "rke2-hanode"))
	if err != nil {
		return "", "", err
	}
	sim, err = filepath.Abs(filepath.Join(dir, "rke2sim"))
	if err != nil {
		return "", "", err
	}
	for _, p := range []string{daemon, sim} {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("%w: run `make build` first", err)
		}
	}
	return daemon, sim, nil
}
