package installer

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const (
	meminfo16G = "MemTotal:       16318480 kB\nMemFree:         1000000 kB\n"
	meminfo4G  = "MemTotal:        3880000 kB\n" // a 4 GiB VM
	meminfo2G  = "MemTotal:        2000000 kB\n"
	swapsOff   = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
	swapsOn    = swapsOff + "/dev/sda2                               partition\t2097148\t\t0\t\t-2\n"
)

func procDir(t *testing.T, meminfo, swaps string) string {
	dir := t.TempDir()
	if meminfo != "" {
		os.WriteFile(filepath.Join(dir, "meminfo"), []byte(meminfo), 0o644)
	}
	if swaps != "" {
		os.WriteFile(filepath.Join(dir, "swaps"), []byte(swaps), 0o644)
	}
	return dir
}

// fakeListen fails for the ports in busy with their error.
func fakeListen(busy map[string]error) func(string, string) (net.Listener, error) {
	return func(network, addr string) (net.Listener, error) {
		_, port, _ := net.SplitHostPort(addr)
		if err := busy[port]; err != nil {
			return nil, &net.OpError{Op: "listen", Net: network, Err: os.NewSyscallError("bind", err)}
		}
		return net.Listen("tcp", "127.0.0.1:0")
	}
}

func TestPreflight(t *testing.T) {
	goodHost := func(t *testing.T) PreflightOptions {
		return PreflightOptions{
			Role:    RoleServer,
			NodeIP:  "10.0.0.11",
			UID:     func() int { return 0 },
			NumCPU:  func() int { return 8 },
			ProcDir: procDir(t, meminfo16G, swapsOff),
			Listen:  fakeListen(nil),
		}
	}
	tests := []struct {
		name string
		edit func(*testing.T, *PreflightOptions)
		want map[string]string // check name → "status: detail part"
	}{
		{"good server", func(*testing.T, *PreflightOptions) {}, map[string]string{
			CheckRoot: "ok: running as root", "port 6443/tcp": "ok: free on 10.0.0.11:6443", "port 2380/tcp": "ok",
			CheckCPU: "ok: 8 CPUs", CheckMemory: "ok: 15.6 GiB", CheckSwap: "ok: swap is off",
		}},
		{"not root", func(t *testing.T, o *PreflightOptions) { o.UID = func() int { return 1000 } }, map[string]string{
			CheckRoot: "fail: running as uid 1000: installing and running RKE2 needs root",
		}},
		{"small server", func(t *testing.T, o *PreflightOptions) {
			o.NumCPU = func() int { return 2 }
			o.ProcDir = procDir(t, meminfo2G, swapsOn)
		}, map[string]string{
			CheckCPU: "warn: 2 CPUs; an RKE2 server wants at least 4", CheckMemory: "warn: 1.9 GiB; an RKE2 server wants at least 4 GiB",
			CheckSwap: "warn: swap is on (/dev/sda2)",
		}},
		{"4 GiB VM passes", func(t *testing.T, o *PreflightOptions) { o.ProcDir = procDir(t, meminfo4G, swapsOff) }, map[string]string{
			CheckMemory: "ok: 3.7 GiB",
		}},
		{"small agent is fine", func(t *testing.T, o *PreflightOptions) {
			o.Role = RoleAgent
			o.NumCPU = func() int { return 1 }
			o.ProcDir = procDir(t, meminfo2G, swapsOff)
		}, map[string]string{CheckCPU: "ok: 1 CPUs", CheckMemory: "ok: 1.9 GiB", "port 10250/tcp": "ok", "port 6443/tcp": "", "port 2379/tcp": ""},
		},
		{"ports busy", func(t *testing.T, o *PreflightOptions) {
			o.Listen = fakeListen(map[string]error{"9345": syscall.EADDRINUSE, "2379": syscall.EACCES})
		}, map[string]string{
			"port 9345/tcp": "fail: 10.0.0.11:9345 is in use by another process", "port 2379/tcp": "fail: cannot listen on 10.0.0.11:2379",
			"port 6443/tcp": "ok",
		}},
		{"node ip not here", func(t *testing.T, o *PreflightOptions) {
			o.Listen = fakeListen(map[string]error{"6443": syscall.EADDRNOTAVAIL})
		}, map[string]string{"port 6443/tcp": "fail: node address 10.0.0.11 is not an address of this host"}},
		{"running server adopted", func(t *testing.T, o *PreflightOptions) {
			o.Listen = fakeListen(map[string]error{"9345": syscall.EADDRINUSE})
			o.Found = &FoundRKE2{Installed: true, Bin: "/usr/local/bin/rke2", Version: "v1.36.4+rke2r1", Running: RoleServer,
				HasDatastore: true, Datastore: "/var/lib/rancher/rke2/server/db/etcd"}
		}, map[string]string{
			"port 9345/tcp": "ok: in use on 10.0.0.11:9345 by the running rke2-server.service (adopted)",
			CheckRKE2:       "ok: rke2-server.service v1.36.4+rke2r1 is running: it will be adopted",
			CheckDatastore:  "warn: /var/lib/rancher/rke2/server/db/etcd exists",
		}},
		{"wrong role running", func(t *testing.T, o *PreflightOptions) {
			o.Found = &FoundRKE2{Installed: true, Running: RoleAgent}
		}, map[string]string{CheckRKE2: "fail: rke2-agent.service is running but this host's role is server"}},
		{"installed", func(t *testing.T, o *PreflightOptions) {
			o.Found = &FoundRKE2{Installed: true, Bin: "/opt/rke2/bin/rke2", Version: "v1.35.0+rke2r1"}
		}, map[string]string{CheckRKE2: "ok: rke2 v1.35.0+rke2r1 installed at /opt/rke2/bin/rke2", CheckDatastore: ""}},
		{"no proc files", func(t *testing.T, o *PreflightOptions) { o.ProcDir = procDir(t, "", "") }, map[string]string{
			CheckMemory: "warn: cannot read memory size", CheckSwap: "warn: cannot read swap devices",
		}},
		{"bad meminfo", func(t *testing.T, o *PreflightOptions) { o.ProcDir = procDir(t, "MemFree: 1 kB\n", swapsOff) }, map[string]string{
			CheckMemory: "warn: meminfo: no MemTotal line",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := goodHost(t)
			tc.edit(t, &opts)
			got := map[string]string{}
			for _, c := range Preflight(opts) {
				got[c.Name] = fmt.Sprintf("%s: %s", c.Status, c.Detail)
			}
			for name, want := range tc.want {
				have, ok := got[name]
				if want == "" {
					if ok {
						t.Errorf("unexpected check %s: %s", name, have)
					}
					continue
				}
				if !strings.HasPrefix(have, want) {
					t.Errorf("%s = %q, want prefix %q", name, have, want)
				}
			}
		})
	}
}

