// Package metrics holds what the daemon's Prometheus registry needs beyond
// the per-package collectors: the bridge that routes hashicorp/go-metrics
// (memberlist's and raft's own instrumentation) into Prometheus, under
// names that follow Prometheus' conventions.
package metrics

import (
	"fmt"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gmprom "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	goMetricsOnce sync.Once
	goMetricsErr  error
)

// RouteGoMetrics installs, once per process, a go-metrics sink that exposes
// memberlist's and raft's metrics through reg. go-metrics is process-global,
// so only the first registry passed here receives them.
func RouteGoMetrics(reg prometheus.Registerer) error {
	goMetricsOnce.Do(func() {
		sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{
			Expiration: 10 * time.Minute,
			Registerer: reg,
		})
		if err != nil {
			goMetricsErr = fmt.Errorf("metrics: go-metrics prometheus sink: %w", err)
			return
		}
		cfg := gometrics.DefaultConfig("rke2_hanode")
		cfg.EnableHostname = false
		cfg.EnableRuntimeMetrics = false // the Go collector already has them
		cfg.EnableServiceLabel = false
		if _, err := gometrics.NewGlobal(cfg, lintSink{next: sink}); err != nil {
			goMetricsErr = fmt.Errorf("metrics: go-metrics global: %w", err)
		}
	})
	return goMetricsErr
}
