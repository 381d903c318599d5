package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/adminsock"
	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/httpapi"
	"github.com/rke2-hanode/rke2-hanode/pkg/logging"
	"github.com/rke2-hanode/rke2-hanode/pkg/metrics"
	"github.com/rke2-hanode/rke2-hanode/pkg/node"
	"github.com/rke2-hanode/rke2-hanode/pkg/version"
)

func newRunCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run [--config FILE] [flags]",
		Short: "Run the daemon (what the systemd unit runs)",
		Args:  cobra.NoArgs,
	}
	path := configFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := loadConfig(cmd, *path)
		if err != nil {
			return usageErr(err)
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return runDaemon(ctx, c)
	}
	return cmd
}

// newRegistry returns the daemon's registry with the Go and process
// collectors, rke2_hanode_info, and memberlist's and raft's go-metrics.
func newRegistry(c *config.Config) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rke2_hanode_info",
		Help: "Build and identity of this daemon; always 1.",
	}, []string{"version", "role", "node"})
	info.WithLabelValues(version.Version, c.Role, c.NodeName).Set(1)
	reg.MustRegister(info)
	if err := metrics.RouteGoMetrics(reg); err != nil {
		return nil, err
	}
	return reg, nil
}

func runDaemon(ctx context.Context, c *config.Config) error {
	log, err := logging.New(c.LogLevel, c.LogFormat, os.Stderr)
	if err != nil {
		return usageErr(err)
	}
	defer log.Sync()
	log.Info("starting", zap.String("version", version.Version), zap.String("node", c.NodeName), zap.String("role", c.Role))
	for _, w := range c.Warnings() {
		log.Warn(w)
	}
	reg, err := newRegistry(c)
	if err != nil {
		return runtimeErr(err)
	}
	nd, err := node.New(node.Options{Config: c, Logger: log, Registerer: reg})
	if err != nil {
		return runtimeErr(err)
	}
	srv, err := httpapi.Listen(httpapi.Config{
		Address:  c.HTTPAddress,
		Gatherer: reg,
		Logger:   log.Named("http"),
		Status:   nd.Status,
	})
	if err != nil {
		return runtimeErr(err)
	}
	defer srv.Close()
	log.Info("serving metrics and status", zap.String("address", srv.Addr().String()))
	admin, err := adminsock.Listen(adminsock.Path(c.DataDir), nd.AdminVerbs(), log.Named("admin"))
	if err != nil {
		return runtimeErr(err)
	}
	defer admin.Close()
	notify("READY=1")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	httpErr := make(chan error, 1)
	go func() { httpErr <- srv.Run(ctx) }()
	adminErr := make(chan error, 1)
	go func() { adminErr <- admin.Run(ctx) }()
	err = nd.Run(ctx)
	cancel()
	notify("STOPPING=1")
	if herr := <-httpErr; err == nil {
		err = herr
	}
	if aerr := <-adminErr; err == nil {
		err = aerr
	}
	log.Info("stopped")
	if err != nil {
		return runtimeErr(err)
	}
	return nil
}

// notify sends sd_notify lines; it is silent without NOTIFY_SOCKET.
func notify(lines ...string) {
	for _, l := range lines {
		if _, err := daemon.SdNotify(false, l); err != nil {
			fmt.Fprintln(os.Stderr, "sd_notify:", err)
		}
	}
}
