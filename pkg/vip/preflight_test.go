package vip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeInterfaces is a host's interfaces as a test wants them.
type fakeInterfaces map[string]fakeInterface

type fakeInterface struct {
	flags net.Flags
	addrs []string // CIDR notation
}

func (f fakeInterfaces) InterfaceByName(name string) (*net.Interface, error) {
	fi, ok := f[name]
	if !ok {
		return nil, errors.New("route ip+net: no such network interface")
	}
	return &net.Interface{Name: name, Flags: fi.flags, HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}, nil
}

func (f fakeInterfaces) Addrs(ifi *net.Interface) ([]net.Addr, error) {
	return cidrAddrs(f[ifi.Name].addrs...)
}

// cidrAddrs returns interface addresses as the net package reports them.
func cidrAddrs(cidrs ...string) ([]net.Addr, error) {
	var out []net.Addr
	for _, cidr := range cidrs {
		ip, ipnet, err := net.ParseCIDR(cidr)
		if err != nil {
			return nil, err
		}
		ipnet.IP = ip
		out = append(out, ipnet)
	}
	return out, nil
}

var testHost = fakeInterfaces{
	"ens3":   {flags: net.FlagUp | net.FlagRunning | net.FlagBroadcast, addrs: []string{"192.168.205.10/24", "fe80::1/64"}},
	"held0":  {flags: net.FlagUp | net.FlagRunning, addrs: []string{"10.1.0.10/24", "10.1.0.200/32"}},
	"down0":  {flags: net.FlagBroadcast, addrs: []string{"10.2.0.10/24"}},
	"nocarr": {flags: net.FlagUp, addrs: []string{"10.3.0.10/24"}},
	"v6only": {flags: net.FlagUp | net.FlagRunning, addrs: []string{"fd00::10/64"}},
	"lo":     {flags: net.FlagUp | net.FlagLoopback | net.FlagRunning, addrs: []string{"127.0.0.1/8", "::1/128"}},
}

var conflictMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc}

