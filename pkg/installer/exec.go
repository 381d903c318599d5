package installer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// ExecOptions configures the exec service manager.
type ExecOptions struct {
	// RKE2Bin is the rke2 executable (required).
	RKE2Bin string
	// ConfigFile is passed as --config when set.
	ConfigFile string
	// Args are added after `server|agent [--config FILE]`.
	Args []string
	// Env is added to the child's environment (after NOTIFY_SOCKET, which
	// it cannot override).
	Env []string
	// LogFile receives the child's output, appended; empty sends it to the
	// log, one entry per line.
	LogFile string
	// RestartDelay is the wait before a child that died is started again,
	// doubled after each death that came before READY=1, up to
	// MaxRestartDelay (default 30s; set it to RestartDelay for the units'
	// plain Restart=always, RestartSec=5s).
	RestartDelay    time.Duration
	MaxRestartDelay time.Duration
	// Jitter spreads restart delays; nil adds up to 50% at random.
	Jitter func(time.Duration) time.Duration
	// StopGrace is how long a child has between SIGTERM and SIGKILL.
	StopGrace time.Duration
	Logger    *zap.Logger
}

// ExecManager runs `rke2 server|agent` as a supervised child process, for
// hosts (and tests, and the demo) without systemd. Each child gets a
// NOTIFY_SOCKET of its own, so "active" means READY=1 exactly as under the
// Type=notify units; like NotifyAccess=main, only the child's own process
// may send it. Close stops every child.
type ExecManager struct {
	opts ExecOptions
	log  *zap.Logger

	mu       sync.Mutex
	children map[Role]*supervisor
}

var _ ServiceManager = (*ExecManager)(nil)

