package installer

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rke2-hanode/rke2-hanode/pkg/fsutil"
)

// ConfigFileEnv is the variable RKE2 takes its config file from when it is
// started without --config, as the systemd units start it.
const ConfigFileEnv = "RKE2_CONFIG_FILE"

// UnitEnvOptions says which unit must read which config file.
type UnitEnvOptions struct {
	// Root is prepended to /etc paths ("" is the host's root; tests).
	Root string
	Role Role
	// ConfigFile is the RKE2 config rke2-hanode writes.
	ConfigFile string
}

// UnitEnvFiles are the environment files RKE2's units load, in the order
// systemd reads them (a later one wins): /etc/default/<unit> and
// /etc/sysconfig/<unit>.
func UnitEnvFiles(root string, role Role) []string {
	name := strings.TrimSuffix(UnitName(role), ".service")
	return []string{filepath.Join(root, "/etc/default", name), filepath.Join(root, "/etc/sysconfig", name)}
}

// PointUnitAtConfig makes RKE2's unit read opts.ConfigFile. The units run
// `rke2 server` (or agent) without --config, so RKE2 reads
// /etc/rancher/rke2/config.yaml unless RKE2_CONFIG_FILE is in the
// environment the unit loads. For another config file it writes
// RKE2_CONFIG_FILE into /etc/sysconfig/<unit> on hosts that have
// /etc/sysconfig, else into /etc/default/<unit>, keeping every other line;
// an RKE2_CONFIG_FILE already in either file that names another file is
// corrected, whatever the config file. Each file is replaced atomically.
// It returns the files it changed.
func PointUnitAtConfig(opts UnitEnvOptions) ([]string, error) {
	if err := opts.Role.valid(); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(opts.ConfigFile) {
		return nil, fmt.Errorf("installer: unit environment: config file %q is not an absolute path", opts.ConfigFile)
	}
	files := UnitEnvFiles(opts.Root, opts.Role)
	target := files[0]
	if st, err := os.Stat(filepath.Join(opts.Root, "/etc/sysconfig")); err == nil && st.IsDir() {
		target = files[1]
	}
	isDefault := filepath.Clean(opts.ConfigFile) == ConfigPath(DefaultRKE2ConfigDir)
	var changed []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return changed, fmt.Errorf("installer: unit environment %s: %w", f, err)
		}
		want := f == target && !isDefault
		out, edited := setEnvLine(data, ConfigFileEnv, filepath.Clean(opts.ConfigFile), want)
		if !edited {
			continue
		}
		mode := os.FileMode(0o644)
		if st, err := os.Stat(f); err == nil {
			mode = st.Mode().Perm()
		}
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return changed, fmt.Errorf("installer: unit environment: %w", err)
		}
		if err := fsutil.WriteFileAtomic(f, out, mode); err != nil {
			return changed, fmt.Errorf("installer: unit environment %s: %w", f, err)
		}
		changed = append(changed, f)
	}
	return changed, nil
}

// setEnvLine sets name=value in an environment file's lines. An existing
// assignment with another value is rewritten; when add is true a missing
// one is appended. It reports whether anything changed.
func setEnvLine(data []byte, name, value string, add bool) ([]byte, bool) {
	line := name + "=" + quoteEnv(value)
	var lines []string
	if len(data) > 0 {
		lines = strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	}
	found, changed := false, false
	for i, l := range lines {
		k, v, ok := strings.Cut(strings.TrimSpace(l), "=")
		if !ok || strings.TrimSpace(k) != name {
			continue
		}
		found = true
		if unquoteEnv(v) != value {
			lines[i], changed = line, true
		}
	}
	if !found && add {
		lines, changed = append(lines, line), true
	}
	if !changed {
		return data, false
	}
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes(), true
}

func quoteEnv(v string) string {
	if strings.ContainsAny(v, " \t\"'\\$") {
		return strconv.Quote(v)
	}
	return v
}

func unquoteEnv(v string) string {
	v = strings.TrimSpace(v)
	if u, err := strconv.Unquote(v); err == nil {
		return u
	}
	return strings.Trim(v, "'")
}
