package installer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// fakeState is one reading of a unit.
type fakeState struct {
	active, sub, result string
	job                 bool
	restarts            uint32
	readErr             error
}

// fakeSystemd plays systemd's D-Bus side: it records calls and walks
// through a list of unit states, one per read, repeating the last.
type fakeSystemd struct {
	mu         sync.Mutex
	calls      []string
	load       string
	states     []fakeState
	reads      int
	failOn     string // a call that returns an error
	stopResult string // "" never answers
}

func (f *fakeSystemd) call(c string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	if f.failOn != "" && strings.HasPrefix(c, f.failOn) {
		return errors.New("org.freedesktop.DBus.Error.AccessDenied")
	}
	return nil
}

func (f *fakeSystemd) ReloadContext(ctx context.Context) error { return f.call("reload") }

func (f *fakeSystemd) EnableUnitFilesContext(ctx context.Context, files []string, runtime, force bool) (bool, []dbus.EnableUnitFileChange, error) {
	return true, nil, f.call(fmt.Sprintf("enable %s runtime=%v force=%v", strings.Join(files, ","), runtime, force))
}

func (f *fakeSystemd) ResetFailedUnitContext(ctx context.Context, name string) error {
	return f.call("reset-failed " + name)
}

func (f *fakeSystemd) StartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error) {
	return 7, f.call(fmt.Sprintf("start %s %s wait=%v", name, mode, ch != nil))
}

func (f *fakeSystemd) StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error) {
	if err := f.call(fmt.Sprintf("stop %s %s", name, mode)); err != nil {
		return 0, err
	}
	if f.stopResult != "" {
		ch <- f.stopResult
	}
	return 8, nil
}

func (f *fakeSystemd) current() fakeState {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.states[min(f.reads, len(f.states)-1)]
	f.reads++
	return st
}

func (f *fakeSystemd) ListUnitsByNamesContext(ctx context.Context, units []string) ([]dbus.UnitStatus, error) {
	st := f.current()
	if st.readErr != nil {
		return nil, st.readErr
	}
	load := f.load
	if load == "" {
		load = "loaded"
	}
	var job uint32
	if st.job {
		job = 7
	}
	return []dbus.UnitStatus{{Name: units[0], LoadState: load, ActiveState: st.active, SubState: st.sub, JobId: job}}, nil
}

func (f *fakeSystemd) GetUnitTypePropertiesContext(ctx context.Context, unit, unitType string) (map[string]any, error) {
	f.mu.Lock()
	st := f.states[min(f.reads-1, len(f.states)-1)]
	f.mu.Unlock()
	if unitType != "Service" {
		return nil, fmt.Errorf("unexpected unit type %s", unitType)
	}
	return map[string]any{"Result": st.result, "NRestarts": st.restarts}, nil
}

func newTestSystemd(t *testing.T, fake *fakeSystemd) (*SystemdManager, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	m, err := OpenSystemdManager(SystemdOptions{
		Conn:         fake,
		PollInterval: time.Millisecond,
		Journal: func(ctx context.Context, unit string) []string {
			return []string{unit + ": level=fatal msg=\"starting kubernetes: preparing server\""}
		},
		Logger: zap.New(core),
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, logs
}

func TestSystemdStartDoesNotWait(t *testing.T) {
	fake := &fakeSystemd{states: []fakeState{{active: "inactive", sub: "dead", job: true}}}
	m, _ := newTestSystemd(t, fake)
	if err := m.Start(context.Background(), RoleServer); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"reload",
		"enable rke2-server.service runtime=false force=false",
		"reset-failed rke2-server.service",
		"start rke2-server.service replace wait=false",
	}
	if strings.Join(fake.calls, "\n") != strings.Join(want, "\n") {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(fake.calls, "\n"), strings.Join(want, "\n"))
	}
}

