package rke2sim

import (
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newLogger builds the sim's console logger at level (debug, info, warn, error).
func newLogger(level string, w io.Writer) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("RKE2SIM_LOG_LEVEL=%q: want debug, info, warn or error", level)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(encCfg), zapcore.AddSync(w), lvl)
	return zap.New(core, zap.ErrorOutput(zapcore.AddSync(os.Stderr))), nil
}

// stdLogger is a standard library logger that writes to l at warn level
// (net/http's server errors: TLS handshakes refused and the like).
func stdLogger(l *zap.Logger) *log.Logger {
	return log.New(stdSink{l: l}, "", 0)
}

type stdSink struct{ l *zap.Logger }

func (s stdSink) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		s.l.Warn(strings.TrimSpace(line))
	}
	return len(p), nil
}
