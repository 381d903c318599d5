package installer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/rke2version"
)

// Method is how RKE2 gets onto the host (the install-method key).
type Method string

const (
	// MethodScript runs RKE2's install script.
	MethodScript Method = "script"
	// MethodNone only checks that RKE2 is already installed.
	MethodNone Method = "none"
)

// Install defaults.
const (
	DefaultInstallScriptURL = "https://get.rke2.io"
	DefaultInstallTimeout   = 15 * time.Minute
	DefaultInstallAttempts  = 3
	maxScriptBytes          = 8 << 20
)

// DefaultSearchPaths are the folders RKE2's install script puts `rke2` in:
// the tarball prefix /usr/local (or /opt/rke2), and /usr for the RPMs.
var DefaultSearchPaths = []string{"/usr/local/bin", "/opt/rke2/bin", "/usr/bin"}

// InstallOptions says what to install and how. Zero values take the defaults.
type InstallOptions struct {
	Method Method
	// Role becomes INSTALL_RKE2_TYPE. In tar mode both units are installed
	// anyway; the role only matters for the RPMs.
	Role Role
	// Version (v1.36.4+rke2r1) wins over Channel (stable, latest, testing).
	Version string
	Channel string
	// ScriptURL is an https URL or a local path of the install script; an
	// http URL only with ScriptSHA256. A redirect from https to anything
	// else is refused.
	ScriptURL string
	// ScriptSHA256 (hex), when set, must match the script's bytes before it
	// runs.
	ScriptSHA256 string
	// ArtifactPath is the airgap folder: INSTALL_RKE2_ARTIFACT_PATH, and the
	// place kube-vip*.tar* image archives are copied from.
	ArtifactPath string
	// RKE2DataDir receives the images under agent/images; when it is not
	// RKE2's default the script gets INSTALL_RKE2_AGENT_IMAGES_DIR, so its
	// airgap images land where RKE2 looks.
	RKE2DataDir string
	// RKE2Bin is an rke2 executable to use before the search paths.
	RKE2Bin string
	// TarPrefix becomes INSTALL_RKE2_TAR_PREFIX and its bin/ is searched
	// first; empty lets the script choose.
	TarPrefix string
	// SearchPaths replaces DefaultSearchPaths.
	SearchPaths []string
	// Running says RKE2 already runs on this host (Inspect): it is adopted,
	// never reinstalled, whatever version it is.
	Running bool
	// Env is added to the script's environment after the INSTALL_RKE2_* ones.
	Env []string
	// Timeout bounds the whole install, retries included.
	Timeout time.Duration
	// Attempts is how many times the script is tried.
	Attempts int
	// RetryDelay is the first delay between attempts, doubled up to
	// MaxRetryDelay; Jitter (nil: up to +50% at random) spreads them.
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	Jitter        func(time.Duration) time.Duration
	HTTPClient    *http.Client
	Logger        *zap.Logger
	Metrics       *Metrics
}

// Result is what Install did.
type Result struct {
	// Skipped is true when the wanted RKE2 was already installed.
	Skipped bool
	// Bin and Version are the installed rke2 after Install.
	Bin     string
	Version string
	// Attempts is how many times the script ran.
	Attempts int
	// Images are the image archives copied into agent/images.
	Images   []string
	Duration time.Duration
}

// Metrics are the installer's Prometheus metrics.
type Metrics struct {
	installDuration prometheus.Gauge
}

// NewMetrics creates the installer's metrics and registers them on reg
// (nil: not registered). rke2_hanode_install_duration_seconds is a gauge,
// not a histogram: a host installs once per daemon start, so the last
// duration is what there is to see.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{installDuration: prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "rke2_hanode",
		Name:      "install_duration_seconds",
		Help:      "Seconds the last RKE2 install step took: script runs with retries and image copies (near zero when RKE2 was already installed).",
	})}
	if reg != nil {
		if err := reg.Register(m.installDuration); err != nil {
			return nil, fmt.Errorf("installer: register metrics: %w", err)
		}
	}
	return m, nil
}

