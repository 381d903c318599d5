package rke2sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Options are what Main needs from the process; tests pass their own.
type Options struct {
	Args   []string            // the arguments after the program name
	Getenv func(string) string // nil: os.Getenv
	Stdout io.Writer           // nil: os.Stdout
	Stderr io.Writer           // nil: os.Stderr (the log)
	Now    func() time.Time    // nil: time.Now
	// Executable is the sim binary, which runs the kube-vip stand-in that
	// outlives its server (RKE2SIM_KUBEVIP_OUTLIVES); "": it cannot.
	Executable string
}

// rejectedError is a refusal the real RKE2 would exit on: it is logged,
// appended to state.json's rejections, and makes the process exit non-zero.
type rejectedError struct{ reason string }

func (e *rejectedError) Error() string { return e.reason }

func reject(format string, args ...any) error {
	return &rejectedError{reason: fmt.Sprintf(format, args...)}
}

const usage = `usage: rke2 server|agent [--config FILE]
       rke2 server --cluster-reset [--cluster-reset-restore-path=SNAPSHOT] [--config FILE]
       rke2 etcd-snapshot save [--config FILE] [--name NAME]
       rke2 --version
(rke2sim: a test stand-in for the rke2 binary)
`

// Main runs the sim as the rke2 binary would run and returns the exit code:
// 0 after a clean stop (ctx cancelled), 1 on a refusal or error, 2 on misuse.
func Main(ctx context.Context, o Options) int {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if len(o.Args) > 0 && o.Args[0] == outliveCommand {
		return runOutlive(o.Args[1:])
	}
	set, err := LoadSettings(o.Getenv)
	if err != nil {
		fmt.Fprintln(o.Stderr, "rke2sim:", err)
		return 2
	}
	set.Executable = o.Executable
	if len(o.Args) == 0 {
		fmt.Fprint(o.Stderr, usage)
		return 2
	}
	switch o.Args[0] {
	case "--version", "-v", "version":
		fmt.Fprintf(o.Stdout, "rke2 version %s (%s)\ngo version %s\n", set.Version, versionCommit(set.Version), runtime.Version())
		return 0
	case "--help", "-h", "help":
		fmt.Fprint(o.Stdout, usage)
		return 0
	case "server", "agent":
	case "etcd-snapshot":
		if len(o.Args) < 2 || o.Args[1] != "save" {
			fmt.Fprintf(o.Stderr, "rke2sim: etcd-snapshot: want the save subcommand\n%s", usage)
			return 2
		}
	default:
		fmt.Fprintf(o.Stderr, "rke2sim: unknown command %q\n%s", o.Args[0], usage)
		return 2
	}
	role, rest := o.Args[0], o.Args[1:]
	if role == "etcd-snapshot" {
		rest = rest[1:]
	}
	fl, err := parseFlags(rest)
	if err == nil && role != "server" && (fl.clusterReset || fl.restorePath != "") {
		err = errors.New("flag provided but not defined: --cluster-reset")
	}
	if err == nil && role != "etcd-snapshot" && fl.name != "" {
		err = errors.New("flag provided but not defined: --name")
	}
	if err == nil && fl.name != "" && !validSnapshotName(fl.name) {
		err = fmt.Errorf("--name %q: a snapshot's base name is letters, digits, '.', '-' and '_'", fl.name)
	}
	if err == nil && fl.restorePath != "" && !fl.clusterReset {
		err = errors.New("--cluster-reset-restore-path needs --cluster-reset")
	}
	configPath, explicit := fl.config, fl.explicit
	if err != nil {
		fmt.Fprintf(o.Stderr, "rke2sim %s: %v\n%s", role, err, usage)
		return 2
	}
	log, err := newLogger(logLevel(o.Getenv), o.Stderr)
	if err != nil {
		fmt.Fprintln(o.Stderr, "rke2sim:", err)
		return 2
	}
	log = log.Named("rke2sim").With(zap.String("role", role))
	configPath, explicit, refusal := unitConfigPath(o.Getenv, role, configPath, explicit)
	cfg, err := LoadConfig(configPath, explicit)
	if err != nil {
		log.Error("cannot read config", zap.Error(err))
		return 1
	}
	if v := o.Getenv("RKE2SIM_NODE_PASSWORD_FILE"); v != "" {
		cfg.NodePasswordFile = v
	}
	log.Info("starting", zap.String("version", set.Version), zap.Strings("config", cfg.Files),
		zap.String("data-dir", cfg.DataDir), zap.String("node-ip", cfg.NodeIP), zap.String("node-name", cfg.NodeName))
	n := &node{cfg: cfg, set: set, log: log, now: o.Now, notifySocket: o.Getenv("NOTIFY_SOCKET"),
		clusterReset: fl.clusterReset, restorePath: fl.restorePath, snapshotName: fl.name}
	if role == "etcd-snapshot" {
		if err := n.snapshotSave(ctx, o.Stdout); err != nil {
			log.Error("etcd-snapshot save failed", zap.Error(err))
			return 1
		}
		return 0
	}
	if refusal != "" {
		err = reject("%s", refusal)
	} else if role == "server" {
		err = n.runServer(ctx)
	} else {
		err = n.runAgent(ctx)
	}
	var rej *rejectedError
	switch {
	case err == nil, ctx.Err() != nil && !errors.As(err, &rej):
		log.Info("stopped")
		return 0
	case errors.As(err, &rej):
		log.Error("refused: exiting", zap.String("reason", rej.reason))
		if rerr := n.recordRejection(rej.reason); rerr != nil {
			log.Error("cannot record rejection", zap.Error(rerr))
		}
		return 1
	default:
		log.Error("fatal", zap.Error(err))
		return 1
	}
}

