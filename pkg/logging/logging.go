// Package logging builds the daemon's zap logger and bridges the loggers of
// hashicorp/memberlist (a standard library *log.Logger) and hashicorp/raft
// (an hclog.Logger) into it, so that every line the process writes has one
// format and one level filter.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Levels accepted by the log-level key.
var Levels = []string{"debug", "info", "warn", "error"}

// Formats accepted by the log-format key.
var Formats = []string{"console", "json"}

// New returns a logger writing to w at level in format ("console" or "json").
func New(level, format string, w io.Writer) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log-level %q: accepted values are %s", level, strings.Join(Levels, ", "))
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console", "":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, fmt.Errorf("log-format %q: accepted values are %s", format, strings.Join(Formats, ", "))
	}
	if w == nil {
		w = os.Stderr
	}
	core := zapcore.NewCore(enc, zapcore.AddSync(w), lvl)
	return zap.New(core, zap.ErrorOutput(zapcore.AddSync(os.Stderr))), nil
}