// NewExecManager returns an exec service manager; nothing runs until Start.
func NewExecManager(opts ExecOptions) (*ExecManager, error) {
	if opts.RKE2Bin == "" {
		return nil, errors.New("installer: exec service manager: rke2-bin is empty")
	}
	if opts.RestartDelay <= 0 {
		opts.RestartDelay = 5 * time.Second
	}
	if opts.MaxRestartDelay <= 0 {
		opts.MaxRestartDelay = 30 * time.Second
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &ExecManager{
		opts:     opts,
		log:      opts.Logger.Named("installer").With(zap.String("service-manager", "exec")),
		children: map[Role]*supervisor{},
	}, nil
}

// ExecStatus is what the exec manager knows about a role's child.
type ExecStatus struct {
	PID      int
	Ready    bool
	Restarts int
	// LastExit is how the last child ended ("" while the first one runs).
	LastExit string
	// Status is the child's last STATUS= notification.
	Status string
}

// Status reports on role's child; ok is false when it was never started or
// has been stopped.
func (m *ExecManager) Status(role Role) (st ExecStatus, ok bool) {
	s := m.child(role)
	if s == nil {
		return ExecStatus{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status, true
}

func (m *ExecManager) child(role Role) *supervisor {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.children[role]
}

// Start runs the child for role unless it already runs. It returns once the
// process has started (an executable that cannot start is an error), not
// when it is ready.
func (m *ExecManager) Start(ctx context.Context, role Role) error {
	if err := role.valid(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.children[role]; s != nil && !s.isEnded() {
		return nil
	}
	for other, s := range m.children {
		if other != role && !s.isEnded() {
			// The units' ExecCondition refuses the same.
			return fmt.Errorf("installer: start rke2 %s: rke2 %s is running; stop it first", role, other)
		}
	}
	s, err := m.newSupervisor(role)
	if err != nil {
		return err
	}
	started := make(chan error, 1)
	go s.run(started)
	select {
	case err = <-started:
	case <-ctx.Done():
		s.stopOnce.Do(func() { close(s.stop) })
		<-s.done
		return fmt.Errorf("installer: start rke2 %s: %w", role, ctx.Err())
	}
	if err != nil {
		<-s.done
		return fmt.Errorf("installer: start rke2 %s: %w", role, err)
	}
	m.children[role] = s
	return nil
}

// WaitActive waits for READY=1 from role's child.
func (m *ExecManager) WaitActive(ctx context.Context, role Role) error {
	s := m.child(role)
	if s == nil {
		return fmt.Errorf("installer: rke2 %s is not started", role)
	}
	for {
		s.mu.Lock()
		st, ended, changed := s.status, s.ended, s.changed
		s.mu.Unlock()
		if st.Ready {
			return nil
		}
		if ended {
			return fmt.Errorf("installer: rke2 %s was stopped before it was ready", role)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("installer: rke2 %s not ready: %w (pid %d, %d restarts, last exit %q, status %q); last output: %s",
				role, ctx.Err(), st.PID, st.Restarts, st.LastExit, st.Status, strings.Join(s.out.last(), " | "))
		}
	}
}

// Active reports whether role's child has sent READY=1.
func (m *ExecManager) Active(ctx context.Context, role Role) (bool, error) {
	st, _ := m.Status(role)
	return st.Ready, nil
}

// Stop ends role's child: SIGTERM to its process group, SIGKILL after
// StopGrace. It waits for the child's end or ctx.
func (m *ExecManager) Stop(ctx context.Context, role Role) error {
	s := m.child(role)
	if s == nil {
		return nil
	}
	s.stopOnce.Do(func() { close(s.stop) })
	select {
	case <-s.done:
	case <-ctx.Done():
		return fmt.Errorf("installer: stop rke2 %s: %w", role, ctx.Err())
	}
	m.mu.Lock()
	if m.children[role] == s {
		delete(m.children, role)
	}
	m.mu.Unlock()
	return nil
}

// Close stops every child and waits for them.
func (m *ExecManager) Close() error {
	m.mu.Lock()
	roles := make([]Role, 0, len(m.children))
	for r := range m.children {
		roles = append(roles, r)
	}
	m.mu.Unlock()
	var errs []error
	for _, r := range roles {
		errs = append(errs, m.Stop(context.Background(), r))
	}
	return errors.Join(errs...)
}

// supervisor owns one role's child, its notify socket and its output.
type supervisor struct {
	m        *ExecManager
	role     Role
	log      *zap.Logger
	dir      string
	sockPath string
	sock     *net.UnixConn
	logFile  *os.File
	out      *tail
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	mu      sync.Mutex
	status  ExecStatus
	ended   bool
	changed chan struct{}
}

func (m *ExecManager) newSupervisor(role Role) (*supervisor, error) {
	dir, err := os.MkdirTemp("", "rke2-hanode-notify-") // mode 0700
	if err != nil {
		return nil, fmt.Errorf("installer: notify socket folder: %w", err)
	}
	s := &supervisor{
		m: m, role: role, dir: dir,
		log:      m.log.With(zap.String("role", string(role))),
		sockPath: filepath.Join(dir, "notify.sock"),
		out:      newTail(20),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		changed:  make(chan struct{}),
	}
	fail := func(err error) (*supervisor, error) {
		s.cleanup()
		return nil, fmt.Errorf("installer: start rke2 %s: %w", role, err)
	}
	if s.sock, err = listenNotify(s.sockPath); err != nil {
		return fail(err)
	}
	if m.opts.LogFile != "" {
		if err := os.MkdirAll(filepath.Dir(m.opts.LogFile), 0o700); err != nil {
			return fail(err)
		}
		if s.logFile, err = os.OpenFile(m.opts.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
			return fail(err)
		}
	}
	return s, nil
}

// listenNotify opens a datagram socket that reports each sender's
// credentials, so READY=1 can be taken from the main process only.
func listenNotify(path string) (*net.UnixConn, error) {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	raw, err := conn.SyscallConn()
	if err == nil {
		ctlErr := raw.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PASSCRED, 1)
		})
		if ctlErr != nil {
			err = ctlErr
		}
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("notify socket credentials: %w", err)
	}
	return conn, nil
}

func (s *supervisor) cleanup() {
	if s.sock != nil {
		s.sock.Close()
	}
	if s.logFile != nil {
		s.logFile.Close()
	}
	os.RemoveAll(s.dir)
}

func (s *supervisor) isEnded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// update changes the status under the lock and wakes every waiter.
func (s *supervisor) update(f func(st *ExecStatus)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.status)
	close(s.changed)
	s.changed = make(chan struct{})
}

// run starts the child and restarts it whenever it dies, until stop. It is
// locked to its OS thread because the children's parent-death signal
// follows the thread that forked them.
func (s *supervisor) run(started chan<- error) {
	runtime.LockOSThread()
	notifyDone := make(chan struct{})
	go func() {
		defer close(notifyDone)
		s.readNotify()
	}()
	defer func() {
		s.sock.Close()
		<-notifyDone
		s.cleanup()
		s.update(func(st *ExecStatus) {
			s.ended = true
			st.Ready, st.PID = false, 0
		})
		close(s.done)
	}()

	b := backoff{base: s.m.opts.RestartDelay, max: s.m.opts.MaxRestartDelay, jitter: s.m.opts.Jitter}
	failures := 0
	for first := true; ; first = false {
		cmd, exited, err := s.startChild()
		if first {
			started <- err
			if err != nil {
				return
			}
		}
		if err == nil {
			select {
			case err = <-exited:
			case <-s.stop:
				s.terminate(cmd, exited)
				return
			}
		}
		var wasReady bool
		s.update(func(st *ExecStatus) {
			wasReady = st.Ready
			st.Ready, st.PID = false, 0
			st.Restarts++
			st.LastExit = exitString(err)
		})
		if wasReady {
			failures = 0
		}
		delay := b.delay(failures)
		failures++
		s.log.Warn("rke2 exited; restarting", zap.String("exit", exitString(err)), zap.Duration("in", delay))
		select {
		case <-time.After(delay):
		case <-s.stop:
			return
		}
	}
}