func TestPreflightRealPorts(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := held.Addr().(*net.TCPAddr).Port
	c := checkPort(PreflightOptions{Role: RoleServer, NodeIP: "127.0.0.1", Listen: net.Listen}, port)
	if c.Status != StatusFail || !strings.Contains(c.Detail, "in use by another process") {
		t.Fatalf("check = %+v", c)
	}
	c = checkPort(PreflightOptions{Role: RoleServer, NodeIP: "192.0.2.1", Listen: net.Listen}, port)
	if c.Status != StatusFail || !strings.Contains(c.Detail, "not an address of this host") {
		t.Fatalf("check = %+v", c)
	}
}

func TestPreflightDropIns(t *testing.T) {
	dir := t.TempDir()
	dropins := filepath.Join(dir, "config.yaml.d")
	os.MkdirAll(dropins, 0o700)
	check := func() Check {
		for _, c := range Preflight(PreflightOptions{Role: RoleAgent, RKE2ConfigDir: dir, ProcDir: procDir(t, meminfo16G, swapsOff),
			UID: func() int { return 0 }, Listen: fakeListen(nil)}) {
			if c.Name == CheckDropIns {
				return c
			}
		}
		t.Fatal("no drop-in check")
		return Check{}
	}
	if c := check(); c.Status != StatusOK || c.Detail != "0 drop-ins, none sets a key rke2-hanode owns" {
		t.Fatalf("check = %+v", c)
	}
	os.WriteFile(filepath.Join(dropins, "10-cni.yaml"), []byte("cni: cilium\n"), 0o600)
	os.WriteFile(filepath.Join(dropins, "20-sans.yaml"), []byte("tls-san+: [x]\ntoken: other\n"), 0o600)
	os.WriteFile(filepath.Join(dropins, "30-bad.yaml"), []byte("- a list\n"), 0o600)
	c := check()
	if c.Status != StatusWarn || !strings.Contains(c.Detail, "20-sans.yaml sets tls-san+, token") ||
		!strings.Contains(c.Detail, "30-bad.yaml is not a YAML map") || strings.Contains(c.Detail, "10-cni") {
		t.Fatalf("check = %+v", c)
	}
}

