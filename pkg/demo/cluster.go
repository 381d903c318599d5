// Package demo runs a cluster of real `rke2-hanode run` processes on
// loopback addresses, each host with its own 127.x address, its own
// directories and rke2sim as its RKE2, the VIP on a loopback address too.
// `rke2-hanode demo` draws it live; the loopback tests drive the same code to
// start, kill and restart hosts. Nothing here needs root.
package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/fsutil"
	"github.com/rke2-hanode/rke2-hanode/pkg/keys"
)

// Options shape a loopback cluster.
type Options struct {
	Servers, Agents int
	// Base is the first host's address; hosts take Base, Base+1, ...
	// The VIP is Base with its last octet 200. Default 127.77.0.11.
	Base string
	// Dir holds every host's folders; empty makes a temporary one that Close removes.
	Dir string
	// Daemon is the rke2-hanode executable; Sim is rke2sim.
	Daemon, Sim string
	// Token is the cluster secret; empty makes a random one.
	Token string
	// AgentToken, when set, is the two-token set-up: servers hold Token
	// and AgentToken (agent-token), agents only AgentToken (as their
	// token). It must belong to Token (claims.Generate makes both).
	AgentToken string
	// Env is added to every daemon's environment (rke2sim's delays, for example).
	Env []string
	// LogLevel of the daemons (default info).
	LogLevel string
	// ClusterName (default "demo").
	ClusterName string
}

// Node is one simulated host.
type Node struct {
	Name, Role, IP string
	Dir            string
	ConfigPath     string
	LogPath        string
	HTTPAddress    string
	RKE2DataDir    string
	RKE2ConfigDir  string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	env     []string
	daemon  string
	started time.Time
}

// Cluster is a set of simulated hosts.
type Cluster struct {
	Opts  Options
	VIP   string
	Nodes []*Node
	// Seeds are the servers' addresses, every host's gossip seeds: the
	// README asks users to list all servers so that a host started while
	// one of them is down still finds the others.
	Seeds   []string
	tempDir bool
}

// New writes every host's config; no process starts yet.
func New(opts Options) (*Cluster, error) {
	if opts.Servers < 1 || opts.Servers%2 == 0 || opts.Servers > 7 {
		return nil, fmt.Errorf("demo: --servers %d: must be odd, 1 to 7", opts.Servers)
	}
	if opts.Agents < 0 || opts.Agents > 200 {
		return nil, fmt.Errorf("demo: --agents %d: must be 0 to 200", opts.Agents)
	}
	if opts.Base == "" {
		opts.Base = "127.77.0.11"
	}
	base := net.ParseIP(opts.Base).To4()
	if base == nil || base[0] != 127 {
		return nil, fmt.Errorf("demo: base address %q must be a 127.x.y.z address", opts.Base)
	}
	if int(base[3])+opts.Servers+opts.Agents > 199 {
		return nil, fmt.Errorf("demo: %d hosts do not fit after %s below the VIP (.200)", opts.Servers+opts.Agents, opts.Base)
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.ClusterName == "" {
		opts.ClusterName = "demo"
	}
	if opts.Token == "" {
		opts.Token = keys.RandomSecret() // as strong as `token generate`'s
	}
	c := &Cluster{Opts: opts}
	if opts.Dir == "" {
		d, err := os.MkdirTemp("", "rke2-hanode-demo-")
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		c.Opts.Dir, c.tempDir = d, true
	}
	vip := net.IPv4(base[0], base[1], base[2], 200)
	c.VIP = vip.String()
	for i := 0; i < opts.Servers; i++ {
		c.Seeds = append(c.Seeds, net.IPv4(base[0], base[1], base[2], base[3]+byte(i)).String())
	}
	for i := 0; i < opts.Servers+opts.Agents; i++ {
		role, name := "server", fmt.Sprintf("server-%d", i+1)
		if i >= opts.Servers {
			role, name = "agent", fmt.Sprintf("agent-%d", i-opts.Servers+1)
		}
		ip := net.IPv4(base[0], base[1], base[2], base[3]+byte(i)).String()
		if _, err := c.AddNode(name, role, ip); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// AddNode writes one more host's config (used to add an agent later, or a
// host with another token).
func (c *Cluster) AddNode(name, role, ip string) (*Node, error) {
	dir := filepath.Join(c.Opts.Dir, name)
	n := &Node{
		Name: name, Role: role, IP: ip, Dir: dir,
		ConfigPath:    filepath.Join(dir, "config.yaml"),
		LogPath:       filepath.Join(dir, "daemon.log"),
		HTTPAddress:   net.JoinHostPort(ip, "9349"),
		RKE2DataDir:   filepath.Join(dir, "rke2"),
		RKE2ConfigDir: filepath.Join(dir, "etc-rancher-rke2"),
		daemon:        c.Opts.Daemon,
		env:           c.Opts.Env,
	}
	cfg := config.Defaults()
	cfg.NodeName = name
	cfg.Role = role
	cfg.Token = c.Opts.Token
	if c.Opts.AgentToken != "" {
		if role == "server" {
			cfg.AgentToken = c.Opts.AgentToken
		} else {
			cfg.Token = c.Opts.AgentToken
		}
	}
	cfg.ClusterName = c.Opts.ClusterName
	if role == "server" {
		cfg.ExpectServers = c.Opts.Servers
	}
	if !(role == "server" && c.Opts.Servers == 1) {
		cfg.Join = append([]string(nil), c.Seeds...)
	}
	cfg.BindAddress = ip
	cfg.AdvertiseAddress = ip
	cfg.HTTPAddress = n.HTTPAddress
	cfg.VIP = c.VIP
	cfg.Interface = "lo"
	cfg.InstallMethod = "none"
	cfg.ServiceManager = "exec"
	cfg.RKE2Bin = c.Opts.Sim
	cfg.RKE2ConfigDir = n.RKE2ConfigDir
	cfg.RKE2DataDir = n.RKE2DataDir
	cfg.DataDir = filepath.Join(dir, "hanode")
	cfg.LogLevel = c.Opts.LogLevel
	data, err := config.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(n.ConfigPath, data, 0o600); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	c.Nodes = append(c.Nodes, n)
	return n, nil
}

// Node returns the host called name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// StartAll starts every host's daemon.
func (c *Cluster) StartAll() error {
	for _, n := range c.Nodes {
		if err := n.Start(); err != nil {
			return err
		}
	}
	return nil
}

// Start starts the host's daemon; its output is appended to LogPath.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("demo: %s is already running", n.Name)
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	cmd := exec.Command(n.daemon, "run", "--config", n.ConfigPath)
	cmd.Env = append(append(cleanEnv(os.Environ()), n.env...), "RKE2SIM_NODE_DIR="+n.Dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("demo: start %s: %w", n.Name, err)
	}
	n.cmd, n.done, n.started = cmd, make(chan struct{}), time.Now()
	done := n.done
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	return nil
}

// cleanEnv drops RKE2_HANODE_* variables of the caller, so every host is
// configured by its own file only.
func cleanEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, config.EnvPrefix) && !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			out = append(out, kv)
		}
	}
	return out
}