func TestPreflight(t *testing.T) {
	type want struct {
		name, status, detail string
	}
	nobody := func(context.Context, string, string) (net.HardwareAddr, error) { return nil, nil }
	answered := func(context.Context, string, string) (net.HardwareAddr, error) { return conflictMAC, nil }
	noRoot := func(context.Context, string, string) (net.HardwareAddr, error) {
		return nil, fmt.Errorf("vip: ARP probe on ens3: %w", os.NewSyscallError("socket", syscall.EPERM))
	}
	broken := func(context.Context, string, string) (net.HardwareAddr, error) {
		return nil, errors.New("vip: ARP probe on ens3: no IPv4 address available for interface")
	}
	mustNotRun := func(context.Context, string, string) (net.HardwareAddr, error) {
		t.Error("ARP probe ran where it must be skipped")
		return nil, nil
	}

	tests := []struct {
		name  string
		iface string
		vip   string
		arp   ARPProber // nil: CheckARP off
		want  []want
	}{
		{"seed, nobody answers", "ens3", "192.168.205.200", nobody, []want{
			{CheckVIP, "ok", "valid IPv4 VIP"},
			{CheckInterface, "ok", "ens3 is up"},
			{CheckSubnet, "ok", "192.168.205.200 is in 192.168.205.0/24 on ens3"},
			{CheckARP, "ok", "no host answered ARP for 192.168.205.200 on ens3"},
		}},
		{"seed without ARP check", "ens3", "192.168.205.200", nil, []want{
			{CheckVIP, "ok", ""}, {CheckInterface, "ok", ""}, {CheckSubnet, "ok", ""},
		}},
		{"conflict names the MAC", "ens3", "192.168.205.200", answered, []want{
			{CheckVIP, "ok", ""}, {CheckInterface, "ok", ""}, {CheckSubnet, "ok", ""},
			{CheckARP, "fail", "192.168.205.200 is already answered for on ens3 by MAC 52:54:00:aa:bb:cc"},
		}},
		{"no root", "ens3", "192.168.205.200", noRoot, []want{
			{CheckVIP, "ok", ""}, {CheckInterface, "ok", ""}, {CheckSubnet, "ok", ""},
			{CheckARP, "warn", "skipped: probing ARP for 192.168.205.200 needs root or CAP_NET_RAW"},
		}},
		{"probe broken", "ens3", "192.168.205.200", broken, []want{
			{CheckVIP, "ok", ""}, {CheckInterface, "ok", ""}, {CheckSubnet, "ok", ""},
			{CheckARP, "warn", "could not probe ARP for 192.168.205.200: vip: ARP probe on ens3: no IPv4 address"},
		}},
		{"lo skips ARP", "lo", "127.0.0.200", mustNotRun, []want{
			{CheckVIP, "ok", ""}, {CheckInterface, "ok", "lo is up"},
			{CheckSubnet, "ok", "127.0.0.200 is in 127.0.0.0/8 on lo"},
			{CheckARP, "ok", "skipped: no ARP on lo"},
		}},
		{"lo with a routable VIP", "lo", "192.168.205.200", mustNotRun, []want{
			{CheckVIP, "ok", ""}, {CheckInterface, "ok", ""},
			{CheckSubnet, "fail", "192.168.205.200 is not inside any IPv4 subnet of lo (127.0.0.1/8)"},
		}},
		{"VIP outside the subnet", "ens3", "10.0.0.200", mustNotRun, []want{
			{CheckVIP, "ok", ""}, {CheckInterface, "ok", ""},
			{CheckSubnet, "fail", "10.0.0.200 is not inside any IPv4 subnet of ens3 (192.168.205.10/24): kube-vip's ARP mode needs the VIP in the interface's L2 subnet"},
		}},
		{"loopback VIP on a NIC", "ens3", "127.0.0.200", mustNotRun, []want{
			{CheckVIP, "ok", ""}, {CheckInterface, "ok", ""},
			{CheckSubnet, "fail", "127.0.0.200 is not inside any IPv4 subnet of ens3"},
		}},
		{"VIP is the host's own address", "ens3", "192.168.205.10", mustNotRun, []want{
			{CheckVIP, "ok", ""}, {CheckInterface, "ok", ""},
			{CheckSubnet, "fail", "192.168.205.10 is this host's own address on ens3 (192.168.205.10/24)"},
		}},
		{"VIP is the network address", "ens3", "192.168.205.0", mustNotRun, []want{
			{CheckVIP, "ok", ""}, {CheckInterface, "ok", ""},
			{CheckSubnet, "fail", "192.168.205.0 is the network address of 192.168.205.0/24 on ens3"},
		}},
		{"VIP is the broadcast address", "ens3", "192.168.205.255", mustNotRun, []want{
			{CheckVIP, "ok", ""}, {CheckInterface, "ok", ""},
			{CheckSubnet, "fail", "192.168.205.255 is the broadcast address of 192.168.205.0/24 on ens3"},
		}},
		{"VIP already held here", "held0", "10.1.0.200", mustNotRun, []want{
			{CheckVIP, "ok", ""}, {CheckInterface, "ok", ""},
			{CheckSubnet, "ok", "10.1.0.200 is in 10.1.0.0/24 on held0"},
			{CheckARP, "warn", "already assigned to held0 on this host"},
		}},
		{"interface missing", "eth9", "192.168.205.200", mustNotRun, []want{
			{CheckVIP, "ok", ""},
			{CheckInterface, "fail", `interface "eth9" not found on this host`},
		}},
		{"interface down", "down0", "10.2.0.200", mustNotRun, []want{
			{CheckVIP, "ok", ""},
			{CheckInterface, "fail", "interface down0 is down"},
		}},
		{"no carrier", "nocarr", "10.3.0.200", nobody, []want{
			{CheckVIP, "ok", ""},
			{CheckInterface, "warn", "nocarr is up but has no carrier"},
			{CheckSubnet, "ok", ""}, {CheckARP, "ok", ""},
		}},
		{"interface without IPv4", "v6only", "10.4.0.200", mustNotRun, []want{
			{CheckVIP, "ok", ""}, {CheckInterface, "ok", ""},
			{CheckSubnet, "fail", "not inside any IPv4 subnet of v6only (no IPv4 addresses)"},
		}},
		{"bad interface name", "eth/0", "192.168.205.200", mustNotRun, []want{
			{CheckVIP, "ok", ""},
			{CheckInterface, "fail", `interface "eth/0" contains '/'`},
		}},
		{"IPv6 VIP", "ens3", "fd00::200", mustNotRun, []want{
			{CheckVIP, "fail", "IPv6 VIPs are not supported yet"},
			{CheckInterface, "ok", ""},
		}},
		{"garbage VIP", "ens3", "vip.example", mustNotRun, []want{
			{CheckVIP, "fail", `vip "vip.example" is not an IP address`},
			{CheckInterface, "ok", ""},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Preflight(context.Background(), PreflightOptions{
				Interface: tc.iface, VIP: tc.vip, CheckARP: tc.arp != nil,
				Interfaces: testHost, ProbeARP: tc.arp,
			})
			if len(got) != len(tc.want) {
				t.Fatalf("got %d checks, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Name != w.name || string(g.Status) != w.status || !strings.Contains(g.Detail, w.detail) {
					t.Errorf("check %d = {%s %s %q}, want {%s %s ~%q}", i, g.Name, g.Status, g.Detail, w.name, w.status, w.detail)
				}
				if g.Status == StatusFail && g.Err == nil {
					t.Errorf("check %s failed without an error", g.Name)
				}
			}
		})
	}
}