func exitString(err error) string {
	if err == nil {
		return "exited 0"
	}
	return err.Error()
}

// startChild starts one child; exited receives its Wait result.
func (s *supervisor) startChild() (*exec.Cmd, <-chan error, error) {
	opts := s.m.opts
	args := []string{string(s.role)}
	if opts.ConfigFile != "" {
		args = append(args, "--config", opts.ConfigFile)
	}
	args = append(args, opts.Args...)
	lines, err := newLineReader(s.emit)
	if err != nil {
		return nil, nil, fmt.Errorf("output pipe: %w", err)
	}
	cmd := exec.Command(opts.RKE2Bin, args...)
	env := append(childEnviron(), opts.Env...)
	cmd.Env = append(env, "NOTIFY_SOCKET="+s.sockPath)
	cmd.Stdout, cmd.Stderr = lines.w, lines.w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	// The lock is held until the PID is known, so a READY=1 sent at once
	// is not taken for a stranger's.
	s.mu.Lock()
	err = cmd.Start()
	if err == nil {
		s.status.PID = cmd.Process.Pid
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.mu.Unlock()
	if err != nil {
		lines.finish(0)
		return nil, nil, err
	}
	lines.started()
	s.log.Info("rke2 started", zap.Int("pid", cmd.Process.Pid), zap.Strings("args", args))
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		// Leftovers of the group (RKE2's own children) go with it.
		killGroup(cmd.Process.Pid, syscall.SIGKILL)
		lines.finish(2 * time.Second)
		exited <- err
	}()
	return cmd, exited, nil
}

// terminate stops the child: SIGTERM to the group, SIGKILL after the grace.
func (s *supervisor) terminate(cmd *exec.Cmd, exited <-chan error) {
	pid := cmd.Process.Pid
	s.log.Info("stopping rke2", zap.Int("pid", pid))
	killGroup(pid, syscall.SIGTERM)
	t := time.NewTimer(s.m.opts.StopGrace)
	defer t.Stop()
	var err error
	select {
	case err = <-exited:
	case <-t.C:
		s.log.Warn("rke2 ignored SIGTERM; killing it", zap.Duration("grace", s.m.opts.StopGrace))
		killGroup(pid, syscall.SIGKILL)
		err = <-exited
	}
	s.update(func(st *ExecStatus) {
		st.Ready, st.PID = false, 0
		st.LastExit = exitString(err)
	})
}

func (s *supervisor) emit(line string) {
	s.out.add(line)
	if s.logFile != nil {
		s.logFile.WriteString(line + "\n")
		return
	}
	s.log.Info("rke2", zap.String("line", line))
}

// readNotify handles sd_notify datagrams until the socket is closed.
func (s *supervisor) readNotify() {
	buf := make([]byte, 4096)
	oob := make([]byte, syscall.CmsgSpace(syscall.SizeofUcred))
	for {
		n, oobn, _, _, err := s.sock.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		s.notify(senderPID(oob[:oobn]), string(buf[:n]))
	}
}

func senderPID(oob []byte) int {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for i := range msgs {
		if cred, err := syscall.ParseUnixCredentials(&msgs[i]); err == nil {
			return int(cred.Pid)
		}
	}
	return 0
}

// notify applies one sd_notify message from pid.
func (s *supervisor) notify(pid int, msg string) {
	s.mu.Lock()
	main := s.status.PID
	s.mu.Unlock()
	if pid == 0 || pid != main {
		s.log.Debug("ignoring notification from a process other than rke2's main one", zap.Int("pid", pid), zap.Int("main", main))
		return
	}
	for _, line := range strings.Split(msg, "\n") {
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue // not an assignment: systemd ignores it too
		}
		switch key {
		case "READY":
			if value == "1" {
				s.log.Info("rke2 is ready", zap.Int("pid", pid))
				s.update(func(st *ExecStatus) { st.Ready = true })
			}
		case "STOPPING":
			if value == "1" {
				s.update(func(st *ExecStatus) { st.Ready = false })
			}
		case "STATUS":
			s.update(func(st *ExecStatus) { st.Status = value })
		}
	}
}
