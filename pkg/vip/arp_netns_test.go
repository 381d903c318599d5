package vip

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The pair of namespaces used by the real-ARP tests: the holder's end of a
// veth pair carries the VIP, the prober's end probes for it. The addresses
// exist only inside these namespaces.
const (
	netnsHolderMAC = "02:00:0a:63:07:01"
	netnsProberMAC = "02:00:0a:63:07:02"
	netnsVIP       = "10.99.7.200"
	netnsFreeIP    = "10.99.7.201"
)

// setupARPNamespaces creates the two namespaces and returns the prober's
// namespace name; everything is deleted when the test ends, failed or not.
func setupARPNamespaces(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to create network namespaces and a veth pair for a real ARP conflict (run the tests as root to include it)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipped: needs the ip command of iproute2 to build network namespaces")
	}
	suffix := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1_000_000)
	holder, prober := "hanode-viph-"+suffix, "hanode-vipp-"+suffix
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{holder, prober} {
		ip("netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("cleanup: ip netns del %s: %v: %s", ns, err, out)
			}
		})
	}
	ip("link", "add", "vip-h", "netns", holder, "address", netnsHolderMAC, "type", "veth",
		"peer", "name", "vip-p", "netns", prober, "address", netnsProberMAC)
	ip("-n", holder, "addr", "add", "10.99.7.1/24", "dev", "vip-h")
	ip("-n", holder, "addr", "add", netnsVIP+"/32", "dev", "vip-h")
	ip("-n", prober, "addr", "add", "10.99.7.2/24", "dev", "vip-p")
	ip("-n", holder, "link", "set", "vip-h", "up")
	ip("-n", prober, "link", "set", "vip-p", "up")

	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _ := exec.Command("ip", "-n", prober, "link", "show", "vip-p").CombinedOutput()
		if strings.Contains(string(out), "LOWER_UP") {
			return prober
		}
		if time.Now().After(deadline) {
			t.Fatalf("veth vip-p never got a carrier: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inNetns runs fn on an OS thread that has joined the named namespace. The
// thread stays locked, so the runtime discards it when the goroutine ends and
// no other goroutine ever runs in the test namespace.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + name)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func TestProbeARPInNetworkNamespaces(t *testing.T) {
	prober := setupARPNamespaces(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	err := inNetns(prober, func() error {
		mac, err := ProbeARP(ctx, "vip-p", netnsVIP)
		if err != nil {
			return fmt.Errorf("probe held VIP: %w", err)
		}
		if mac.String() != netnsHolderMAC {
			return fmt.Errorf("probe held VIP: answered by %v, want %s", mac, netnsHolderMAC)
		}

		start := time.Now()
		mac, err = ProbeARP(ctx, "vip-p", netnsFreeIP)
		if err != nil || mac != nil {
			return fmt.Errorf("probe free address: %v, %v; want nobody answering", mac, err)
		}
		// It listens for its whole window, and ends on it rather than at the
		// context's deadline (a minute); the slack is for a loaded machine.
		took := time.Since(start)
		if took < DefaultARPWindow-100*time.Millisecond || took > DefaultARPWindow+30*time.Second {
			return fmt.Errorf("probe free address took %v, want about %v", took, DefaultARPWindow)
		}
		t.Logf("probe of a free address took %v (window %v)", took, DefaultARPWindow)

		checks := Preflight(ctx, PreflightOptions{Interface: "vip-p", VIP: netnsVIP, CheckARP: true})
		err = Failed(checks)
		if !errors.Is(err, ErrVIPConflict) || !strings.Contains(err.Error(), netnsHolderMAC) {
			return fmt.Errorf("preflight on held VIP: %v (checks %+v); want ErrVIPConflict naming %s", err, checks, netnsHolderMAC)
		}
		checks = Preflight(ctx, PreflightOptions{Interface: "vip-p", VIP: netnsFreeIP, CheckARP: true, ARPTimeout: 500 * time.Millisecond})
		if err := Failed(checks); err != nil || checks[len(checks)-1].Status != StatusOK {
			return fmt.Errorf("preflight on free VIP: %v (checks %+v); want all ok", err, checks)
		}

		cancelled, stop := context.WithCancel(ctx)
		stop()
		if _, err := ProbeARP(cancelled, "vip-p", netnsFreeIP); !errors.Is(err, context.Canceled) {
			return fmt.Errorf("probe with cancelled context: %v, want context.Canceled", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
