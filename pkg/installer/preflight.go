package installer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"github.com/rke2-hanode/rke2-hanode/pkg/check"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"go.yaml.in/yaml/v3"
)

// Status and Check are the shared preflight shapes (pkg/check).
type (
	Status = check.Status
	Check  = check.Check
)

// Check outcomes.
const (
	StatusOK   = check.OK
	StatusWarn = check.Warn
	StatusFail = check.Fail
)

// Names of the host checks.
const (
	CheckRoot      = "root"
	CheckCPU       = "cpu"
	CheckMemory    = "memory"
	CheckSwap      = "swap"
	CheckRKE2      = "rke2"
	CheckDatastore = "rke2 datastore"
	CheckDropIns   = "rke2 config drop-ins"
	CheckDownload  = "download tool"
	CheckRPM       = "install method"
	CheckCIS       = "cis profile"
)

// Server minimums (the runbook's 4 CPU / 4 GiB). MemTotal is below the
// installed RAM by what the kernel keeps, so 90% of 4 GiB passes.
const (
	minServerCPUs     = 4
	minServerMemBytes = 4 << 30
	memSlack          = 0.9
)

// PortsFor are the TCP ports RKE2 listens on for role: the apiserver and
// supervisor (6443, 9345) and etcd (2379, 2380) on servers, the kubelet
// (10250) everywhere, since agents run a kubelet too.
func PortsFor(role Role) []int {
	if role == RoleAgent {
		return []int{10250}
	}
	return []int{6443, 9345, 2379, 2380, 10250}
}

// PreflightOptions says what to check; the host is reached through the
// injectable fields so tests can play any host.
type PreflightOptions struct {
	Role Role
	// NodeIP is where RKE2 will listen ("" checks all addresses).
	NodeIP string
	// Found is the Inspect result; nil skips the install checks, and a
	// running service of Role makes its ports' use expected.
	Found *FoundRKE2
	// RKE2ConfigDir, when set, has its config.yaml.d drop-ins checked for
	// keys rke2-hanode owns (RKE2 reads them after config.yaml).
	RKE2ConfigDir string
	// Online says the install script will download RKE2 (install-method
	// script without artifact-path): it needs curl or wget, and on a host
	// with yum it takes the RPM method.
	Online bool
	// LookPath finds a program on PATH (nil: exec.LookPath).
	LookPath func(string) (string, error)
	// CISProfile is RKE2's profile setting (rke2-config profile), "" for
	// none; on servers its host prerequisites are checked.
	CISProfile string
	// LookupUser and LookupGroup find an account (nil: os/user).
	LookupUser  func(string) error
	LookupGroup func(string) error
	// SysctlDir holds the host's sysctl drop-ins ("" = /etc/sysctl.d).
	SysctlDir string
	// UID returns the effective uid (nil: os.Geteuid).
	UID func() int
	// NumCPU returns usable CPUs (nil: runtime.NumCPU).
	NumCPU func() int
	// ProcDir holds meminfo and swaps (""= /proc).
	ProcDir string
	// Listen tries a port (nil: net.Listen).
	Listen func(network, address string) (net.Listener, error)
}

// Preflight checks the host for RKE2: root, free ports, the server
// minimums (as warnings), swap, and an RKE2 already there.
func Preflight(opts PreflightOptions) []Check {
	if opts.UID == nil {
		opts.UID = os.Geteuid
	}
	if opts.NumCPU == nil {
		opts.NumCPU = runtime.NumCPU
	}
	if opts.ProcDir == "" {
		opts.ProcDir = "/proc"
	}
	if opts.Listen == nil {
		opts.Listen = net.Listen
	}
	if opts.LookPath == nil {
		opts.LookPath = exec.LookPath
	}
	server := opts.Role != RoleAgent
	var checks []Check

	if uid := opts.UID(); uid != 0 {
		checks = append(checks, Check{Name: CheckRoot, Status: StatusFail, Detail: fmt.Sprintf("running as uid %d: installing and running RKE2 needs root", uid)})
	} else {
		checks = append(checks, Check{Name: CheckRoot, Status: StatusOK, Detail: "running as root"})
	}

	for _, port := range PortsFor(opts.Role) {
		checks = append(checks, checkPort(opts, port))
	}

	cpus := opts.NumCPU()
	switch {
	case server && cpus < minServerCPUs:
		checks = append(checks, Check{Name: CheckCPU, Status: StatusWarn, Detail: fmt.Sprintf("%d CPUs; an RKE2 server wants at least %d", cpus, minServerCPUs)})
	default:
		checks = append(checks, Check{Name: CheckCPU, Status: StatusOK, Detail: fmt.Sprintf("%d CPUs", cpus)})
	}

	checks = append(checks, checkMemory(opts.ProcDir, server), checkSwap(opts.ProcDir))
	if opts.Found != nil {
		checks = append(checks, checkExisting(*opts.Found, opts.Role)...)
	}
	if opts.RKE2ConfigDir != "" {
		checks = append(checks, checkDropIns(opts.RKE2ConfigDir))
	}
	if opts.CISProfile != "" {
		checks = append(checks, checkCIS(opts, server)...)
	}
	if opts.Online && (opts.Found == nil || opts.Found.Running == "") {
		checks = append(checks, checkOnlineInstall(opts.LookPath)...)
	}
	return checks
}