func TestSystemdStartErrors(t *testing.T) {
	for call, want := range map[string]string{
		"reload": "systemd daemon-reload: org.freedesktop.DBus.Error.AccessDenied",
		"enable": "enable rke2-agent.service: org.freedesktop",
		"start":  "start rke2-agent.service: org.freedesktop",
	} {
		m, _ := newTestSystemd(t, &fakeSystemd{failOn: call})
		if err := m.Start(context.Background(), RoleAgent); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s fails: err = %v, want %q", call, err, want)
		}
	}
	// reset-failed on a unit that never failed is not an error.
	m, _ := newTestSystemd(t, &fakeSystemd{failOn: "reset-failed"})
	if err := m.Start(context.Background(), RoleAgent); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background(), "worker"); err == nil {
		t.Fatal("bad role accepted")
	}
}

func TestSystemdWaitActive(t *testing.T) {
	activating := fakeState{active: "activating", sub: "start", job: true}
	tests := []struct {
		name   string
		load   string
		states []fakeState
		ctx    time.Duration
		want   string // "" = active
	}{
		{name: "comes up through a restart", states: []fakeState{
			{active: "inactive", sub: "dead", job: true},
			activating,
			{active: "activating", sub: "auto-restart", result: "exit-code", job: true, restarts: 1},
			{readErr: errors.New("dbus: connection reset")},
			{active: "activating", sub: "start", result: "exit-code", job: true, restarts: 1},
			{active: "active", sub: "running", result: "success", restarts: 1},
		}},
		{name: "failed", states: []fakeState{activating, {active: "failed", sub: "failed", result: "exit-code"}},
			want: "rke2-server.service failed (failed/failed, result exit-code, 0 restarts); last journal lines:\nrke2-server.service: level=fatal"},
		{name: "skipped by ExecCondition", states: []fakeState{{active: "inactive", sub: "dead", result: "exec-condition"}},
			want: "rke2-server.service is inactive with no start job left (skipped by a condition"},
		{name: "never ready", states: []fakeState{activating}, ctx: 50 * time.Millisecond,
			want: "rke2-server.service not active: context deadline exceeded (activating/start, result , 0 restarts); last journal lines"},
		{name: "unreadable until the deadline", states: []fakeState{{readErr: errors.New("dbus: no connection")}}, ctx: 50 * time.Millisecond,
			want: "not active: context deadline exceeded (last error: installer: read rke2-server.service: dbus: no connection)"},
		{name: "not installed", load: "not-found", states: []fakeState{{active: "inactive", sub: "dead"}},
			want: "rke2-server.service not found: is RKE2 installed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, logs := newTestSystemd(t, &fakeSystemd{load: tc.load, states: tc.states})
			d := tc.ctx
			if d == 0 {
				d = time.Minute
			}
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			err := m.WaitActive(ctx, RoleServer)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if logs.FilterMessage("unit restarting").Len() != 1 {
					t.Fatalf("restart not logged: %v", logs.All())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestSystemdActiveAndStop(t *testing.T) {
	fake := &fakeSystemd{states: []fakeState{{active: "active", sub: "running"}}, stopResult: "done"}
	m, _ := newTestSystemd(t, fake)
	ctx := context.Background()
	if ok, err := m.Active(ctx, RoleAgent); !ok || err != nil {
		t.Fatalf("Active = %v, %v", ok, err)
	}
	if err := m.Stop(ctx, RoleAgent); err != nil {
		t.Fatal(err)
	}
	if last := fake.calls[len(fake.calls)-1]; last != "stop rke2-agent.service replace" {
		t.Fatalf("last call %q", last)
	}
	fake.stopResult = "failed"
	if err := m.Stop(ctx, RoleAgent); err == nil || !strings.Contains(err.Error(), "stop rke2-agent.service: job failed") {
		t.Fatalf("err = %v", err)
	}
	fake.stopResult = ""
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := m.Stop(short, RoleAgent); err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("err = %v", err)
	}
	fake.states = []fakeState{{readErr: errors.New("dbus: gone")}}
	fake.reads = 0
	if _, err := m.Active(ctx, RoleAgent); err == nil || !strings.Contains(err.Error(), "dbus: gone") {
		t.Fatalf("err = %v", err)
	}
}