func (o *InstallOptions) setDefaults() {
	if o.Method == "" {
		o.Method = MethodScript
	}
	if o.Role == "" {
		o.Role = RoleServer
	}
	if o.ScriptURL == "" {
		o.ScriptURL = DefaultInstallScriptURL
	}
	if o.RKE2DataDir == "" {
		o.RKE2DataDir = DefaultRKE2DataDir
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultInstallTimeout
	}
	if o.Attempts <= 0 {
		o.Attempts = DefaultInstallAttempts
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 5 * time.Second
	}
	if o.MaxRetryDelay <= 0 {
		o.MaxRetryDelay = time.Minute
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
}

// searchPaths is where rke2 is looked for, most specific first.
func (o *InstallOptions) searchPaths() []string {
	var dirs []string
	if o.TarPrefix != "" {
		dirs = append(dirs, filepath.Join(o.TarPrefix, "bin"))
	}
	if o.SearchPaths != nil {
		return append(dirs, o.SearchPaths...)
	}
	return append(dirs, DefaultSearchPaths...)
}

// Install makes sure RKE2 is on the host. It never starts a service.
func Install(ctx context.Context, opts InstallOptions) (Result, error) {
	opts.setDefaults()
	if err := opts.Role.valid(); err != nil {
		return Result{}, err
	}
	log := opts.Logger.Named("installer")
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	var res Result
	var err error
	switch {
	case opts.Method != MethodNone && opts.Method != MethodScript:
		return Result{}, fmt.Errorf("installer: install-method %q unknown (want %q or %q)", opts.Method, MethodScript, MethodNone)
	case opts.Method == MethodNone || opts.Running:
		res, err = checkInstalled(ctx, opts, log)
	default:
		res, err = installWithScript(ctx, opts, log)
	}
	if err != nil {
		return res, err
	}
	if opts.ArtifactPath != "" {
		res.Images, err = copyImages(opts.ArtifactPath, opts.RKE2DataDir, log)
		if err != nil {
			return res, err
		}
	}
	res.Duration = time.Since(start)
	if opts.Metrics != nil {
		opts.Metrics.installDuration.Set(res.Duration.Seconds())
	}
	log.Info("rke2 installed", zap.String("version", res.Version), zap.String("bin", res.Bin),
		zap.Bool("skipped", res.Skipped), zap.Int("attempts", res.Attempts), zap.Duration("took", res.Duration))
	return res, nil
}

func checkInstalled(ctx context.Context, opts InstallOptions, log *zap.Logger) (Result, error) {
	bin, err := FindRKE2(opts.RKE2Bin, opts.searchPaths())
	if err != nil {
		return Result{}, fmt.Errorf("installer: install-method %s: %w: install RKE2 first, set rke2-bin, or use install-method: script", opts.Method, err)
	}
	version, err := RKE2Version(ctx, bin)
	if err != nil {
		return Result{}, fmt.Errorf("installer: install-method %s: %w", opts.Method, err)
	}
	warnVersion(log, opts.Version, version)
	return Result{Skipped: true, Bin: bin, Version: version}, nil
}

func installWithScript(ctx context.Context, opts InstallOptions, log *zap.Logger) (Result, error) {
	if bin, err := FindRKE2(opts.RKE2Bin, opts.searchPaths()); err == nil {
		version, err := RKE2Version(ctx, bin)
		switch {
		case err != nil:
			log.Warn("installed rke2 does not tell its version; reinstalling", zap.String("bin", bin), zap.Error(err))
		case opts.Version == "" || sameVersion(version, opts.Version):
			return Result{Skipped: true, Bin: bin, Version: version}, nil
		default:
			log.Info("installed rke2 differs from the wanted version; running the install script",
				zap.String("installed", version), zap.String("wanted", opts.Version))
		}
	}
	b := backoff{base: opts.RetryDelay, max: opts.MaxRetryDelay, jitter: opts.Jitter}
	var res Result
	var lastErr error
	for attempt := range opts.Attempts {
		if attempt > 0 {
			d := b.delay(attempt - 1)
			log.Warn("install script failed; retrying", zap.Int("attempt", attempt), zap.Duration("in", d), zap.Error(lastErr))
			if err := sleepCtx(ctx, d); err != nil {
				return res, fmt.Errorf("installer: install script: %w (last error: %w)", err, lastErr)
			}
		}
		res.Attempts = attempt + 1
		lastErr = runScript(ctx, opts, log)
		if lastErr == nil {
			break
		}
		if ctx.Err() != nil {
			return res, fmt.Errorf("installer: install script: %w", lastErr)
		}
	}
	if lastErr != nil {
		return res, fmt.Errorf("installer: install script failed %d times: %w", res.Attempts, lastErr)
	}
	bin, err := FindRKE2(opts.RKE2Bin, opts.searchPaths())
	if err != nil {
		return res, fmt.Errorf("installer: install script succeeded but %w", err)
	}
	version, err := RKE2Version(ctx, bin)
	if err != nil {
		return res, fmt.Errorf("installer: after install: %w", err)
	}
	warnVersion(log, opts.Version, version)
	res.Bin, res.Version = bin, version
	return res, nil
}

func warnVersion(log *zap.Logger, wanted, installed string) {
	if wanted != "" && !sameVersion(wanted, installed) {
		log.Warn("installed rke2 is not the wanted version (airgap artifacts decide the version)",
			zap.String("installed", installed), zap.String("wanted", wanted))
	}
}

// scriptEnv is the install script's INSTALL_RKE2_* environment.
func scriptEnv(opts InstallOptions) []string {
	env := []string{"INSTALL_RKE2_TYPE=" + string(opts.Role)}
	switch {
	case opts.Version != "":
		env = append(env, "INSTALL_RKE2_VERSION="+opts.Version)
	case opts.Channel != "":
		env = append(env, "INSTALL_RKE2_CHANNEL="+opts.Channel)
	}
	if opts.ArtifactPath != "" {
		env = append(env, "INSTALL_RKE2_ARTIFACT_PATH="+opts.ArtifactPath)
	}
	if opts.TarPrefix != "" {
		env = append(env, "INSTALL_RKE2_TAR_PREFIX="+opts.TarPrefix)
	}
	if dir := opts.RKE2DataDir; dir != "" && filepath.Clean(dir) != DefaultRKE2DataDir {
		env = append(env, "INSTALL_RKE2_AGENT_IMAGES_DIR="+ImagesDir(dir))
	}
	return env
}

// runScript fetches the install script and runs it once with sh.
func runScript(ctx context.Context, opts InstallOptions, log *zap.Logger) error {
	script, err := fetchScript(ctx, opts.HTTPClient, opts.ScriptURL)
	if err != nil {
		return err
	}
	if err := checkScriptSum(opts.ScriptURL, opts.ScriptSHA256, script); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "rke2-install-")
	if err != nil {
		return fmt.Errorf("temp folder: %w", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "install.sh")
	if err := os.WriteFile(path, script, 0o700); err != nil {
		return fmt.Errorf("write install script: %w", err)
	}

	out := newTail(10)
	lines, err := newLineReader(func(line string) {
		out.add(line)
		log.Info("install script", zap.String("line", line))
	})
	if err != nil {
		return fmt.Errorf("install script output: %w", err)
	}
	cmd := exec.CommandContext(ctx, "sh", path)
	cmd.Env = append(append(childEnviron(), scriptEnv(opts)...), opts.Env...)
	cmd.Stdout, cmd.Stderr = lines.w, lines.w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		killGroup(cmd.Process.Pid, syscall.SIGKILL)
		return nil
	}
	log.Info("running the install script", zap.String("script", opts.ScriptURL), zap.Strings("env", scriptEnv(opts)))
	if err := cmd.Start(); err != nil {
		lines.finish(0)
		return fmt.Errorf("start install script: %w", err)
	}
	lines.started()
	err = cmd.Wait()
	lines.finish(2 * time.Second)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return fmt.Errorf("%s: %w; last output: %s", opts.ScriptURL, err, strings.Join(out.last(), " | "))
	}
	return nil
}

