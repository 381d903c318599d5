package installer

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// childEnv makes the test binary act as a stand-in rke2 (see runTestChild).
const childEnv = "INSTALLER_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runTestChild(mode))
	}
	os.Exit(m.Run())
}

// runTestChild is the stand-in rke2 the exec manager supervises:
//
//	ready             READY=1 at once, runs until SIGTERM
//	crash-then-ready  exits 3 the first two runs, then as ready
//	never             never sends READY=1
//	stubborn          ready, but ignores SIGTERM
//	grandchild        ready, with a grandchild in its process group
//	stranger-ready    a grandchild sends READY=1, the main process never
func runTestChild(mode string) int {
	fmt.Printf("child %s args %s\n", mode, strings.Join(os.Args[1:], " "))
	state := os.Getenv("TEST_STATE_DIR")
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	switch mode {
	case "crash-then-ready":
		runs := filepath.Join(state, "runs")
		data, _ := os.ReadFile(runs)
		n, _ := strconv.Atoi(string(data))
		os.WriteFile(runs, []byte(strconv.Itoa(n+1)), 0o600)
		if n < 2 {
			fmt.Fprintln(os.Stderr, "boom: too many learner members")
			return 3
		}
		sdNotify("STATUS=up after crashes\nREADY=1")
	case "ready":
		sdNotify("STATUS=serving\nREADY=1")
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		sdNotify("READY=1")
		select {}
	case "grandchild":
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), childEnv+"=never")
		cmd.Start()
		os.WriteFile(filepath.Join(state, "grandchild"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600)
		sdNotify("READY=1")
		signal.Ignore(syscall.SIGTERM) // only the group kill ends the grandchild
		select {}
	case "stranger-ready":
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), childEnv+"=notify-only")
		cmd.Run()
		fmt.Println("stranger notified")
	case "notify-only":
		sdNotify("READY=1")
		return 0
	case "never":
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", mode)
		return 2
	}
	<-term
	fmt.Println("stopping")
	return 0
}

func sdNotify(msg string) {
	conn, err := net.Dial("unixgram", os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "notify:", err)
		os.Exit(4)
	}
	defer conn.Close()
	conn.Write([]byte(msg))
}

func newTestExecManager(t *testing.T, mode string, edit func(*ExecOptions)) (*ExecManager, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	opts := ExecOptions{
		RKE2Bin:    self,
		ConfigFile: "/etc/rancher/rke2/config.yaml",
		// A race-enabled child would otherwise linger a second at exit.
		Env:          []string{childEnv + "=" + mode, "TEST_STATE_DIR=" + state, "NOTIFY_SOCKET=/must/not/win", "GORACE=atexit_sleep_ms=0"},
		RestartDelay: 10 * time.Millisecond,
		Jitter:       func(d time.Duration) time.Duration { return d },
		StopGrace:    5 * time.Second,
	}
	if edit != nil {
		edit(&opts)
	}
	m, err := NewExecManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, state
}

func waitCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestExecReady(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "logs", "node-1.log")
	m, _ := newTestExecManager(t, "ready", func(o *ExecOptions) { o.LogFile = logFile })
	ctx := waitCtx(t, time.Minute)
	if err := m.Start(ctx, RoleServer); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx, RoleServer); err != nil {
		t.Fatalf("second start: %v", err)
	}
	if err := m.WaitActive(ctx, RoleServer); err != nil {
		t.Fatal(err)
	}
	if ok, _ := m.Active(ctx, RoleServer); !ok {
		t.Fatal("not active after WaitActive")
	}
	st, _ := m.Status(RoleServer)
	if st.Status != "serving" || st.Restarts != 0 || st.PID == 0 {
		t.Fatalf("status = %+v", st)
	}
	if err := m.Start(ctx, RoleAgent); err == nil || !strings.Contains(err.Error(), "rke2 server is running") {
		t.Fatalf("agent start beside a server: %v", err)
	}
	if err := m.Stop(ctx, RoleServer); err != nil {
		t.Fatal(err)
	}
	if ok, _ := m.Active(ctx, RoleServer); ok {
		t.Fatal("active after Stop")
	}
	data, _ := os.ReadFile(logFile)
	if !strings.Contains(string(data), "child ready args server --config /etc/rancher/rke2/config.yaml\n") ||
		!strings.Contains(string(data), "stopping\n") {
		t.Fatalf("log file:\n%s", data)
	}
	// Started again after a stop.
	if err := m.Start(ctx, RoleAgent); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitActive(ctx, RoleAgent); err != nil {
		t.Fatal(err)
	}
}