func TestPreflightConflictIsPermanent(t *testing.T) {
	checks := Preflight(context.Background(), PreflightOptions{
		Interface: "ens3", VIP: "192.168.205.200", CheckARP: true, Interfaces: testHost,
		ProbeARP: func(context.Context, string, string) (net.HardwareAddr, error) { return conflictMAC, nil },
	})
	err := Failed(checks)
	if !errors.Is(err, ErrVIPConflict) {
		t.Fatalf("Failed() = %v, want it to wrap ErrVIPConflict", err)
	}
	var conflict *ConflictError
	if !errors.As(err, &conflict) || conflict.MAC.String() != conflictMAC.String() || !conflict.Permanent() {
		t.Errorf("conflict = %+v, want MAC %s and permanent", conflict, conflictMAC)
	}
	if err := Failed(checks[:3]); err != nil {
		t.Errorf("Failed(passing checks) = %v, want nil", err)
	}
}

func TestPreflightARPTimeoutBoundsProbe(t *testing.T) {
	var deadline time.Time
	Preflight(context.Background(), PreflightOptions{
		Interface: "ens3", VIP: "192.168.205.200", CheckARP: true, Interfaces: testHost,
		ARPTimeout: 300 * time.Millisecond,
		ProbeARP: func(ctx context.Context, _, _ string) (net.HardwareAddr, error) {
			deadline, _ = ctx.Deadline()
			return nil, nil
		},
	})
	if left := time.Until(deadline); deadline.IsZero() || left > 300*time.Millisecond {
		t.Errorf("probe context deadline in %v, want at most 300ms", left)
	}
}

func TestProbeARPInputErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		iface, vip, wantErr string
	}{
		{"lo", "fd00::1", "not supported yet"},
		{"no-such-if0", "10.0.0.1", "vip: ARP probe on no-such-if0"},
		{"lo", "127.0.0.200", "has no link-layer address"},
	}
	for _, tc := range tests {
		mac, err := ProbeARP(ctx, tc.iface, tc.vip)
		if err == nil || mac != nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ProbeARP(%s, %s) = %v, %v; want error containing %q", tc.iface, tc.vip, mac, err, tc.wantErr)
		}
	}
}