// fetchScript reads the install script from an http(s) URL or a local path.
func fetchScript(ctx context.Context, client *http.Client, src string) ([]byte, error) {
	if !strings.HasPrefix(src, "http://") && !strings.HasPrefix(src, "https://") {
		data, err := os.ReadFile(strings.TrimPrefix(src, "file://"))
		if err != nil {
			return nil, fmt.Errorf("read install script: %w", err)
		}
		return data, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, fmt.Errorf("install-script-url %q: %w", src, err)
	}
	resp, err := noDowngrade(client).Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch install script: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch install script %s: HTTP %s", src, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxScriptBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch install script %s: %w", src, err)
	}
	if len(data) > maxScriptBytes {
		return nil, fmt.Errorf("fetch install script %s: larger than %d bytes", src, maxScriptBytes)
	}
	return data, nil
}

// noDowngrade is client refusing a redirect that leaves https: the script
// runs as root, and what TLS protected must not come over plain http.
func noDowngrade(client *http.Client) *http.Client {
	c := *client
	next := client.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > 0 && via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
			return fmt.Errorf("install-script-url %s redirected to %s: refusing to leave https", via[0].URL.Redacted(), req.URL.Redacted())
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &c
}

// checkScriptSum compares the script's SHA-256 with install-script-sha256.
// An http URL without one is refused: nothing vouches for what arrived.
func checkScriptSum(src, want string, script []byte) error {
	if want == "" {
		if strings.HasPrefix(src, "http://") {
			return fmt.Errorf("install-script-url %s is plain http and install-script-sha256 is not set: refusing to run it as root", src)
		}
		return nil
	}
	sum := sha256.Sum256(script)
	if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, want) {
		return fmt.Errorf("install script from %s has SHA-256 %s, but install-script-sha256 is %s: refusing to run it (fix install-script-sha256 or install-script-url)", src, got, strings.ToLower(want))
	}
	return nil
}