// checkCIS checks what RKE2 checks at start with a CIS profile, and exits
// without: an etcd user and group on servers; and whether RKE2's CIS kernel
// parameters were installed as a sysctl drop-in (every host).
func checkCIS(opts PreflightOptions, server bool) []Check {
	lookUser, lookGroup := opts.LookupUser, opts.LookupGroup
	if lookUser == nil {
		lookUser = func(name string) error { _, err := user.Lookup(name); return err }
	}
	if lookGroup == nil {
		lookGroup = func(name string) error { _, err := user.LookupGroup(name); return err }
	}
	dir := opts.SysctlDir
	if dir == "" {
		dir = "/etc/sysctl.d"
	}
	var missing []string
	if server && lookUser("etcd") != nil {
		missing = append(missing, "user etcd")
	}
	if server && lookGroup("etcd") != nil {
		missing = append(missing, "group etcd")
	}
	var checks []Check
	switch {
	case !server:
	case len(missing) > 0:
		checks = append(checks, Check{Name: CheckCIS, Status: StatusFail, Detail: fmt.Sprintf(
			"profile %s: no %s on this server, and RKE2 exits at start without them: useradd -r -c \"etcd user\" -s /sbin/nologin -M -U etcd", opts.CISProfile, strings.Join(missing, " or "))})
	default:
		checks = append(checks, Check{Name: CheckCIS, Status: StatusOK, Detail: "profile " + opts.CISProfile + ": the etcd user and group exist"})
	}
	conf := filepath.Join(dir, "60-rke2-cis.conf")
	if _, err := os.Stat(conf); err != nil {
		checks = append(checks, Check{Name: CheckCIS, Status: StatusWarn, Detail: fmt.Sprintf(
			"profile %s: %s is missing: copy RKE2's rke2-cis-sysctl.conf there and run systemctl restart systemd-sysctl, or RKE2 exits on the kernel parameters it checks", opts.CISProfile, conf)})
	}
	return checks
}

// checkOnlineInstall: the install script downloads with curl or wget, and
// where yum exists it installs RPMs instead of the tarball.
func checkOnlineInstall(lookPath func(string) (string, error)) []Check {
	var checks []Check
	var tool string
	for _, name := range []string{"curl", "wget"} {
		if p, err := lookPath(name); err == nil {
			tool = p
			break
		}
	}
	if tool == "" {
		checks = append(checks, Check{Name: CheckDownload, Status: StatusFail, Detail: "neither curl nor wget is on PATH: the RKE2 install script downloads with one of them; install curl, or install from an airgap folder with artifact-path"})
	} else {
		checks = append(checks, Check{Name: CheckDownload, Status: StatusOK, Detail: tool + " (the install script downloads with it)"})
	}
	if p, err := lookPath("yum"); err == nil {
		checks = append(checks, Check{Name: CheckRPM, Status: StatusWarn, Detail: fmt.Sprintf(
			"%s is on PATH, so the install script takes the RPM method: it adds RKE2's yum repositories for the channel or version, installs the rke2 packages and rke2-selinux, "+
				"which needs container-selinux from the distribution's repositories, and needs network access to the RPM repository; "+
				"to install the tarball instead, install from an airgap folder with artifact-path", p)})
	} else {
		checks = append(checks, Check{Name: CheckRPM, Status: StatusOK, Detail: "tarball (no yum on this host)"})
	}
	return checks
}

func checkPort(opts PreflightOptions, port int) Check {
	name := fmt.Sprintf("port %d/tcp", port)
	addr := net.JoinHostPort(opts.NodeIP, strconv.Itoa(port))
	l, err := opts.Listen("tcp", addr)
	if err == nil {
		l.Close()
		return Check{Name: name, Status: StatusOK, Detail: "free on " + addr}
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE) && opts.Found != nil && opts.Found.Running == opts.Role:
		return Check{Name: name, Status: StatusOK, Detail: fmt.Sprintf("in use on %s by the running %s (adopted)", addr, UnitName(opts.Role))}
	case errors.Is(err, syscall.EADDRINUSE):
		return Check{Name: name, Status: StatusFail, Detail: fmt.Sprintf("%s is in use by another process: RKE2 needs it", addr)}
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return Check{Name: name, Status: StatusFail, Detail: fmt.Sprintf("node address %s is not an address of this host", opts.NodeIP)}
	default:
		return Check{Name: name, Status: StatusFail, Detail: fmt.Sprintf("cannot listen on %s: %v", addr, err)}
	}
}

