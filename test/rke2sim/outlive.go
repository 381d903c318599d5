package rke2sim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// With RKE2SIM_KUBEVIP_OUTLIVES=1 the kube-vip stand-in outlives its server
// as kube-vip's container outlives `systemctl stop rke2-server`
// (KillMode=process): a server stopped while it holds the VIP hands it to a
// child process (the same binary, `rke2 sim-kube-vip`) in its own session,
// which keeps holding it and answers nothing (the supervisor is gone). Its
// pid is in <data-dir>/sim/kube-vip.pid, where rke2-killall.sh finds it; the
// next start of the server takes the VIP back from it.

const outliveCommand = "sim-kube-vip"

func kubeVIPPidfile(dataDir string) string { return filepath.Join(dataDir, "sim", "kube-vip.pid") }

// outlive starts the holder child. lo mode inherits the bound VIP listener
// (no moment without a holder); arp mode keeps the address on ifname and
// keeps announcing it.
func (n *node) outlive(mode, ifname string, ip net.IP, retry time.Duration, ln net.Listener) {
	exe := n.set.Executable
	if exe == "" {
		n.log.Warn("kube-vip stand-in cannot outlive the server: no executable to run it")
		return
	}
	cmd := exec.Command(exe, outliveCommand, mode, n.cfg.DataDir, ifname, ip.String(), retry.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = os.Environ()
	if ln != nil {
		tl, ok := ln.(*net.TCPListener)
		if !ok {
			return
		}
		f, err := tl.File()
		if err != nil {
			n.log.Warn("kube-vip stand-in cannot outlive the server", zap.Error(err))
			return
		}
		defer f.Close()
		cmd.ExtraFiles = []*os.File{f}
	}
	logf, err := os.OpenFile(filepath.Join(n.cfg.DataDir, "sim", "kube-vip.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err == nil {
		defer logf.Close()
		cmd.Stdout, cmd.Stderr = logf, logf
	}
	if err := cmd.Start(); err != nil {
		n.log.Warn("kube-vip stand-in cannot outlive the server", zap.Error(err))
		return
	}
	n.log.Warn("server stopping: its kube-vip keeps the VIP (RKE2SIM_KUBEVIP_OUTLIVES); rke2-killall.sh stops it",
		zap.String("vip", ip.String()), zap.Int("pid", cmd.Process.Pid), zap.String("pidfile", kubeVIPPidfile(n.cfg.DataDir)))
	_ = cmd.Process.Release()
}

// takeBackVIP stops a holder left by the previous run of this server, so
// that this run serves the VIP again.
func (n *node) takeBackVIP() {
	path := kubeVIPPidfile(n.cfg.DataDir)
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	pid, perr := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || perr != nil || pid <= 0 {
		_ = os.Remove(path)
		return
	}
	if syscall.Kill(pid, syscall.SIGTERM) == nil {
		n.log.Info("taking the VIP back from the kube-vip left by the previous run", zap.Int("pid", pid))
		for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
	_ = os.Remove(path)
}

// runOutlive is the child: args are mode, data-dir, interface, VIP, retry.
func runOutlive(args []string) int {
	if len(args) != 5 {
		fmt.Fprintln(os.Stderr, "rke2sim sim-kube-vip: want mode data-dir interface vip retry")
		return 2
	}
	mode, dataDir, ifname := args[0], args[1], args[2]
	ip := net.ParseIP(args[3])
	retry, err := time.ParseDuration(args[4])
	if ip == nil || err != nil || retry <= 0 {
		fmt.Fprintln(os.Stderr, "rke2sim sim-kube-vip: bad vip or retry")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	pidfile := kubeVIPPidfile(dataDir)
	if err := writeFileAtomic(pidfile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "rke2sim sim-kube-vip:", err)
		return 1
	}
	defer os.Remove(pidfile)
	fmt.Fprintf(os.Stderr, "%s kube-vip stand-in holds %s on %s after its server stopped\n", time.Now().UTC().Format(time.RFC3339Nano), ip, ifname)
	switch mode {
	case "lo":
		ln, err := net.FileListener(os.NewFile(3, "vip-listener"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "rke2sim sim-kube-vip:", err)
			return 1
		}
		go func() {
			<-ctx.Done()
			_ = ln.Close()
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return 0
			}
			_ = c.Close() // the supervisor is gone: nothing answers
		}
	case "arp":
		nw := hostNet{}
		for {
			if err := nw.Announce(ifname, ip); err != nil {
				fmt.Fprintln(os.Stderr, "rke2sim sim-kube-vip: announce:", err)
			}
			if sleep(ctx, retry) != nil {
				_ = nw.DelAddr(ifname, ip)
				return 0
			}
		}
	default:
		fmt.Fprintln(os.Stderr, "rke2sim sim-kube-vip: mode lo or arp")
		return 2
	}
}

// stoppingProcess: the process was told to stop (not a VIP given up).
func (n *node) stoppingProcess() bool { return n.rootCtx != nil && n.rootCtx.Err() != nil }