// RKE2 reads *.yml drop-ins as well as *.yaml, all by name.
func TestDropInsInRKE2Order(t *testing.T) {
	dir := t.TempDir()
	d := filepath.Join(dir, "config.yaml.d")
	os.MkdirAll(filepath.Join(d, "90-folder.yaml"), 0o700)
	for _, name := range []string{"20-b.yml", "10-a.yaml", "15-x.txt", "30-c.yaml", "05-z.yml"} {
		os.WriteFile(filepath.Join(d, name), []byte("cni: cilium\n"), 0o600)
	}
	var got []string
	for _, f := range DropIns(dir) {
		got = append(got, filepath.Base(f))
	}
	if want := "05-z.yml 10-a.yaml 20-b.yml 30-c.yaml"; strings.Join(got, " ") != want {
		t.Fatalf("drop-ins %v, want %s", got, want)
	}
	os.WriteFile(filepath.Join(d, "20-b.yml"), []byte("server: https://elsewhere:9345\n"), 0o600)
	c := checkDropIns(dir)
	if c.Status != StatusWarn || !strings.Contains(c.Detail, "20-b.yml sets server") {
		t.Fatalf("check = %+v", c)
	}
}

func TestPreflightOnlineInstall(t *testing.T) {
	run := func(onPath ...string) map[string]Check {
		out := map[string]Check{}
		look := func(name string) (string, error) {
			for _, p := range onPath {
				if p == name {
					return "/usr/bin/" + name, nil
				}
			}
			return "", fmt.Errorf("%s: not found", name)
		}
		for _, c := range Preflight(PreflightOptions{Role: RoleServer, Online: true, LookPath: look, ProcDir: procDir(t, meminfo16G, swapsOff),
			UID: func() int { return 0 }, NumCPU: func() int { return 8 }, Listen: fakeListen(nil)}) {
			out[c.Name] = c
		}
		return out
	}
	c := run()
	if d := c[CheckDownload]; d.Status != StatusFail || !strings.Contains(d.Detail, "neither curl nor wget") || !strings.Contains(d.Detail, "artifact-path") {
		t.Errorf("no curl, no wget: %+v", d)
	}
	c = run("wget")
	if d := c[CheckDownload]; d.Status != StatusOK || !strings.Contains(d.Detail, "/usr/bin/wget") {
		t.Errorf("wget: %+v", d)
	}
	if r := c[CheckRPM]; r.Status != StatusOK || !strings.Contains(r.Detail, "tarball") {
		t.Errorf("no yum: %+v", r)
	}
	c = run("curl", "yum")
	if r := c[CheckRPM]; r.Status != StatusWarn || !strings.Contains(r.Detail, "RPM method") || !strings.Contains(r.Detail, "container-selinux") ||
		!strings.Contains(r.Detail, "rke2-selinux") || !strings.Contains(r.Detail, "network access to the RPM repository") {
		t.Errorf("yum host: %+v", r)
	}
	// Airgap (not online): neither check runs.
	for _, ch := range Preflight(PreflightOptions{Role: RoleServer, ProcDir: procDir(t, meminfo16G, swapsOff), UID: func() int { return 0 }, Listen: fakeListen(nil)}) {
		if ch.Name == CheckDownload || ch.Name == CheckRPM {
			t.Errorf("offline install ran %+v", ch)
		}
	}
}

func TestPreflightCISProfile(t *testing.T) {
	sysctl := t.TempDir()
	run := func(role Role, accounts ...string) []Check {
		has := func(kind string) func(string) error {
			return func(name string) error {
				for _, a := range accounts {
					if a == kind+":"+name {
						return nil
					}
				}
				return fmt.Errorf("unknown %s %s", kind, name)
			}
		}
		var out []Check
		for _, c := range Preflight(PreflightOptions{Role: role, CISProfile: "cis", LookupUser: has("user"), LookupGroup: has("group"), SysctlDir: sysctl,
			ProcDir: procDir(t, meminfo16G, swapsOff), UID: func() int { return 0 }, NumCPU: func() int { return 8 }, Listen: fakeListen(nil)}) {
			if c.Name == CheckCIS {
				out = append(out, c)
			}
		}
		return out
	}
	c := run(RoleServer, "group:etcd")
	if len(c) != 2 || c[0].Status != StatusFail || !strings.Contains(c[0].Detail, "no user etcd") || !strings.Contains(c[0].Detail, "useradd") ||
		c[1].Status != StatusWarn || !strings.Contains(c[1].Detail, "60-rke2-cis.conf is missing") {
		t.Fatalf("server without the etcd user: %+v", c)
	}
	os.WriteFile(filepath.Join(sysctl, "60-rke2-cis.conf"), []byte("vm.panic_on_oom=0\n"), 0o644)
	if c = run(RoleServer, "user:etcd", "group:etcd"); len(c) != 1 || c[0].Status != StatusOK {
		t.Fatalf("prepared server: %+v", c)
	}
	// An agent needs no etcd user, only the kernel parameters.
	if c = run(RoleAgent); len(c) != 0 {
		t.Fatalf("prepared agent: %+v", c)
	}
	os.Remove(filepath.Join(sysctl, "60-rke2-cis.conf"))
	if c = run(RoleAgent); len(c) != 1 || c[0].Status != StatusWarn {
		t.Fatalf("agent without the sysctl drop-in: %+v", c)
	}
}