func checkMemory(procDir string, server bool) Check {
	data, err := os.ReadFile(filepath.Join(procDir, "meminfo"))
	if err != nil {
		return Check{Name: CheckMemory, Status: StatusWarn, Detail: fmt.Sprintf("cannot read memory size: %v", err)}
	}
	total, err := memTotal(data)
	if err != nil {
		return Check{Name: CheckMemory, Status: StatusWarn, Detail: err.Error()}
	}
	gib := float64(total) / (1 << 30)
	if server && float64(total) < memSlack*minServerMemBytes {
		return Check{Name: CheckMemory, Status: StatusWarn, Detail: fmt.Sprintf("%.1f GiB; an RKE2 server wants at least 4 GiB", gib)}
	}
	return Check{Name: CheckMemory, Status: StatusOK, Detail: fmt.Sprintf("%.1f GiB", gib)}
}

// memTotal reads MemTotal (in bytes) from /proc/meminfo.
func memTotal(meminfo []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil || kb <= 0 {
				return 0, fmt.Errorf("meminfo: bad MemTotal %q", fields[1])
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("meminfo: no MemTotal line")
}

func checkSwap(procDir string) Check {
	data, err := os.ReadFile(filepath.Join(procDir, "swaps"))
	if err != nil {
		return Check{Name: CheckSwap, Status: StatusWarn, Detail: fmt.Sprintf("cannot read swap devices: %v", err)}
	}
	var devices []string
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for _, line := range lines[1:] { // the first line is the header
		if fields := strings.Fields(line); len(fields) > 0 {
			devices = append(devices, fields[0])
		}
	}
	if len(devices) > 0 {
		return Check{Name: CheckSwap, Status: StatusWarn, Detail: "swap is on (" + strings.Join(devices, ", ") + "): Kubernetes expects it off (swapoff -a)"}
	}
	return Check{Name: CheckSwap, Status: StatusOK, Detail: "swap is off"}
}

func checkExisting(st FoundRKE2, role Role) []Check {
	var checks []Check
	switch {
	case st.Running != "" && st.Running != role:
		checks = append(checks, Check{Name: CheckRKE2, Status: StatusFail, Detail: fmt.Sprintf("%s is running but this host's role is %s", UnitName(st.Running), role)})
	case st.Running == role:
		checks = append(checks, Check{Name: CheckRKE2, Status: StatusOK, Detail: fmt.Sprintf("%s %s is running: it will be adopted, not reinstalled", UnitName(role), st.Version)})
	case st.Installed:
		checks = append(checks, Check{Name: CheckRKE2, Status: StatusOK, Detail: fmt.Sprintf("rke2 %s installed at %s", st.Version, st.Bin)})
	default:
		checks = append(checks, Check{Name: CheckRKE2, Status: StatusOK, Detail: "not installed yet"})
	}
	if st.HasDatastore {
		checks = append(checks, Check{Name: CheckDatastore, Status: StatusWarn, Detail: fmt.Sprintf(
			"%s exists: RKE2 will resume it and ignore server:; only this cluster's bootstrap node or a member of this cluster may start on it", st.Datastore)})
	}
	return checks
}

// DropIns lists RKE2's config.yaml.d files in the order RKE2 reads them:
// every *.yaml and *.yml, by name.
func DropIns(configDir string) []string {
	entries, err := os.ReadDir(filepath.Join(configDir, "config.yaml.d"))
	if err != nil {
		return nil
	}
	var files []string
	for _, e := range entries { // os.ReadDir sorts by name
		if name := e.Name(); !e.IsDir() && (strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			files = append(files, filepath.Join(configDir, "config.yaml.d", name))
		}
	}
	return files
}

// checkDropIns warns about config.yaml.d files that set keys rke2-hanode
// writes: RKE2 reads them after config.yaml, so they would win or merge.
func checkDropIns(configDir string) Check {
	files := DropIns(configDir)
	var problems []string
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", file, err))
			continue
		}
		var keys map[string]any
		if err := yaml.Unmarshal(data, &keys); err != nil {
			problems = append(problems, fmt.Sprintf("%s is not a YAML map", file))
			continue
		}
		var owned []string
		for k := range keys {
			if isOwnedKey(k) {
				owned = append(owned, k)
			}
		}
		if len(owned) > 0 {
			sort.Strings(owned)
			problems = append(problems, fmt.Sprintf("%s sets %s", file, strings.Join(owned, ", ")))
		}
	}
	if len(problems) > 0 {
		return Check{Name: CheckDropIns, Status: StatusWarn, Detail: strings.Join(problems, "; ") + ": these override what rke2-hanode writes into config.yaml"}
	}
	return Check{Name: CheckDropIns, Status: StatusOK, Detail: fmt.Sprintf("%d drop-ins, none sets a key rke2-hanode owns", len(files))}
}
