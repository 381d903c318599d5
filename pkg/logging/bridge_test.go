package logging

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestStdLoggerLevels(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := StdLogger(zap.New(core))
	l.Printf("[DEBUG] memberlist: Stream connection from=127.0.0.1:1")
	l.Printf("[WARN] memberlist: Refuting a suspect message")
	l.Printf("[ERR] memberlist: Failed to send")
	l.Printf("plain line")
	want := []struct {
		lvl zapcore.Level
		msg string
	}{
		{zapcore.DebugLevel, "memberlist: Stream connection from=127.0.0.1:1"},
		{zapcore.WarnLevel, "memberlist: Refuting a suspect message"},
		{zapcore.ErrorLevel, "memberlist: Failed to send"},
		{zapcore.InfoLevel, "plain line"},
	}
	got := logs.All()
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Level != w.lvl || got[i].Message != w.msg {
			t.Errorf("entry %d = %v %q, want %v %q", i, got[i].Level, got[i].Message, w.lvl, w.msg)
		}
	}
}

func TestHCLoggerFieldsAndLevel(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	h := HCLogger("raft", zap.New(core))
	h.Debug("hidden")
	h.Warn("heartbeat timeout reached", "last-leader-addr", "127.0.0.1:9348")
	got := logs.All()
	if len(got) != 1 {
		t.Fatalf("got %d entries, want 1 (debug filtered): %v", len(got), got)
	}
	e := got[0]
	if e.Level != zapcore.WarnLevel || e.Message != "heartbeat timeout reached" || e.LoggerName != "raft" {
		t.Errorf("entry = %v %q logger %q", e.Level, e.Message, e.LoggerName)
	}
	if v, ok := e.ContextMap()["last-leader-addr"]; !ok || v != "127.0.0.1:9348" {
		t.Errorf("field last-leader-addr = %v", e.ContextMap())
	}
}

func TestNewRejectsBadValues(t *testing.T) {
	if _, err := New("loud", "console", nil); err == nil {
		t.Error("log-level loud accepted")
	}
	if _, err := New("info", "xml", nil); err == nil {
		t.Error("log-format xml accepted")
	}
}