// Running reports whether the daemon process is alive.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Started is when the daemon was last started.
func (n *Node) Started() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.started
}

// Kill ends the daemon with SIGKILL, as a crash would, and waits for it.
func (n *Node) Kill() { n.signal(syscall.SIGKILL, 5*time.Second) }

// Stop ends the daemon with SIGTERM (it stops its RKE2 child) and waits up
// to grace before killing it.
func (n *Node) Stop(grace time.Duration) {
	if !n.signal(syscall.SIGTERM, grace) {
		n.signal(syscall.SIGKILL, 5*time.Second)
	}
}

func (n *Node) signal(sig syscall.Signal, wait time.Duration) bool {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return true
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(wait):
		return false
	}
	n.mu.Lock()
	if n.cmd == cmd {
		n.cmd = nil
	}
	n.mu.Unlock()
	return true
}

// SimPIDs lists rke2sim processes that belong to this host (found by its
// data-dir on their command line or environment), so that a crashed
// daemon's RKE2 can be told apart and cleaned up.
func (n *Node) SimPIDs() []int {
	return pidsMentioning(n.Dir)
}

// Close stops every daemon, kills anything left that belongs to the
// cluster, and removes a temporary folder.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Add(1)
		go func(n *Node) { defer wg.Done(); n.Stop(10 * time.Second) }(n)
	}
	wg.Wait()
	for _, pid := range pidsMentioning(c.Opts.Dir) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if c.tempDir {
		os.RemoveAll(c.Opts.Dir)
	}
}

// pidsMentioning finds processes whose command line or environment names dir.
func pidsMentioning(dir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), f))
			if err == nil && strings.Contains(string(b), dir+string(os.PathSeparator)) {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// FindBinaries locates rke2-hanode (this executable) and rke2sim beside it
// or on PATH.
func FindBinaries() (daemon, sim string, err error) {
	daemon, err = os.Executable()
	if err != nil {
		return "", "", fmt.Errorf("demo: %w", err)
	}
	sim = filepath.Join(filepath.Dir(daemon), "rke2sim")
	if _, err := os.Stat(sim); err == nil {
		return daemon, sim, nil
	}
	if p, err := exec.LookPath("rke2sim"); err == nil {
		return daemon, p, nil
	}
	return "", "", errors.New("demo: rke2sim not found beside rke2-hanode or on PATH: run `make build`")
}

// WaitFor polls cond every interval until it is true or ctx ends.
func WaitFor(ctx context.Context, interval time.Duration, cond func() bool) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
