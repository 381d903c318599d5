package logging

import (
	"bytes"
	"encoding/json"
	"log"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// StdLogger returns a standard library logger whose lines, written by
// memberlist as "[LEVEL] memberlist: message", reach l at the matching level.
func StdLogger(l *zap.Logger) *log.Logger {
	return log.New(&stdSink{l: l.WithOptions(zap.AddCallerSkip(3))}, "", 0)
}

type stdSink struct{ l *zap.Logger }

func (s *stdSink) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		lvl, msg := splitLevel(line)
		if ce := s.l.Check(lvl, msg); ce != nil {
			ce.Write()
		}
	}
	return len(p), nil
}

// splitLevel reads the "[LEVEL] " prefix hashicorp libraries put on lines.
func splitLevel(line string) (zapcore.Level, string) {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "[") {
		return zapcore.InfoLevel, line
	}
	end := strings.IndexByte(line, ']')
	if end < 0 {
		return zapcore.InfoLevel, line
	}
	msg := strings.TrimSpace(line[end+1:])
	return parseLevel(line[1:end]), msg
}

func parseLevel(s string) zapcore.Level {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trace", "debug":
		return zapcore.DebugLevel
	case "warn", "warning":
		return zapcore.WarnLevel
	case "err", "error":
		return zapcore.ErrorLevel
	default:
		return zapcore.InfoLevel
	}
}

// HCLogger returns an hclog.Logger (as raft wants) whose records reach l with
// their key/value pairs as structured fields. hclog writes JSON lines into a
// small sink that decodes them again; this keeps the bridge independent of
// hclog's large interface.
func HCLogger(name string, l *zap.Logger) hclog.Logger {
	lvl := hclog.Info
	switch {
	case l.Core().Enabled(zapcore.DebugLevel):
		lvl = hclog.Debug
	case !l.Core().Enabled(zapcore.InfoLevel):
		lvl = hclog.Warn
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      lvl,
		JSONFormat: true,
		Output:     &jsonSink{l: l},
	})
}

type jsonSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
	l   *zap.Logger
}

func (s *jsonSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	for {
		line, err := s.buf.ReadBytes('\n')
		if err != nil {
			// An incomplete line: keep it for the next write.
			s.buf.Reset()
			s.buf.Write(line)
			break
		}
		s.emit(line)
	}
	return len(p), nil
}

func (s *jsonSink) emit(line []byte) {
	var rec map[string]any
	if err := json.Unmarshal(line, &rec); err != nil {
		s.l.Info(strings.TrimSpace(string(line)))
		return
	}
	lvl := parseLevel(str(rec["@level"]))
	msg := str(rec["@message"])
	name := str(rec["@module"])
	for _, k := range []string{"@level", "@message", "@module", "@timestamp", "@caller"} {
		delete(rec, k)
	}
	l := s.l
	if name != "" {
		l = l.Named(name)
	}
	ce := l.Check(lvl, msg)
	if ce == nil {
		return
	}
	fields := make([]zap.Field, 0, len(rec))
	for k, v := range rec {
		fields = append(fields, zap.Any(k, v))
	}
	ce.Write(fields...)
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