// underSystemd says whether a unit started this process: systemd sets
// INVOCATION_ID and (Type=notify) NOTIFY_SOCKET, and is the parent.
// RKE2SIM_UNDER_SYSTEMD=1 says so for tests.
func underSystemd(getenv func(string) string) bool {
	if getenv("RKE2SIM_UNDER_SYSTEMD") == "1" {
		return true
	}
	return getenv("INVOCATION_ID") != "" && getenv("NOTIFY_SOCKET") != "" && os.Getppid() == 1
}

// unitConfigPath applies RKE2's choice of config file: --config, else
// RKE2_CONFIG_FILE, else the default. Under systemd the real units run
// `rke2 server|agent` without --config, so a --config there is refused (the
// file it names is one RKE2 would never read) and the unit's file is read
// instead, to find the data-dir the refusal is recorded in.
func unitConfigPath(getenv func(string) string, role, path string, explicit bool) (string, bool, string) {
	unitPath, fromEnv := DefaultConfigPath, false
	if v := getenv("RKE2_CONFIG_FILE"); v != "" {
		unitPath, fromEnv = v, true
	}
	if !explicit {
		return unitPath, fromEnv, ""
	}
	if !underSystemd(getenv) || path == unitPath {
		return path, true, ""
	}
	return unitPath, fromEnv, fmt.Sprintf("--config %s: the rke2-%s unit runs `rke2 %s` without --config, so under systemd RKE2 reads only %s "+
		"(or the RKE2_CONFIG_FILE its environment files set); write the config there or set RKE2_CONFIG_FILE in /etc/default/rke2-%s",
		path, role, role, unitPath, role)
}

func logLevel(getenv func(string) string) string {
	if v := getenv("RKE2SIM_LOG_LEVEL"); v != "" {
		return v
	}
	return "info"
}

// cliFlags are the flags the sim defines.
type cliFlags struct {
	config       string
	explicit     bool
	clusterReset bool
	restorePath  string
	name         string // etcd-snapshot save --name: the snapshot's base name
}

// parseFlags accepts --config FILE, --config=FILE, -c FILE, --cluster-reset
// and --cluster-reset-restore-path[=]SNAPSHOT. Any other flag fails, as real
// rke2 fails on a flag it does not define.
func parseFlags(args []string) (cliFlags, error) {
	f := cliFlags{config: DefaultConfigPath}
	value := func(i *int, name string) (string, error) {
		if *i+1 >= len(args) {
			return "", fmt.Errorf("flag needs an argument: %s", name)
		}
		*i++
		return args[*i], nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		var err error
		switch {
		case a == "--config" || a == "-c":
			f.config, err = value(&i, a)
			f.explicit = true
		case strings.HasPrefix(a, "--config="):
			f.config, f.explicit = strings.TrimPrefix(a, "--config="), true
		case a == "--cluster-reset":
			f.clusterReset = true
		case a == "--cluster-reset-restore-path":
			f.restorePath, err = value(&i, a)
		case strings.HasPrefix(a, "--cluster-reset-restore-path="):
			f.restorePath = strings.TrimPrefix(a, "--cluster-reset-restore-path=")
		case a == "--name":
			f.name, err = value(&i, a)
		case strings.HasPrefix(a, "--name="):
			f.name = strings.TrimPrefix(a, "--name=")
		default:
			return cliFlags{}, fmt.Errorf("flag provided but not defined: %s", a)
		}
		if err != nil {
			return cliFlags{}, err
		}
	}
	if f.config == "" {
		return cliFlags{}, errors.New("--config: empty path")
	}
	return f, nil
}

// recordRejection appends to state.json's rejections (they survive restarts).
func (n *node) recordRejection(reason string) error {
	return n.updateState(func(st *Evidence) {
		st.Rejections = append(st.Rejections, Rejection{At: stamp(n.now()), Reason: reason})
	})
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