// ImagesDir is where RKE2 imports image archives from at start.
func ImagesDir(rke2DataDir string) string {
	return filepath.Join(rke2DataDir, "agent", "images")
}

// FindRKE2 returns bin if it is set, else the first rke2 executable in dirs.
func FindRKE2(bin string, dirs []string) (string, error) {
	if bin != "" {
		if isExecutable(bin) {
			return bin, nil
		}
		return "", fmt.Errorf("rke2-bin %s is not an executable file", bin)
	}
	for _, dir := range dirs {
		if p := filepath.Join(dir, "rke2"); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("no rke2 executable in %s", strings.Join(dirs, ", "))
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// RKE2Version runs `bin --version` and returns the version it prints.
func RKE2Version(ctx context.Context, bin string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", bin, err)
	}
	return parseRKE2Version(out)
}

// parseRKE2Version returns the version `rke2 --version` printed, in
// canonical form.
func parseRKE2Version(out []byte) (string, error) {
	v, err := rke2version.FromOutput(out)
	if err != nil {
		return "", err
	}
	return v.String(), nil
}

// sameVersion compares two versions as RKE2 releases; text that is not
// one compares as text, without the leading v.
func sameVersion(a, b string) bool {
	va, errA := rke2version.Parse(a)
	vb, errB := rke2version.Parse(b)
	if errA != nil || errB != nil {
		return strings.TrimPrefix(a, "v") == strings.TrimPrefix(b, "v")
	}
	return va == vb
}

// copyImages copies kube-vip*.tar* archives from the airgap folder into
// <data-dir>/agent/images/, where RKE2 imports them at start.
func copyImages(artifactPath, dataDir string, log *zap.Logger) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(artifactPath, "kube-vip*.tar*"))
	if err != nil {
		return nil, fmt.Errorf("installer: artifact-path %s: %w", artifactPath, err)
	}
	if len(matches) == 0 {
		log.Warn("no kube-vip image archive (kube-vip*.tar*) in artifact-path: the kube-vip image must come from a registry",
			zap.String("artifact-path", artifactPath))
		return nil, nil
	}
	dest := ImagesDir(dataDir)
	if err := os.MkdirAll(dest, 0o700); err != nil {
		return nil, fmt.Errorf("installer: image folder: %w", err)
	}
	var copied []string
	for _, src := range matches {
		if fi, err := os.Stat(src); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		dst := filepath.Join(dest, filepath.Base(src))
		if sameFile(src, dst) {
			continue
		}
		if err := copyFile(src, dst); err != nil {
			return copied, fmt.Errorf("installer: copy image archive %s: %w", src, err)
		}
		log.Info("copied image archive", zap.String("from", src), zap.String("to", dst))
		copied = append(copied, dst)
	}
	return copied, nil
}

// copyFile streams src into a temporary file beside dst and renames it.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = io.Copy(tmp, in)
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

func sameFile(a, b string) bool {
	ha, err := fileHash(a)
	if err != nil {
		return false
	}
	hb, err := fileHash(b)
	return err == nil && ha == hb
}

func fileHash(path string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}
