package vip

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
)

const procNetARP = `IP address       HW type     Flags       HW address            Mask     Device
192.168.205.1    0x1         0x2         52:54:00:00:00:01     *        ens3
192.168.205.200  0x1         0x2         52:54:00:00:00:12     *        ens3
192.168.205.77   0x1         0x0         00:00:00:00:00:00     *        ens3
192.168.205.99   0x1         0x2         52:54:00:00:00:99     *        ens3
`

func mustMAC(s string) net.HardwareAddr {
	mac, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return mac
}

var testMembers = []MemberMAC{
	{Name: "server-1", MAC: mustMAC("52:54:00:00:00:11")},
	{Name: "server-2", MAC: mustMAC("52:54:00:00:00:12")},
	{Name: "server-3", MAC: mustMAC("52:54:00:00:00:13")},
}

func TestParseProcNetARP(t *testing.T) {
	got, err := parseProcNetARP(strings.NewReader(procNetARP))
	if err != nil {
		t.Fatal(err)
	}
	want := []Neighbour{
		{IP: netip.MustParseAddr("192.168.205.1"), MAC: mustMAC("52:54:00:00:00:01"), Device: "ens3"},
		{IP: netip.MustParseAddr("192.168.205.200"), MAC: mustMAC("52:54:00:00:00:12"), Device: "ens3"},
		{IP: netip.MustParseAddr("192.168.205.99"), MAC: mustMAC("52:54:00:00:00:99"), Device: "ens3"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d (the incomplete one skipped): %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].IP != want[i].IP || got[i].MAC.String() != want[i].MAC.String() || got[i].Device != want[i].Device {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestHolder(t *testing.T) {
	hostAddrs := func(cidrs ...string) func() ([]net.Addr, error) {
		return func() ([]net.Addr, error) { return cidrAddrs(cidrs...) }
	}
	table := func() ([]Neighbour, error) { return parseProcNetARP(strings.NewReader(procNetARP)) }
	noTable := func() ([]Neighbour, error) { return nil, errors.New("open /proc/net/arp: no such file or directory") }
	loopbackHolder := func(string) (string, bool, error) { return "server-3", false, nil }

	tests := []struct {
		name        string
		vip         string
		cfg         ProberConfig
		wantName    string
		wantLocal   bool
		wantErr     string
		wantLocalG  float64
		wantUnknown bool
	}{
		{name: "held here", vip: "192.168.205.200",
			cfg:      ProberConfig{NodeName: "server-1", LocalAddrs: hostAddrs("192.168.205.10/24", "192.168.205.200/32"), Neighbours: noTable},
			wantName: "server-1", wantLocal: true, wantLocalG: 1},
		{name: "held by a member", vip: "192.168.205.200",
			cfg:      ProberConfig{NodeName: "server-1", LocalAddrs: hostAddrs("192.168.205.10/24"), Neighbours: table},
			wantName: "server-2"},
		{name: "held by a stranger", vip: "192.168.205.99",
			cfg:     ProberConfig{LocalAddrs: hostAddrs("192.168.205.10/24"), Neighbours: table},
			wantErr: "it answers from MAC 52:54:00:00:00:99 on ens3, which no member advertises", wantUnknown: true},
		{name: "not in the table yet", vip: "192.168.205.201",
			cfg:     ProberConfig{LocalAddrs: hostAddrs("192.168.205.10/24"), Neighbours: table},
			wantErr: "no neighbour entry for it yet", wantUnknown: true},
		{name: "incomplete entry is no holder", vip: "192.168.205.77",
			cfg:     ProberConfig{LocalAddrs: hostAddrs("192.168.205.10/24"), Neighbours: table},
			wantErr: "no neighbour entry for it yet", wantUnknown: true},
		{name: "neighbour table unreadable", vip: "192.168.205.200",
			cfg:     ProberConfig{LocalAddrs: hostAddrs("192.168.205.10/24"), Neighbours: noTable},
			wantErr: "neighbour table: open /proc/net/arp"},
		{name: "loopback without override", vip: "127.0.0.200",
			cfg:     ProberConfig{LocalAddrs: hostAddrs("127.0.0.1/8")},
			wantErr: "on lo every host has every 127.x address", wantUnknown: true},
		{name: "loopback with override", vip: "127.0.0.200",
			cfg:      ProberConfig{LoopbackHolder: loopbackHolder},
			wantName: "server-3"},
		{name: "loopback override says local", vip: "127.0.0.200",
			cfg:      ProberConfig{LoopbackHolder: func(string) (string, bool, error) { return "server-1", true, nil }},
			wantName: "server-1", wantLocal: true, wantLocalG: 1},
		{name: "IPv6 VIP", vip: "fd00::200", wantErr: "not supported yet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestProber(t, tc.cfg)
			p.metrics.local.Set(-1) // so that a forgotten update shows
			name, local, err := p.Holder(tc.vip, testMembers)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Holder error = %v, want it to contain %q", err, tc.wantErr)
				}
				if errors.Is(err, ErrHolderUnknown) != tc.wantUnknown {
					t.Errorf("errors.Is(%v, ErrHolderUnknown) = %v, want %v", err, !tc.wantUnknown, tc.wantUnknown)
				}
				return
			}
			if err != nil || name != tc.wantName || local != tc.wantLocal {
				t.Fatalf("Holder = %q, %v, %v; want %q, %v", name, local, err, tc.wantName, tc.wantLocal)
			}
			if got := metricValue(t, p.metrics.local).GetGauge().GetValue(); got != tc.wantLocalG {
				t.Errorf("rke2_hanode_vip_local = %v, want %v", got, tc.wantLocalG)
			}
		})
	}
}

// FuzzParseProcNetARP: the parser must never panic and only return complete
// IPv4 entries with a non-zero MAC.
func FuzzParseProcNetARP(f *testing.F) {
	f.Add(procNetARP)
	f.Add("IP address HW type Flags HW address Mask Device\n")
	f.Add("10.0.0.1 0x1 0x6 aa:bb:cc:dd:ee:ff * eth0\n")
	f.Add("fe80::1 0x1 0x2 aa:bb:cc:dd:ee:ff * eth0\n10.0.0.1 0x1 0xzz aa * eth0\n")
	f.Fuzz(func(t *testing.T, table string) {
		got, _ := parseProcNetARP(strings.NewReader(table))
		for _, n := range got {
			if !n.IP.Is4() || len(n.MAC) == 0 || isZeroMAC(n.MAC) || n.Device == "" {
				t.Fatalf("bad entry %+v from %q", n, table)
			}
		}
	})
}