func TestExecRestartsCrashingChild(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	var mu sync.Mutex
	var delays []time.Duration
	m, _ := newTestExecManager(t, "crash-then-ready", func(o *ExecOptions) {
		o.Logger = zap.New(core)
		o.Jitter = func(d time.Duration) time.Duration {
			mu.Lock()
			defer mu.Unlock()
			delays = append(delays, d)
			return d
		}
	})
	ctx := waitCtx(t, time.Minute)
	if err := m.Start(ctx, RoleAgent); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitActive(ctx, RoleAgent); err != nil {
		t.Fatal(err)
	}
	st, _ := m.Status(RoleAgent)
	if st.Restarts != 2 || !strings.Contains(st.LastExit, "exit status 3") || st.Status != "up after crashes" {
		t.Fatalf("status = %+v", st)
	}
	mu.Lock()
	if len(delays) != 2 || delays[0] != 10*time.Millisecond || delays[1] != 20*time.Millisecond {
		t.Errorf("restart delays %v, want [10ms 20ms]", delays)
	}
	mu.Unlock()
	if logs.FilterField(zap.String("line", "boom: too many learner members")).Len() != 2 {
		t.Fatalf("child output not in the log: %v", logs.All())
	}
}

func TestExecNeverReadyDeadline(t *testing.T) {
	m, _ := newTestExecManager(t, "never", nil)
	if err := m.Start(waitCtx(t, time.Minute), RoleServer); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, m, RoleServer, "child never")
	err := m.WaitActive(waitCtx(t, 500*time.Millisecond), RoleServer)
	if err == nil || !strings.Contains(err.Error(), "rke2 server not ready: context deadline exceeded") ||
		!strings.Contains(err.Error(), "child never args server") {
		t.Fatalf("err = %v", err)
	}
}

func TestExecIgnoresReadyFromOtherProcesses(t *testing.T) {
	m, _ := newTestExecManager(t, "stranger-ready", nil)
	if err := m.Start(waitCtx(t, time.Minute), RoleServer); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, m, RoleServer, "stranger notified")
	err := m.WaitActive(waitCtx(t, 500*time.Millisecond), RoleServer)
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("READY=1 from a grandchild was taken: err = %v", err)
	}
}

func TestExecStopKillsStubbornChildAndGroup(t *testing.T) {
	for _, mode := range []string{"stubborn", "grandchild"} {
		t.Run(mode, func(t *testing.T) {
			m, state := newTestExecManager(t, mode, func(o *ExecOptions) { o.StopGrace = 200 * time.Millisecond })
			ctx := waitCtx(t, time.Minute)
			if err := m.Start(ctx, RoleServer); err != nil {
				t.Fatal(err)
			}
			if err := m.WaitActive(ctx, RoleServer); err != nil {
				t.Fatal(err)
			}
			st, _ := m.Status(RoleServer)
			if err := m.Stop(ctx, RoleServer); err != nil {
				t.Fatal(err)
			}
			if alive(st.PID) {
				t.Fatalf("child %d still alive", st.PID)
			}
			if mode == "grandchild" {
				data, _ := os.ReadFile(filepath.Join(state, "grandchild"))
				pid, _ := strconv.Atoi(string(data))
				deadline := time.Now().Add(3 * time.Minute) // generous: the machine may be loaded
				for alive(pid) {
					if time.Now().After(deadline) {
						t.Fatalf("grandchild %d survived the stop", pid)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
}

// waitOutput waits until role's child has printed a line starting with prefix.
func waitOutput(t *testing.T, m *ExecManager, role Role, prefix string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute) // generous: the machine may be loaded
	for {
		for _, line := range m.child(role).out.last() {
			if strings.HasPrefix(line, prefix) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no output line %q from rke2 %s", prefix, role)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie waiting for its reaper does not).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(data), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

func TestExecStartErrors(t *testing.T) {
	if _, err := NewExecManager(ExecOptions{}); err == nil || !strings.Contains(err.Error(), "rke2-bin is empty") {
		t.Fatalf("err = %v", err)
	}
	m, err := NewExecManager(ExecOptions{RKE2Bin: "/nonexistent/rke2"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := waitCtx(t, time.Minute)
	if err := m.Start(ctx, RoleServer); err == nil || !strings.Contains(err.Error(), "start rke2 server") {
		t.Fatalf("err = %v", err)
	}
	if err := m.Start(ctx, "master"); err == nil || !strings.Contains(err.Error(), `role "master"`) {
		t.Fatalf("err = %v", err)
	}
	if err := m.WaitActive(ctx, RoleAgent); err == nil || !strings.Contains(err.Error(), "not started") {
		t.Fatalf("err = %v", err)
	}
	if err := m.Stop(ctx, RoleAgent); err != nil {
		t.Fatalf("stopping what never ran: %v", err)
	}
}
