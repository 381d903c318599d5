package vip

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// ErrHolderUnknown is wrapped when Holder cannot tell who holds the VIP.
var ErrHolderUnknown = errors.New("vip: holder unknown")

// MemberMAC is a cluster member and the MAC address of its VIP interface,
// as it advertises them in gossip.
type MemberMAC struct {
	Name string
	MAC  net.HardwareAddr
}

// Neighbour is one complete entry of the IPv4 neighbour (ARP) table.
type Neighbour struct {
	IP     netip.Addr
	MAC    net.HardwareAddr
	Device string
}

// Holder tells which member holds the VIP. This host holds it when the VIP
// is one of its addresses (local is true and name is cfg.NodeName). Else the
// holder is the member whose MAC the neighbour table shows for the VIP; the
// entry exists once this host has talked to the VIP, so call Holder after a
// probe. It also sets rke2_hanode_vip_local.
//
// On loopback (the demo and tests) every host owns all of 127.0.0.0/8 and
// there is no MAC, so the holder is unknown by address or MAC: Holder asks
// cfg.LoopbackHolder, or returns ErrHolderUnknown without it.
func (p *Prober) Holder(vip string, members []MemberMAC) (name string, local bool, err error) {
	addr, err := ParseVIP(vip)
	if err != nil {
		return "", false, err
	}
	if addr.IsLoopback() {
		if p.cfg.LoopbackHolder == nil {
			return "", false, fmt.Errorf("vip: holder of %s: %w: on lo every host has every 127.x address, so neither address nor MAC tells the holder", vip, ErrHolderUnknown)
		}
		name, local, err = p.cfg.LoopbackHolder(vip)
		if err != nil {
			return "", false, fmt.Errorf("vip: holder of %s: %w", vip, err)
		}
		p.setLocal(local)
		return name, local, nil
	}

	localAddrs := p.cfg.LocalAddrs
	if localAddrs == nil {
		localAddrs = net.InterfaceAddrs
	}
	addrs, err := localAddrs()
	if err != nil {
		return "", false, fmt.Errorf("vip: holder of %s: local addresses: %w", vip, err)
	}
	for _, a := range addrs {
		if addrOf(a) == addr {
			p.setLocal(true)
			return p.cfg.NodeName, true, nil
		}
	}
	p.setLocal(false)

	neighbours := p.cfg.Neighbours
	if neighbours == nil {
		neighbours = readProcNetARP
	}
	table, err := neighbours()
	if err != nil {
		return "", false, fmt.Errorf("vip: holder of %s: neighbour table: %w", vip, err)
	}
	for _, n := range table {
		if n.IP != addr {
			continue
		}
		for _, m := range members {
			if bytes.Equal(m.MAC, n.MAC) {
				return m.Name, false, nil
			}
		}
		return "", false, fmt.Errorf("vip: holder of %s: %w: it answers from MAC %s on %s, which no member advertises",
			vip, ErrHolderUnknown, n.MAC, n.Device)
	}
	return "", false, fmt.Errorf("vip: holder of %s: %w: no neighbour entry for it yet (probe the VIP first)", vip, ErrHolderUnknown)
}

func (p *Prober) setLocal(local bool) {
	if local {
		p.metrics.local.Set(1)
	} else {
		p.metrics.local.Set(0)
	}
}

func addrOf(a net.Addr) netip.Addr {
	var ip net.IP
	switch v := a.(type) {
	case *net.IPNet:
		ip = v.IP
	case *net.IPAddr:
		ip = v.IP
	default:
		return netip.Addr{}
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}

func readProcNetARP() ([]Neighbour, error) {
	f, err := os.Open("/proc/net/arp")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseProcNetARP(f)
}

// arpFlagComplete is ATF_COM: the entry has a resolved MAC.
const arpFlagComplete = 0x2

// parseProcNetARP reads the kernel's /proc/net/arp table:
//
//	IP address       HW type     Flags       HW address            Mask     Device
//	192.168.205.200  0x1         0x2         52:54:00:12:34:56     *        ens3
//
// and returns its complete entries. Lines it cannot read are skipped: the
// table is advisory and one odd line must not hide the others.
func parseProcNetARP(r io.Reader) ([]Neighbour, error) {
	var out []Neighbour
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first {
			first = false
			if strings.HasPrefix(sc.Text(), "IP address") {
				continue
			}
		}
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		ip, err := netip.ParseAddr(fields[0])
		if err != nil || !ip.Is4() {
			continue
		}
		flags, err := strconv.ParseUint(strings.TrimPrefix(fields[2], "0x"), 16, 32)
		if err != nil || flags&arpFlagComplete == 0 {
			continue
		}
		mac, err := net.ParseMAC(fields[3])
		if err != nil || isZeroMAC(mac) {
			continue
		}
		out = append(out, Neighbour{IP: ip, MAC: mac, Device: fields[5]})
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read neighbour table: %w", err)
	}
	return out, nil
}

func isZeroMAC(mac net.HardwareAddr) bool {
	for _, b := range mac {
		if b != 0 {
			return false
		}
	}
	return true
}
